"""Evaluation with the real MTEB evaluators, on local data or mteb's own tasks.

``evaluate(model, output_dir, ...)`` (defined in ``runner``) is the library entry point behind
``poolattn eval``. This package re-exports for users; modules inside poolattn import from the
defining module.
"""

from __future__ import annotations

from ..backends.base import PoolattnBackend, SentenceTransformerBackend
from ..backends.resolve import load_backend
from ..eval_results import EVAL_RUN_FILE
from .encoder import MTEBEncoder
from .local import MAIN_SCORES, LocalTask, local_tasks
from .runner import evaluate

__all__ = [
    "EVAL_RUN_FILE",
    "MAIN_SCORES",
    "LocalTask",
    "MTEBEncoder",
    "PoolattnBackend",
    "SentenceTransformerBackend",
    "evaluate",
    "load_backend",
    "local_tasks",
]
