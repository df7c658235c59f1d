"""Process-level settings that keep CPU memory flat when input shapes keep changing.

Embedding workloads feed the backbone a new shape almost every call (each mini-batch has its
own number of texts and padded width). On CPU, bf16 matmuls go through oneDNN, which keeps
every primitive it builds in two per-shape caches (oneDNN's primitive cache and ideep's LRU
cache, 1024 entries each by default). Measured here on SmolLM2-135M with LoRA under bf16
autocast, 80 forward/backward passes over 40 distinct lengths: live heap 992 MB with the
default caches, 467 MB with 64 entries each at the same speed (36 s vs 38 s), 415 MB with
the caches off but 5x slower (190 s). A GradCache step at batch 512 meets ~130 new shapes,
so the default caches alone grew its live heap by ~0.8 GB over a batch-32 step.

The capacities are read from the environment when oneDNN builds its first primitive, so
``limit_onednn_caches`` runs when poolattn's model code is imported; a value the user set
in the environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from functools import lru_cache

log = logging.getLogger(__name__)

ONEDNN_CACHE_ENTRIES = 128  # a mini-batch's forward + backward uses well under this many shapes


def limit_onednn_caches(entries: int = ONEDNN_CACHE_ENTRIES) -> None:
    """Cap oneDNN's per-shape caches (no effect once oneDNN has built a primitive)."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(entries))
    os.environ.setdefault("LRU_CACHE_CAPACITY", str(max(1, entries)))  # 0 crashes ideep


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only (musl has none)
    except (OSError, AttributeError):
        return None
    return libc


def release_free_heap() -> None:
    """Hand the heap's free pages back to the OS (glibc ``malloc_trim``; elsewhere nothing).

    Tensors of varying sizes leave holes in glibc's heap that it keeps; between GradCache
    mini-batches nothing large is alive, so returning those pages keeps RSS near the live heap.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
