"""Evaluation with the real MTEB evaluators, on local data or mteb's own tasks.

``evaluate(model, output_dir, ...)`` is the library entry point behind ``poolattn eval``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..encoding.backends import PoolattnBackend, SentenceTransformerBackend
from ..encoding.resolve import load_backend
from ..eval_results import EVAL_RUN_FILE
from ..settings import DATA_DIR_ENV, cache_dir, data_dir
from .encoder import MTEBEncoder
from .local import MAIN_SCORES, LocalTask, local_tasks
from .runner import run_evaluation

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

DEFAULT = "default"


def evaluate(
    model: Any,
    output_dir: str | Path,
    tasks: Sequence[str] | None = None,
    benchmark: str | None = None,
    local_data: str | Path | None = None,
    max_items: int | None = None,
    batch_size: int = 32,
    cache_dir_path: str | Path | None = DEFAULT,
    instructions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Evaluate a model and write a results directory; returns its ``run.json`` content.

    Args:
        model: an ``EmbeddingModel``, a ``SentenceTransformer``, a backend, or a string for
            ``load_backend`` (poolattn model dir, ``base:pooling+attention``, backbone alias,
            s-t dir, ``all-MiniLM-L6-v2``).
        output_dir: where ``run.json`` and one ``<Task>.json`` per task are written.
        tasks: mteb task names or local dataset names; local data is used where it exists.
        benchmark: an mteb benchmark name (online: mteb downloads its data).
        local_data: folder in the ../shared/data layout; default ``$POOLATTN_DATA_DIR``
            when neither tasks nor a benchmark name something else.
        max_items: deterministic down-sampling per dataset (see ``poolattn.evaluation.local``).
        cache_dir_path: embedding cache folder; ``None`` keeps it in memory only.
        instructions: per-task query instructions overriding the built-in table.
    """
    source = model if isinstance(model, str) else None
    if isinstance(model, str):
        model = load_backend(model)
    if local_data is None and ((tasks and os.environ.get(DATA_DIR_ENV)) or (not tasks and not benchmark)):
        local_data = data_dir()
    if local_data is not None:
        local_data = Path(local_data)
    if cache_dir_path == DEFAULT:
        cache_dir_path = cache_dir() / "embeddings"
    return run_evaluation(
        model,
        output_dir,
        tasks=tasks,
        benchmark=benchmark,
        local_data=local_data,
        max_items=max_items,
        batch_size=batch_size,
        cache_dir=cache_dir_path,
        instructions=instructions,
        model_source=source,
    )
