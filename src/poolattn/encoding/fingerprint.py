"""The one hash of a model's identity: a header (its design) and every weight, byte for byte.

A changed weight, dtype or design gives a new fingerprint, so an embedding cache keyed by it
can never serve one model's vectors to another. A leaf module: only hashlib, json and torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

DIGEST_SIZE = 16


def weights_fingerprint(header: Any, tensors: Mapping[str, torch.Tensor], *, sort_keys: bool = False) -> str:
    """Hex digest of ``header`` (JSON) then every ``(name, raw bytes)`` of ``tensors`` in name order.

    ``sort_keys`` orders the header's JSON keys (the poolattn design does; the
    sentence-transformers header keeps its insertion order, as its cached vectors were keyed).
    """
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    digest.update(json.dumps(header, sort_keys=sort_keys).encode())
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def derived_fingerprint(payload: str) -> str:
    """Hex digest of a base fingerprint joined with what changes the vectors on top of it
    (the compute dtype, the layers a head keeps): same size as ``weights_fingerprint``."""
    return hashlib.blake2b(payload.encode(), digest_size=DIGEST_SIZE).hexdigest()
