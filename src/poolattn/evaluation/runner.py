"""Run tasks through ``mteb.evaluate`` and write a results directory.

A results directory holds one mteb ``TaskResult`` JSON per task (``<Task>.json``, the
layout of mteb's own cache folders) and ``run.json``: the model's design and
fingerprint, the run settings, and for every task its family, dataset, main score,
down-sampling and empty texts (count and treatment). A local dataset that gives no valid
sample is listed under ``skipped`` with its reason instead. mteb's result cache is never
used (``cache=None``), and task files of an earlier run in the same directory are removed first, so old scores never come back.
Beside each task file, ``<Task>.items.json`` holds its per-item results (format in
``poolattn.stats.items``; built by ``evaluation.items`` from mteb's prediction files), from
which the main score is recomputed exactly; ``run.json`` names it under ``items``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..encoding.resolve import load_backend
from ..eval_results import EVAL_RUN_FILE, task_main_score
from ..io import write_json_atomic
from ..settings import DATA_DIR_ENV, cache_dir, data_dir
from .encoder import MTEBEncoder
from .items import collect_items
from .local import EMPTY_TEXT_TREATMENT, LocalTask, local_tasks
from .mteb_results import write_mteb_results

log = logging.getLogger(__name__)

RESULTS_VERSION = 1
# the tasks mteb has called superseded: it says so (log and warning) on every evaluation, and
# the layer ablation evaluates the same task objects once per condition
_SUPERSEDED_SAID: weakref.WeakSet[Any] = weakref.WeakSet()
DEFAULT = "default"  # evaluate(cache_dir_path=...): the embeddings folder of cache_dir()


def run_mteb_task(
    encoder: Any, task: Any, batch_size: int, prediction_folder: Path | None = None
) -> dict[str, Any]:
    """One task through the real mteb evaluator, never its result cache; the TaskResult as a dict.

    ``prediction_folder`` makes mteb write its per-item predictions (the item-level results)."""
    import mteb

    extra = {} if prediction_folder is None else {"prediction_folder": prediction_folder}
    said = task in _SUPERSEDED_SAID
    _SUPERSEDED_SAID.add(task)
    if said:  # once per task object: an instance attribute hides the check, removed below
        task.check_if_dataset_is_superseded = lambda: None
    try:
        result = mteb.evaluate(
            encoder,
            task,
            cache=None,
            overwrite_strategy="always",
            encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
            show_progress_bar=False,
            co2_tracker=False,
            **extra,
        )
    finally:
        if said:
            del task.check_if_dataset_is_superseded
    if result.exceptions:
        raise RuntimeError(f"{task.metadata.name}: evaluation failed: {result.exceptions}")
    return result.task_results[0].to_dict()


def _online_tasks(names: Sequence[str] | None, benchmark: str | None) -> list[Any]:
    import mteb

    tasks: list[Any] = []
    if benchmark:
        tasks.extend(mteb.get_benchmark(benchmark).tasks)
    if names:
        tasks.extend(mteb.get_tasks(tasks=list(names)))
    return tasks


def _clear_previous(output: Path) -> None:
    """Remove task files written by an earlier run into this directory."""
    run_file = output / EVAL_RUN_FILE
    if not run_file.exists():
        return
    try:
        previous = json.loads(run_file.read_text())
        files = [t["file"] for t in previous.get("tasks", {}).values()]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        files = []
    try:  # item-level files (``<Task>.items.json``) listed beside the task files
        files += [t["items"] for t in previous.get("tasks", {}).values() if t.get("items")]
    except (KeyError, TypeError, AttributeError):
        pass
    for name in files:
        (output / name).unlink(missing_ok=True)
    run_file.unlink()


def plan_tasks(
    tasks: Sequence[str] | None, benchmark: str | None, local_data: str | Path | None, max_items: int | None
) -> list[tuple[Any, LocalTask | None]]:
    """The tasks to run: local datasets (all, or those named / in the benchmark), then mteb's
    own tasks for the names local data does not cover (these download their data). With both a
    benchmark and tasks, only the benchmark's tasks named in ``tasks`` run (a subset of it)."""
    planned: list[tuple[Any, LocalTask | None]] = []
    local_names: set[str] = set()
    bench_tasks = _online_tasks(None, benchmark) if benchmark else []
    if bench_tasks and tasks:
        names = {str(t.metadata.name) for t in bench_tasks}
        outside = [t for t in tasks if t not in names]
        if outside:
            raise ValueError(f"tasks: {', '.join(outside)} not in the benchmark {benchmark!r}")
        bench_tasks, tasks = [t for t in bench_tasks if str(t.metadata.name) in set(tasks)], None
    wanted = list(tasks or []) + [str(t.metadata.name) for t in bench_tasks]
    if local_data is not None:  # local data stands in for the named tasks it has
        for item in local_tasks(local_data, max_items, wanted or None):
            planned.append((item.task, item))
            local_names |= {item.name, item.dataset, item.dataset.split("/")[-1]}
    remaining = [t for t in (tasks or []) if t not in local_names]
    online = [t for t in bench_tasks if str(t.metadata.name) not in local_names]
    if remaining:
        online += [t for t in _online_tasks(remaining, None) if str(t.metadata.name) not in local_names]
    if online:
        if max_items is not None:
            log.warning("--max-items applies to local data only; %d online tasks run in full", len(online))
        planned.extend((t, None) for t in online)
    return planned


