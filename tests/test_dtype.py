"""Compute dtype (issues 12, 25): ``auto`` picks bf16 only where the hardware runs it natively and
its measured bf16 matmul beats float32 by ``BF16_MIN_SPEEDUP``,
trainable weights and optimizer state stay float32, embeddings come back float32, GradCache
stays exact under bf16 autocast, and bf16 embeddings of the real SmolLM2 agree with float32."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import save_tiny_backbone

from poolattn import dtypes
from poolattn.backbone import load_backbone
from poolattn.backends.base import PoolattnBackend
from poolattn.config import ConfigError
from poolattn.design import model_config
from poolattn.model import EmbeddingModel
from poolattn.pooling import ALL_LAYERS, POOLERS
from poolattn.training import train_config_from_dict
from poolattn.training.gradcache import ContrastiveBatch, cached_step, make_chunks, plain_step
from poolattn.training.loss import info_nce
from poolattn.training.trainer import build_model, parameter_groups

QUERIES = [f"query number {i} about {w}" for i, w in enumerate(["cats", "dogs and birds", "a river", "x"])]
DOCS = [
    f"document {i} that talks about {w} in some detail" for i, w in enumerate(["cats", "dogs", "rivers", "x"])
]
NEGS = ["an unrelated text", "another distractor about cars", "short"]


@pytest.fixture
def cpu_features(monkeypatch: pytest.MonkeyPatch):
    """Pretend to run on a CPU with the given bf16 features (and no GPU)."""

    def set_features(*flags: str, bf16_speedup: float = 4.0) -> None:
        monkeypatch.setattr(dtypes, "cpu_bf16_features", lambda: frozenset(flags))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        rates = {"float32": 200.0, "bfloat16": 200.0 * bf16_speedup}
        monkeypatch.setattr(dtypes, "cpu_matmul_rates", lambda: rates)

    return set_features


@pytest.fixture
def tiny_dir(tmp_path: Path, tokenizer) -> Path:
    """A tiny random llama saved as a local model directory (what load_backbone reads)."""
    return save_tiny_backbone(tmp_path / "tiny", tokenizer)


# ----------------------------------------------------------------------------- resolution
@pytest.mark.parametrize(
    ("flags", "expected"),
    [((), "float32"), (("avx512_bf16",), "bfloat16"), (("amx_bf16",), "bfloat16")],
)
def test_auto_follows_the_cpu_features(cpu_features, flags, expected) -> None:
    cpu_features(*flags)
    choice = dtypes.resolve_dtype("auto")
    assert choice.name == expected and choice.torch_dtype == dtypes.DTYPE_BY_NAME[expected]
    for flag in flags:
        assert flag in choice.reason  # the log says why
    if not flags:
        assert "no AVX512-BF16" in choice.reason


@pytest.mark.parametrize(("speedup", "expected"), [(0.92, "float32"), (1.2, "float32"), (1.25, "bfloat16")])
def test_auto_takes_bf16_only_where_it_measures_faster(cpu_features, speedup, expected) -> None:
    """A CPU with the flags whose bf16 matmul is not 1.25x float32 (a 2-core Xeon VM without AMX
    measured 0.92x) computes in float32, and the reason gives the measured rates."""
    cpu_features("avx512_bf16", bf16_speedup=speedup)
    choice = dtypes.resolve_dtype("auto")
    assert choice.name == expected
    assert f"ran {speedup:.2f}x float32 ({200 * speedup:.0f} vs 200 GFLOP/s" in choice.reason
    assert ("under the 1.25x" in choice.reason) == (expected == "float32")


def test_no_bf16_flags_means_no_probe(cpu_features, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_features()

    def fail() -> dict[str, float]:
        raise AssertionError("a CPU without bf16 flags must not be probed")

    monkeypatch.setattr(dtypes, "cpu_matmul_rates", fail)
    assert dtypes.resolve_dtype("auto").name == "float32"


def test_matmul_probe_runs_once_per_machine_and_is_shared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog
) -> None:
    """The probe is recorded in the cache folder: another process (a rank, the next run) reads it
    instead of measuring again, so all decide alike; a corrupt probe file is measured again."""
    monkeypatch.setenv("POOLATTN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(dtypes, "cpu_bf16_features", lambda: frozenset({"avx512_bf16"}))
    calls = []

    def measure() -> dict[str, float]:
        calls.append(1)
        return {"float32": 185.0, "bfloat16": 171.0}

    monkeypatch.setattr(dtypes, "measure_matmul_rates", measure)
    probe = tmp_path / dtypes.PROBE_FILE
    try:
        for _ in range(2):  # a fresh process each time: the in-process memo cleared
            dtypes.cpu_matmul_rates.cache_clear()
            assert dtypes.cpu_matmul_rates() == {"float32": 185.0, "bfloat16": 171.0}
        assert len(calls) == 1
        [key] = json.loads(probe.read_text())
        assert "avx512_bf16" in key and f"threads {torch.get_num_threads()}" in key
        probe.write_text(json.dumps({key: {"float32": 0, "bfloat16": 171.0}}))  # not a rate: measured again
        dtypes.cpu_matmul_rates.cache_clear()
        assert dtypes.cpu_matmul_rates()["float32"] == 185.0 and len(calls) == 2
        probe.write_text("{not json")
        dtypes.cpu_matmul_rates.cache_clear()
        with caplog.at_level(logging.WARNING, logger="poolattn.dtypes"):
            assert dtypes.cpu_matmul_rates()["bfloat16"] == 171.0
        assert len(calls) == 3 and str(probe) in caplog.text
        assert json.loads(probe.read_text())[key] == {"float32": 185.0, "bfloat16": 171.0}
    finally:
        dtypes.cpu_matmul_rates.cache_clear()


def test_unwritable_cache_folder_still_decides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("POOLATTN_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    monkeypatch.setattr(dtypes, "measure_matmul_rates", lambda: {"float32": 185.0, "bfloat16": 171.0})
    dtypes.cpu_matmul_rates.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="poolattn.dtypes"):
            assert dtypes.cpu_matmul_rates() == {"float32": 185.0, "bfloat16": 171.0}
        assert "cannot record the CPU matmul probe" in caplog.text
    finally:
        dtypes.cpu_matmul_rates.cache_clear()


def test_measure_matmul_rates_measures_both_dtypes() -> None:
    rates = dtypes.measure_matmul_rates(size=64, repeats=1)
    assert set(rates) == {"float32", "bfloat16"} and all(r > 0 for r in rates.values())


@pytest.mark.parametrize("name", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("flags", [(), ("avx512_bf16",)])
def test_explicit_dtypes_are_honoured(cpu_features, name, flags) -> None:
    cpu_features(*flags)
    assert dtypes.resolve_dtype(name).name == name


def test_auto_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dtypes, "cpu_bf16_features", lambda: frozenset())
    monkeypatch.setattr(dtypes, "cuda_bf16_supported", lambda: True)
    assert dtypes.resolve_dtype("auto").name == "bfloat16"
    assert dtypes.resolve_dtype("auto", "cpu").name == "float32"  # this run stays on the CPU
    monkeypatch.setattr(dtypes, "cuda_bf16_supported", lambda: False)
    assert dtypes.resolve_dtype("auto").name == "float32"


def test_cpuinfo_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without torch's probe, the flags line of /proc/cpuinfo decides."""
    monkeypatch.setattr(dtypes, "_torch_cpu_capability", dict)
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(dtypes, "CPUINFO", info)
    for flags, expected in [
        ("fpu sse2 avx512f avx512_bf16 avx512_vnni", {"avx512_bf16"}),
        ("fpu avx2", set()),
    ]:
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        dtypes.cpu_bf16_features.cache_clear()
        try:
            assert dtypes.cpu_bf16_features() == expected
        finally:
            dtypes.cpu_bf16_features.cache_clear()


