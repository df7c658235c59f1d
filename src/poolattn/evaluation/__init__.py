"""Evaluation with the real MTEB evaluators, on local data or mteb's own tasks.

``evaluate(model, output_dir, ...)`` (defined in ``runner``) is the library entry point behind
``poolattn eval``. Re-exports for users; modules inside poolattn import from the defining module.
"""

from __future__ import annotations

from .encoder import MTEBEncoder
from .local import MAIN_SCORES, LocalTask, local_tasks
from .runner import evaluate

__all__ = ["MAIN_SCORES", "LocalTask", "MTEBEncoder", "evaluate", "local_tasks"]