@dataclass(frozen=True)
class EvalSettings:
    """One run's settings with the defaults resolved: what the steps share and run.json records."""

    tasks: Sequence[str] | None
    benchmark: str | None
    local_data: Path | None
    max_items: int | None
    batch_size: int
    cache_dir_path: str | Path | None
    instructions: dict[str, str] | None

    @classmethod
    def resolve(
        cls,
        tasks: Sequence[str] | None,
        benchmark: str | None,
        local_data: str | Path | None,
        max_items: int | None,
        batch_size: int,
        cache_dir_path: str | Path | None,
        instructions: dict[str, str] | None,
    ) -> EvalSettings:
        """Fill the defaults (local data from ``$POOLATTN_DATA_DIR``, the embedding cache folder)
        and check ``max_items``."""
        if local_data is None and ((tasks and os.environ.get(DATA_DIR_ENV)) or (not tasks and not benchmark)):
            local_data = data_dir()
        local = Path(local_data) if local_data is not None else None
        if cache_dir_path == DEFAULT:
            cache_dir_path = cache_dir() / "embeddings"
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items: must be >= 1, got {max_items}")
        return cls(tasks, benchmark, local, max_items, batch_size, cache_dir_path, instructions)

    def record(self) -> dict[str, Any]:
        """The ``settings`` entry of ``run.json``."""
        import mteb

        return {
            "max_items": self.max_items,
            "batch_size": self.batch_size,
            "local_data": str(self.local_data) if self.local_data is not None else None,
            "tasks": list(self.tasks) if self.tasks else None,
            "benchmark": self.benchmark,
            "mteb_version": mteb.__version__,
            "embedding_cache": str(self.cache_dir_path) if self.cache_dir_path is not None else None,
        }