def test_config_default_is_auto_and_bad_names_are_named() -> None:
    assert model_config().dtype == "auto"
    with pytest.raises(ConfigError, match=r"model\.dtype: 'bf16' is not valid"):
        model_config(dtype="bf16")


@pytest.mark.parametrize(("flags", "stored"), [(("avx512_bf16",), torch.bfloat16), ((), torch.float32)])
def test_load_backbone_stores_the_resolved_dtype_and_logs_why(
    cpu_features, tiny_dir, caplog, flags, stored
) -> None:
    cpu_features(*flags)
    with caplog.at_level(logging.INFO, logger="poolattn.backbone"):
        backbone, _ = load_backbone(model_config(base=str(tiny_dir)))
    assert {p.dtype for p in backbone.parameters()} == {stored}
    assert f"computing in {str(stored).removeprefix('torch.')} (auto: the CPU has" in caplog.text


def test_auto_where_bf16_is_slow_is_exactly_the_float32_model(cpu_features, tiny_dir) -> None:
    """Numbers kept (issue 25): where the probe keeps ``auto`` in float32, the model is the explicit
    float32 model, embeddings and a training loss and its gradients bit for bit."""
    cpu_features("avx512_bf16", bf16_speedup=0.92)
    models = []
    for dtype in ("auto", "float32"):
        torch.manual_seed(0)
        config = _train_config(tiny_dir, "latent")
        config.model.dtype = dtype
        models.append(build_model(config))
    auto, explicit = models
    assert auto.compute_dtype == explicit.compute_dtype == torch.float32
    features = auto.tokenize(QUERIES + DOCS)
    losses = []
    for model in models:
        model.train()
        torch.manual_seed(1)  # the same LoRA dropout masks
        emb = model(features)
        loss = info_nce(emb[: len(QUERIES)], emb[len(QUERIES) :])
        loss.backward()
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])
    grads = [[p.grad for p in m.parameters() if p.requires_grad and p.grad is not None] for m in models]
    assert len(grads[0]) == len(grads[1]) > 0 and all(map(torch.equal, *grads))
    np.testing.assert_array_equal(auto.encode(QUERIES), explicit.encode(QUERIES))


