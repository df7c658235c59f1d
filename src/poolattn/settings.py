"""Where poolattn finds data and keeps its caches: environment settings with defaults."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "POOLATTN_DATA_DIR"
CACHE_DIR_ENV = "POOLATTN_CACHE_DIR"
# "1": load backbone weights that exist only as pickles (pytorch_model.bin): unpickling can run code
ALLOW_PICKLE_ENV = "POOLATTN_ALLOW_PICKLED_WEIGHTS"


def cache_dir() -> Path:
    """Converted model weights and other caches: ``$POOLATTN_CACHE_DIR`` or ``~/.cache/poolattn``
    (only a path: writers create the folders they need)."""
    root = (
        os.environ.get(CACHE_DIR_ENV)
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "poolattn"
    )
    return Path(root).expanduser()


def data_dir(explicit: str | Path | None = None) -> Path:
    """The local data folder: an explicit path, else ``$POOLATTN_DATA_DIR``; an error says how to set it."""
    value = explicit or os.environ.get(DATA_DIR_ENV)
    if not value:
        raise FileNotFoundError(
            f"no data folder given: pass a path or set {DATA_DIR_ENV} (e.g. export {DATA_DIR_ENV}=../shared/data)"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"data folder {path} does not exist (from {DATA_DIR_ENV} or the command line)"
        )
    return path


def pickled_weights_allowed() -> bool:
    """Whether the user opted in to loading pickled (``.bin``) backbone weights."""
    return os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes")
