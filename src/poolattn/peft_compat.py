"""Calls into peft without its transformers-5 deprecation noise, scoped to those calls.

peft probes ``is_gradient_checkpointing``, which transformers 5 deprecates with a
FutureWarning that is not ours to act on; it is silenced only while peft runs, never
process-wide (importing poolattn changes no warning filter).
"""

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
