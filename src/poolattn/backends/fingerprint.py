"""The one hash of a model's identity: a header (its design) and every weight.

A changed weight, dtype or design gives a new fingerprint, so an embedding cache keyed by it
can never serve one model's vectors to another. A leaf module: only hashlib, json, numpy and torch.

Small tensors (LoRA factors, norms, most of a head) are hashed byte for byte, as they always
were. A large tensor is reduced where it lives (GPU or CPU) to one 64-bit checksum, and only
that comes to the host: copying every backbone tensor to the CPU cost ~14 GB of host memory
and tens of seconds per rank at 7B. The checksum is ``sum_i word_i * w_i (mod 2^64)`` over the
tensor's raw bytes read as 64-bit words, with odd pseudo-random weights ``w_i`` per position:
exact integer arithmetic, so it depends neither on the device nor on the summation order;
any change confined to one word always changes it (an odd weight times a nonzero difference
below 2^64 is never 0 mod 2^64), and a change spread over many words goes unnoticed with
probability about 2^-64.
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


def _chunk_factor(chunk: int) -> int:
    """An odd multiplier per chunk: chunks share the position weights, so moving data from one
    chunk to another still changes the checksum."""
    return ((chunk + 1) * 0xD6E8FEB86659FD93) & _MASK64 | 1


def weighted_sum_numpy(words: torch.Tensor, weights: torch.Tensor) -> int:
    """``sum words * weights mod 2^64`` for CPU tensors: numpy's integer dot wraps mod 2^64 and
    needs no temporary (about 2x faster than torch's on CPU)."""
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
        total = (total + reduce(part, weights[: part.numel()]) * _chunk_factor(chunk)) & _MASK64
    return total, tail


def weights_fingerprint(header: Any, tensors: Mapping[str, torch.Tensor], *, sort_keys: bool = False) -> str:
    """Hex digest of ``header`` (JSON) then every tensor in name order: its name and its raw bytes
    (at most ``SMALL_TENSOR`` elements) or its dtype, shape and ``device_checksum`` (larger).

    ``sort_keys`` orders the header's JSON keys (the poolattn design does; the
    sentence-transformers header keeps its insertion order, as its cached vectors were keyed).
    A model whose tensors are all small keeps the fingerprint of the byte-for-byte formula.
    """
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
