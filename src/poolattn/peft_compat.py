"""Calls into peft without the FutureWarning transformers 5 gives for its ``is_gradient_checkpointing``
probe (not ours to act on), silenced only while peft runs, never process-wide."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Ignore peft's ``is_gradient_checkpointing`` FutureWarning inside the block only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield
