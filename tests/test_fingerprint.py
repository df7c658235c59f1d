"""The weights fingerprint: it changes whenever a weight changes, stays put for the same weights,
and never copies a large tensor to the host (large tensors are reduced where they live)."""

from __future__ import annotations

import pytest
import torch

from poolattn.backends import fingerprint
from poolattn.backends.fingerprint import (
    device_checksum,
    weighted_sum_numpy,
    weighted_sum_torch,
    weights_fingerprint,
)


@pytest.fixture(params=["bytes", "checksum"])
def path(request, monkeypatch) -> str:
    """Run a test with the tiny model's tensors hashed byte for byte, then all by checksum
    (as every large tensor of a real model is)."""
    if request.param == "checksum":
        monkeypatch.setattr(fingerprint, "SMALL_TENSOR", 0)
    return request.param


def with_nonzero_lora(model):
    model.add_lora(r=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.linspace(-0.1, 0.1, param.numel()).view_as(param))
    return model


def test_one_lora_weight_changes_the_fingerprint(tiny_model, path: str) -> None:
    model = with_nonzero_lora(tiny_model("latent", "bidirectional"))
    same = with_nonzero_lora(tiny_model("latent", "bidirectional"))
    first = model.fingerprint()
    assert same.fingerprint() == first == model.fingerprint()  # same weights, same fingerprint
    name, param = next((n, p) for n, p in model.backbone.named_parameters() if "lora_A" in n)
    with torch.no_grad():
        param.view(-1)[3] = torch.nextafter(param.view(-1)[3], torch.tensor(1.0))  # one ulp
    assert model.fingerprint() != first, name


@pytest.mark.parametrize("part", ["backbone", "head"])
def test_one_frozen_or_head_weight_changes_the_fingerprint(tiny_model, path: str, part: str) -> None:
    model = tiny_model("multilayer", "bidirectional")
    first = model.fingerprint()
    module = model.backbone if part == "backbone" else model.pooler
    param = max(module.parameters(), key=lambda p: p.numel())
    with torch.no_grad():
        param.view(-1)[-1] = torch.nextafter(param.view(-1)[-1], torch.tensor(1.0))
    assert model.fingerprint() != first


def test_dtype_and_layout_change_the_checksum() -> None:
    torch.manual_seed(0)
    weights = torch.randn(300, 257)
    checksum = device_checksum(weights)
    assert device_checksum(weights.clone()) == checksum
    assert device_checksum(weights.bfloat16()) != checksum
    assert device_checksum(weights.t()) != checksum  # the same values in another order
    swapped = weights.clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert device_checksum(swapped) != checksum


def test_checksum_covers_bytes_past_the_last_word_and_unaligned_views() -> None:
    torch.manual_seed(0)
    rows = torch.randn(3, 1001, dtype=torch.bfloat16)  # 2002 bytes a row: 2 bytes past a word
    middle = rows[1]  # starts 2002 bytes into the storage: not 8-byte aligned
    checksum = device_checksum(middle)
    assert checksum == device_checksum(middle.clone()) and checksum[1]
    changed = middle.clone()
    changed[-1] = torch.nextafter(changed[-1], torch.tensor(10.0, dtype=torch.bfloat16))
    assert device_checksum(changed) != checksum


def test_checksum_is_exact_across_reductions_and_thread_counts(monkeypatch) -> None:
    """The CPU dot and the accelerator's product-and-sum agree bit for bit (mod 2^64), and the
    result does not depend on threads or chunking order: the arithmetic is exact."""
    torch.manual_seed(0)
    words = torch.randint(-(2**62), 2**62, (50_001,), dtype=torch.int64)
    weights = torch.randint(-(2**62), 2**62, (50_001,), dtype=torch.int64) | 1
    assert weighted_sum_numpy(words, weights) == weighted_sum_torch(words, weights)
    tensor = torch.randn(600, 500)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = device_checksum(tensor)
        torch.set_num_threads(2)
        assert device_checksum(tensor) == one
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(fingerprint, "weighted_sum_numpy", weighted_sum_torch)
    assert device_checksum(tensor) == one


def test_large_tensors_never_come_to_the_host(monkeypatch, tiny_model) -> None:
    """Only tensors of at most SMALL_TENSOR elements (and < 8 tail bytes) are copied whole."""
    model = tiny_model("eos", "causal")
    monkeypatch.setattr(fingerprint, "SMALL_TENSOR", 100)
    copied: list[int] = []
    original = torch.Tensor.cpu

    def recording_cpu(self, *args, **kwargs):
        copied.append(self.numel())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", recording_cpu)
    model.fingerprint()
    large = sum(p.numel() > 100 for p in model.state_dict().values())
    assert large and copied and max(copied) <= 100


def test_small_tensors_keep_the_byte_for_byte_fingerprint() -> None:
    """Old embedding caches of small models stay addressable: their formula is unchanged."""
    import hashlib
    import json

    tensors = {"b": torch.ones(3), "a": torch.arange(4, dtype=torch.float32)}
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps({"x": 1}).encode())
    for name in ("a", "b"):
        digest.update(name.encode())
        digest.update(tensors[name].numpy().tobytes())
    assert weights_fingerprint({"x": 1}, tensors) == digest.hexdigest()