# ----------------------------------------------------------------------------- precision rules
def _train_config(tiny_dir: Path, pooling: str, **training) -> object:
    return train_config_from_dict(
        {
            "model": {
                "base": str(tiny_dir),
                "pooling": pooling,
                "attention": "bidirectional",
                "max_length": 24,
            },
            "data": {"train": ["unused.jsonl"]},
            "training": {"output_dir": "unused", **training},
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "up_proj"]},
        }
    )


@pytest.mark.parametrize("full_finetune", [False, True])
def test_trainable_weights_and_optimizer_state_stay_float32_under_bf16(
    cpu_features, tiny_dir, full_finetune
) -> None:
    cpu_features("avx512_bf16")
    config = _train_config(tiny_dir, "multilayer", full_finetune=full_finetune)
    model = build_model(config)
    assert model.compute_dtype == torch.bfloat16
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    assert any("lora_" in n for n in trainable) != full_finetune
    assert any(n.startswith("pooler.") for n in trainable)
    assert {p.dtype for p in trainable.values()} == {torch.float32}
    if not full_finetune:
        assert {p.dtype for p in frozen.values()} == {torch.bfloat16}  # half the memory, faster matmuls

    optimizer = torch.optim.AdamW(parameter_groups(model, config), lr=1e-5)
    features = model.tokenize(QUERIES + DOCS)
    emb = model(features)
    assert emb.dtype == torch.float32
    before = {n: p.detach().clone() for n, p in trainable.items()}
    info_nce(emb[: len(QUERIES)], emb[len(QUERIES) :]).backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in trainable.values())
    optimizer.step()
    states = [s for s in optimizer.state.values() if s]
    assert states and all(
        s["exp_avg"].dtype == torch.float32 and s["exp_avg_sq"].dtype == torch.float32 for s in states
    )
    # lr 1e-5 moves float32 weights; it would not move most bf16 weights of this size.
    moved = [n for n, p in trainable.items() if not torch.equal(p.detach(), before[n])]
    assert any("pooler." in n for n in moved)