def _fresh_predictions_folder(output: Path) -> Path:
    """Clear an earlier run's files from ``output``; a new hidden folder for mteb's per-item
    predictions (``collect_items`` turns them into items files)."""
    _clear_previous(output)
    for stale in output.glob(".predictions.*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=".predictions.", dir=output))


def _run_record(encoder: MTEBEncoder, model_source: str | None, settings: EvalSettings) -> dict[str, Any]:
    """The start of ``run.json``: the model's identity and the settings, no task yet."""
    info = encoder.backend.describe()
    return {
        "poolattn_results_version": RESULTS_VERSION,
        "model": {
            "name": encoder.backend.name,
            "design": info.get("design"),
            "fingerprint": encoder.model_fingerprint,
            "source": model_source,
            "uses_instructions": encoder.backend.uses_instructions,
            **{k: v for k, v in info.items() if k != "design"},
        },
        "settings": settings.record(),
        "started_at": datetime.now(UTC).isoformat(),
        "tasks": {},
        # datasets that could not be evaluated (no valid sample), with the reason; never in "tasks"
        "skipped": {},
    }


def _skip_record(task: Any, local: LocalTask) -> dict[str, Any]:
    """The ``skipped`` entry of a local dataset with no valid sample."""
    return {
        "skipped": True,
        "reason": local.skip_reason,
        "family": local.family,
        "dataset": local.dataset,
        "source": local.path,
        "real_mteb_task": local.real_mteb_task,
        "main_score_name": task.metadata.main_score,
        "sampling": local.sampling,
    }


def _run_task(
    encoder: MTEBEncoder, task: Any, local: LocalTask | None, batch_size: int, output: Path, predictions: Path
) -> dict[str, Any]:
    """Evaluate one task, write its TaskResult and items files; returns its ``run.json`` entry."""
    name = str(task.metadata.name)
    tick = time.monotonic()
    preloaded = task.data_loaded
    if not preloaded:  # keep the data loaded after mteb's run: the items need its gold labels
        task.load_data()
    task_json = run_mteb_task(encoder, task, batch_size, prediction_folder=predictions)
    file = f"{name}.json"
    write_json_atomic(output / file, task_json)
    score = task_main_score(task_json, task.metadata.eval_splits)
    family = local.family if local else str(task.metadata.type)
    items_file, items_problem = collect_items(task, predictions, task_json, family, output)
    if not preloaded:
        task.unload_data()
    return {
        "file": file,
        "family": family,
        "dataset": local.dataset if local else name,
        "source": local.path if local else "mteb",
        "real_mteb_task": local.real_mteb_task if local else True,
        "main_score_name": task.metadata.main_score,
        "main_score": score,
        "sampling": local.sampling if local else None,
        "empty_texts": local.empty_text_record()
        if local
        else {"count": encoder.empty_texts.get(name, 0), "treatment": EMPTY_TEXT_TREATMENT},
        "seconds": round(time.monotonic() - tick, 2),
        # per-item results (poolattn.stats.items), or why there are none
        "items": items_file,
        **({"items_problem": items_problem} if items_problem else {}),
    }


def _run_planned(
    encoder: MTEBEncoder,
    planned: list[tuple[Any, LocalTask | None]],
    run: dict[str, Any],
    batch_size: int,
    output: Path,
    predictions: Path,
) -> None:
    """Every planned task in turn (a skipped dataset recorded as such); ``run.json`` is rewritten
    after each, so progress survives an interruption. ``predictions`` is removed at the end."""
    for task, local in planned:
        name = str(task.metadata.name)
        if local is not None and local.skipped:
            run["skipped"][name] = _skip_record(task, local)
            log.warning("%s (%s): skipped: %s", name, local.family, local.skip_reason)
        else:
            run["tasks"][name] = _run_task(encoder, task, local, batch_size, output, predictions)
            entry = run["tasks"][name]
            log.info(
                "%s (%s): %s = %.4f", name, entry["family"], task.metadata.main_score, entry["main_score"]
            )
        write_json_atomic(output / EVAL_RUN_FILE, run)
    shutil.rmtree(predictions, ignore_errors=True)


def _finish_run(run: dict[str, Any], encoder: MTEBEncoder, started: float, output: Path) -> None:
    """Add the cache counts and timings, write the final ``run.json`` and close the cache."""
    run["embedding_cache_stats"] = {
        "hits": encoder.cache.hits,
        "misses": encoder.cache.misses,
        "encoded": encoder.encoded_texts,
    }
    run["finished_at"] = datetime.now(UTC).isoformat()
    run["wall_seconds"] = round(time.monotonic() - started, 1)
    # mteb's own layout beside ours (ModelMeta + task files): mteb's ResultCache reads it
    run["mteb_results"] = str(write_mteb_results(output, run, encoder.backend).relative_to(output))
    write_json_atomic(output / EVAL_RUN_FILE, run)
    encoder.cache.close()


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
    """Evaluate a model on local and/or online tasks and write a results directory; returns its
    ``run.json`` content.

    Args:
        model: an ``EmbeddingModel``, a ``SentenceTransformer``, a backend, or a string for
            ``load_backend`` (poolattn model dir, ``base:pooling+attention``, backbone alias,
            s-t dir, ``all-MiniLM-L6-v2``).
        output_dir: where ``run.json`` and one ``<Task>.json`` per task are written.
        tasks: mteb task names or local dataset names; local data is used where it exists.
            With a benchmark: the benchmark's tasks to run (a subset of it).
        benchmark: an mteb benchmark name (online: mteb downloads its data).
        local_data: folder in the ../shared/data layout; default ``$POOLATTN_DATA_DIR``
            when neither tasks nor a benchmark name something else.
        max_items: deterministic down-sampling per dataset (see ``poolattn.evaluation.local``).
        cache_dir_path: embedding cache folder; ``None`` keeps it in memory only.
        instructions: per-task query instructions overriding the built-in table.
    """
    model_source = model if isinstance(model, str) else None
    settings = EvalSettings.resolve(
        tasks, benchmark, local_data, max_items, batch_size, cache_dir_path, instructions
    )
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # the data first: a malformed local file stops the run before any model work
    planned = plan_tasks(settings.tasks, settings.benchmark, settings.local_data, settings.max_items)
    if not planned:
        raise ValueError("no tasks to run: give tasks, a benchmark or a local data folder")
    if isinstance(model, str):
        model = load_backend(model)
    encoder = MTEBEncoder(
        model,
        cache_dir=settings.cache_dir_path,
        batch_size=settings.batch_size,
        instructions=settings.instructions,
    )
    predictions = _fresh_predictions_folder(output)
    run = _run_record(encoder, model_source, settings)
    _run_planned(encoder, planned, run, settings.batch_size, output, predictions)
    _finish_run(run, encoder, started, output)
    return run
