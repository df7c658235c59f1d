"""Run tasks through ``mteb.evaluate`` and write a results directory.

A results directory holds one mteb ``TaskResult`` JSON per task (``<Task>.json``, the layout of
mteb's own cache folders), its per-item results (``<Task>.items.json``, format in
``poolattn.stats.items``), and ``run.json``: the model's design and fingerprint, the settings,
and per task its family, dataset, main score, down-sampling and empty texts (or, under
``skipped``, why a local dataset gave no valid sample). mteb's result cache is never used and an
earlier run's task files are removed first, so old scores never come back.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..backends.resolve import load_backend
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
            prediction_folder=prediction_folder,
        )
    finally:
        if said:
            del task.check_if_dataset_is_superseded
    if result.exceptions:
        raise RuntimeError(f"{task.metadata.name}: evaluation failed: {result.exceptions}")
    return result.task_results[0].to_dict()


def _fresh_predictions_folder(output: Path) -> Path:
    """Remove an earlier run's task and items files (listed in its ``run.json``) and predictions
    folders an interrupted run left; a new hidden folder for mteb's per-item predictions."""
    run_file = output / EVAL_RUN_FILE
    if run_file.exists():
        try:
            previous = list(json.loads(run_file.read_text()).get("tasks", {}).values())
            files = [t["file"] for t in previous] + [t["items"] for t in previous if t.get("items")]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            files = []
        for name in files:
            (output / name).unlink(missing_ok=True)
        run_file.unlink()
    for stale in output.glob(".predictions.*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=".predictions.", dir=output))


def plan_tasks(
    tasks: Sequence[str] | None, benchmark: str | None, local_data: str | Path | None, max_items: int | None
) -> list[tuple[Any, LocalTask | None]]:
    """The tasks to run: local datasets (all, or those named / in the benchmark), then mteb's
    own tasks for the names local data does not cover (these download their data). With both a
    benchmark and tasks, only the benchmark's tasks named in ``tasks`` run (a subset of it)."""
    import mteb

    planned: list[tuple[Any, LocalTask | None]] = []
    local_names: set[str] = set()
    bench_tasks = list(mteb.get_benchmark(benchmark).tasks) if benchmark else []
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
        online += [t for t in mteb.get_tasks(tasks=remaining) if str(t.metadata.name) not in local_names]
    if online:
        if max_items is not None:
            log.warning("--max-items applies to local data only; %d online tasks run in full", len(online))
        planned.extend((t, None) for t in online)
    return planned


def _describe(task: Any, local: LocalTask | None, **score: Any) -> dict[str, Any]:
    """What ``run.json`` says of a task, run (with its ``score``) or skipped: where its data came
    from and how it was sampled."""
    name = str(task.metadata.name)
    return {
        "family": local.family if local else str(task.metadata.type),
        "dataset": local.dataset if local else name,
        "source": local.path if local else "mteb",
        "real_mteb_task": local.real_mteb_task if local else True,
        "main_score_name": task.metadata.main_score,
        **score,
        "sampling": local.sampling if local else None,
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
    write_json_atomic(output / f"{name}.json", task_json)
    score = task_main_score(task_json, task.metadata.eval_splits)
    entry = {"file": f"{name}.json", **_describe(task, local, main_score=score)}
    items_file, items_problem = collect_items(task, predictions, task_json, entry["family"], output)
    if not preloaded:
        task.unload_data()
    return entry | {
        "empty_texts": local.empty_text_record()
        if local
        else {"count": encoder.empty_texts[name], "treatment": EMPTY_TEXT_TREATMENT},
        "seconds": round(time.monotonic() - tick, 2),
        "items": items_file,  # per-item results (poolattn.stats.items), or why there are none
        **({"items_problem": items_problem} if items_problem else {}),
    }


def evaluate(
    model: Any,
    output_dir: str | Path,
    tasks: Sequence[str] | None = None,
    benchmark: str | None = None,
    local_data: str | Path | None = None,
    max_items: int | None = None,
    batch_size: int = 32,
    cache_dir_path: str | Path | None = DEFAULT,
) -> dict[str, Any]:
    """Evaluate a model on local and/or online tasks and write a results directory into
    ``output_dir``; returns its ``run.json`` content.

    ``model``: an ``EmbeddingModel``, a ``SentenceTransformer``, a backend, or a string for
    ``load_backend``. ``tasks``: mteb task or local dataset names (local data is used where it
    exists); with a ``benchmark`` (online: mteb downloads its data), the subset of it to run.
    ``local_data``: a folder in the ../shared/data layout, by default ``$POOLATTN_DATA_DIR`` when
    neither tasks nor a benchmark name something else. ``max_items``: deterministic
    down-sampling per local dataset. ``cache_dir_path``: the embedding cache folder (``None``: in
    memory).
    """
    import mteb

    if local_data is None and ((tasks and os.environ.get(DATA_DIR_ENV)) or (not tasks and not benchmark)):
        local_data = data_dir()
    local = Path(local_data) if local_data is not None else None
    if cache_dir_path == DEFAULT:
        cache_dir_path = cache_dir() / "embeddings"
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items: must be >= 1, got {max_items}")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # the data first: a malformed local file stops the run before any model work
    planned = plan_tasks(tasks, benchmark, local, max_items)
    if not planned:
        raise ValueError("no tasks to run: give tasks, a benchmark or a local data folder")
    source = model if isinstance(model, str) else None
    backend = load_backend(source) if source is not None else model
    encoder = MTEBEncoder(backend, cache_dir=cache_dir_path, batch_size=batch_size)
    predictions = _fresh_predictions_folder(output)
    info = encoder.backend.describe()
    run: dict[str, Any] = {
        "poolattn_results_version": RESULTS_VERSION,
        "model": {
            "name": encoder.backend.name,
            "design": info.get("design"),
            "fingerprint": encoder.model_fingerprint,
            "source": source,
            "uses_instructions": encoder.backend.uses_instructions,
            **{k: v for k, v in info.items() if k != "design"},
        },
        "settings": {
            "max_items": max_items,
            "batch_size": batch_size,
            "local_data": str(local) if local is not None else None,
            "tasks": list(tasks) if tasks else None,
            "benchmark": benchmark,
            "mteb_version": mteb.__version__,
            "embedding_cache": str(cache_dir_path) if cache_dir_path is not None else None,
        },
        "started_at": datetime.now(UTC).isoformat(),
        "tasks": {},
        "skipped": {},  # datasets with no valid sample, with the reason; never in "tasks"
    }
    for task, local_task in planned:  # run.json rewritten after each task: progress survives a kill
        name = str(task.metadata.name)
        if local_task is not None and local_task.skipped:
            reason = {"skipped": True, "reason": local_task.skip_reason}
            run["skipped"][name] = reason | _describe(task, local_task)
            log.warning("%s (%s): skipped: %s", name, local_task.family, local_task.skip_reason)
        else:
            entry = run["tasks"][name] = _run_task(encoder, task, local_task, batch_size, output, predictions)
            log.info(
                "%s (%s): %s = %.4f", name, entry["family"], task.metadata.main_score, entry["main_score"]
            )
        write_json_atomic(output / EVAL_RUN_FILE, run)
    shutil.rmtree(predictions, ignore_errors=True)
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
    return run
