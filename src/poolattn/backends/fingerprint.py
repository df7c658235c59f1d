"""The one hash of a model's identity: a header (its design) and every weight.

A changed weight, dtype or design gives a new fingerprint, so an embedding cache keyed by it
never serves one model's vectors to another. Small tensors are hashed byte for byte; a large
one is reduced on its own device to a 64-bit checksum (copying a 7B backbone to the host cost
~14 GB), ``sum_i word_i * w_i mod 2^64`` over its bytes as 64-bit words with odd per-position
weights: exact, so device- and order-independent, and any change within one word changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

DIGEST_SIZE = 16
SMALL_TENSOR = 1 << 18  # elements: at most this many are hashed byte for byte (1 MiB in fp32)
CHUNK_WORDS = 1 << 21  # 64-bit words reduced at once: bounds the temporary memory (16 MB)
_MASK64 = (1 << 64) - 1


def _signed64(value: int) -> int:
    """``value`` mod 2^64 as a signed int64 (what a torch int64 scalar can hold)."""
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


def _position_weights(n: int, device: torch.device) -> torch.Tensor:
    """``n`` odd pseudo-random int64 weights (splitmix64 of the position); int64 arithmetic wraps
    mod 2^64 on every device, so every device computes the same weights."""
    x = torch.arange(1, n + 1, dtype=torch.int64, device=device) * _signed64(0x9E3779B97F4A7C15)
    x = (x ^ ((x >> 30) & ((1 << 34) - 1))) * _signed64(0xBF58476D1CE4E5B9)  # logical shifts
    x = (x ^ ((x >> 27) & ((1 << 37) - 1))) * _signed64(0x94D049BB133111EB)
    return (x ^ ((x >> 31) & ((1 << 33) - 1))) | 1


def weighted_sum_numpy(words: torch.Tensor, weights: torch.Tensor) -> int:
    """``sum words * weights mod 2^64`` on CPU: numpy's integer dot wraps and needs no temporary."""
    return int(np.dot(words.numpy().view(np.uint64), weights.numpy().view(np.uint64)))


def weighted_sum_torch(words: torch.Tensor, weights: torch.Tensor) -> int:
    """``sum words * weights mod 2^64`` on any device (an accelerator has no integer dot)."""
    return int((words * weights).sum()) & _MASK64


def device_checksum(tensor: torch.Tensor) -> tuple[int, str]:
    """A 64-bit position-weighted checksum of ``tensor``'s raw bytes, computed on its device,
    and the hex of the bytes past the last whole 64-bit word. Only these reach the host."""
    raw = tensor.detach().reshape(-1).view(torch.uint8)
    if raw.storage_offset() % 8:  # a view that starts mid-word cannot be read as 64-bit words
        raw = raw.clone()
    whole = raw.numel() // 8 * 8
    words = raw[:whole].view(torch.int64)
    tail = raw[whole:].cpu().numpy().tobytes().hex()
    weights = _position_weights(min(CHUNK_WORDS, words.numel()), words.device)
    reduce = weighted_sum_numpy if words.device.type == "cpu" else weighted_sum_torch
    total = 0
    for chunk, start in enumerate(range(0, words.numel(), CHUNK_WORDS)):
        part = words[start : start + CHUNK_WORDS]
        # chunks share the position weights: an odd factor per chunk tells them apart
        factor = ((chunk + 1) * 0xD6E8FEB86659FD93) & _MASK64 | 1
        total = (total + reduce(part, weights[: part.numel()]) * factor) & _MASK64
    return total, tail


def weights_fingerprint(header: Any, tensors: Mapping[str, torch.Tensor], *, sort_keys: bool = False) -> str:
    """Hex digest of ``header`` (JSON; ``sort_keys`` for the poolattn design, insertion order for
    sentence-transformers, as cached vectors were keyed) then every tensor in name order: its name
    and its raw bytes (at most ``SMALL_TENSOR`` elements) or its dtype, shape and ``device_checksum``."""
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    digest.update(json.dumps(header, sort_keys=sort_keys).encode())
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        if tensor.numel() <= SMALL_TENSOR:
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        else:
            summary = [str(tensor.dtype), list(tensor.shape), *device_checksum(tensor)]
            digest.update(b"\0checksum" + json.dumps(summary).encode())
    return digest.hexdigest()


def derived_fingerprint(payload: str) -> str:
    """Hex digest of a base fingerprint joined with what changes the vectors on top of it
    (the compute dtype, the layers a head keeps): same size as ``weights_fingerprint``."""
    return hashlib.blake2b(payload.encode(), digest_size=DIGEST_SIZE).hexdigest()
