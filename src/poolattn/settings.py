"""Where poolattn finds data and keeps its caches: environment settings with defaults."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "POOLATTN_DATA_DIR"
CACHE_DIR_ENV = "POOLATTN_CACHE_DIR"


def cache_dir() -> Path:
    """Converted model weights and other caches: ``$POOLATTN_CACHE_DIR`` or ``~/.cache/poolattn``.

    Only a path: nothing is created (code that writes there creates the folders it needs).
    """
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