def test_embeddings_are_float32_whatever_the_compute_dtype(cpu_features, tiny_dir) -> None:
    cpu_features("avx512_bf16")
    model = EmbeddingModel.from_pretrained(str(tiny_dir), pooling="latent", attention="causal")
    assert model.compute_dtype == torch.bfloat16 and model.describe()["compute_dtype"] == "bfloat16"
    out = model.encode(QUERIES, prompt_type="query")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert model.encode(DOCS, convert_to="torch").dtype == torch.float32
    assert model(model.tokenize(DOCS)).dtype == torch.float32


def test_explicit_float32_upcasts_lower_precision_weights(tiny_model) -> None:
    model = tiny_model("eos", "causal")
    backbone = model.backbone.to(torch.bfloat16)
    again = EmbeddingModel(backbone, model.tokenizer, model_config(base="tiny", dtype="float32"))
    assert again.compute_dtype == torch.float32
    assert {p.dtype for p in again.backbone.parameters()} == {torch.float32}


def test_embedding_cache_key_includes_the_compute_dtype(tiny_model) -> None:
    model = tiny_model("eos", "causal")
    fp32 = PoolattnBackend(model).fingerprint()
    model.compute_dtype = torch.bfloat16  # same weights, same design, other arithmetic
    assert PoolattnBackend(model).fingerprint() != fp32


# ----------------------------------------------------------------------------- GradCache under bf16
# bf16 keeps 8 significant bits (relative step 2^-8 ~ 3.9e-3). GradCache replays the very same
# bf16 operations with the same dropout masks, so its gradient must match the plain one far more
# closely than that: we allow 1e-3 of each tensor's largest entry. The same gradient in float32
# differs from the bf16 one by ~3e-2, so the test would notice autocast being off.
GRADCACHE_BF16_TOLERANCE = 1e-3


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def _max_relative(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[n] - b[n]).abs().max() / a[n].abs().max().clamp(min=1e-12)) for n in a)


def _lora_grads(tiny_model, pooling: str, dtype: str, cached: bool) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradients of one step (plain or GradCache) with dropout on; bf16 = weights
    stored in bf16 as load_backbone does, under autocast."""
    model = tiny_model(pooling, "bidirectional", max_length=24, dtype=dtype)
    if dtype == "bfloat16":
        model.backbone.to(torch.bfloat16)
    model.add_lora(r=4, alpha=8, dropout=0.1, target_modules=["q_proj", "v_proj", "up_proj"])
    gen = torch.Generator().manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # LoRA starts at B = 0, which would hide dropout
            param.data.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    model.pooler.requires_grad_(True)
    model.train()
    assert model.compute_dtype == getattr(torch, dtype)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    instructions = ["Retrieve"] * len(QUERIES) + [None] * (len(DOCS) + len(NEGS))
    chunks = make_chunks(model.tokenize, QUERIES + DOCS + NEGS, instructions, 3)

    def loss_fn(q, p, n):
        return info_nce(q, p, n, temperature=0.05, symmetric=True)

    step = cached_step if cached else plain_step
    torch.manual_seed(123)
    loss = step(model, ContrastiveBatch(chunks, len(QUERIES), len(DOCS)), loss_fn)
    return loss, _grads(model)


@pytest.mark.parametrize("pooling", sorted(POOLERS))
def test_gradcache_equals_plain_gradient_under_bf16_autocast(tiny_model, pooling: str) -> None:
    plain_loss, plain = _lora_grads(tiny_model, pooling, "bfloat16", cached=False)
    cached_loss, cached = _lora_grads(tiny_model, pooling, "bfloat16", cached=True)
    assert cached_loss == pytest.approx(plain_loss, rel=1e-5)
    assert set(plain) == set(cached) and any("lora_" in n for n in plain)
    assert all(g.dtype == torch.float32 for g in cached.values())
    diff = _max_relative(plain, cached)
    assert diff <= GRADCACHE_BF16_TOLERANCE, f"{pooling}: GradCache gradient off by {diff:.2e} under bf16"


def test_bf16_gradients_really_differ_from_float32(tiny_model) -> None:
    """Guard for the test above: autocast is really on, so its tolerance is a real bound."""
    _, fp32 = _lora_grads(tiny_model, "latent", "float32", cached=True)
    _, bf16 = _lora_grads(tiny_model, "latent", "bfloat16", cached=True)
    assert _max_relative(fp32, bf16) > 10 * GRADCACHE_BF16_TOLERANCE


# ----------------------------------------------------------------------------- real model
# ~16 s on a 2-core AVX2 CPU: one bf16 backbone pass per batch, shared by the six poolers.
@pytest.mark.slow
@pytest.mark.needs_model
@pytest.mark.needs_data
def test_bf16_embeddings_agree_with_float32_on_smollm2_for_every_pooler(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 target: cosine >= 0.999 on average and >= 0.99 for every text (here 48 real
    STS sentences as instructed queries), for every pooler, on SmolLM2's own causal attention.

    Untrained *bidirectional* SmolLM2 is not held to it: run in a mode it was never trained
    for, it is hypersensitive to activation rounding (bench/encode.py reports it beside a
    control; its min cosine falls to ~0.87 for mean pooling even though float32 over
    bf16-rounded weights stays at ~0.998).
    """
    import json

    # The backbone pass depends on the inputs and the backbone (so the dtype), not on the pooler:
    # run it once per batch keeping every layer; a last-layer pooler reads hidden_states[-1],
    # equal to the last_hidden_state its own pass would return. bf16 matmuls are ~30x slower
    # than float32 without AVX512-BF16, so this is the test's cost, paid once instead of six times.
    passes: dict[tuple, tuple[torch.Tensor, ...]] = {}
    own_pass = EmbeddingModel.hidden_states

    def shared_pass(model: EmbeddingModel, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        inputs = [features[k] for k in ("input_ids", "attention_mask", "position_ids")]
        key = (id(model.backbone), tuple(inputs[0].shape), *(t.numpy().tobytes() for t in inputs))
        if key not in passes:
            with monkeypatch.context() as patch:
                patch.setattr(model.pooler, "layers_read", ALL_LAYERS)
                passes[key] = own_pass(model, features)
        states = passes[key]
        return states if model.pooler.layers_read == ALL_LAYERS else states[-1:]

    monkeypatch.setattr(EmbeddingModel, "hidden_states", shared_pass)

    rows = [json.loads(line) for line in (data_dir / "eval/sts/STSBenchmark/test.jsonl").open()][:24]
    texts = [t for row in rows for t in (row["sentence1"], row["sentence2"])]
    backbones = {
        name: load_backbone(model_config(base="smollm2-135m", dtype=name)) for name in ("float32", "bfloat16")
    }
    assert {p.dtype for p in backbones["bfloat16"][0].parameters()} == {torch.bfloat16}
    for pooling in sorted(POOLERS):
        emb = {}
        for name, (backbone, tokenizer) in backbones.items():
            cfg = model_config(base="smollm2-135m", pooling=pooling, attention="causal", dtype=name)
            model = EmbeddingModel(backbone, tokenizer, cfg, verify=False)
            assert model.compute_dtype == getattr(torch, name)
            emb[name] = model.encode(texts, prompt_type="query", batch_size=16)
            assert emb[name].dtype == np.float32
        cosine = (emb["float32"] * emb["bfloat16"]).sum(axis=1)
        assert cosine.mean() >= 0.999, f"{pooling}: mean cosine {cosine.mean():.5f}"
        assert cosine.min() >= 0.99, f"{pooling}: min cosine {cosine.min():.5f}"
    assert len(passes) == 2 * 3  # per dtype, one pass for each of the 3 batches of 16
