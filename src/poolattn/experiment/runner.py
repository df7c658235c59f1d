"""Run the grid: train each design, evaluate it, compare all, write the report. Each run records
its finished phases in ``state.json``, so a rerun redoes none; every rank works, rank 0 writes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..evaluation.distributed import ProcessGroup, process_group
from .plan import ExperimentConfig, Run
from .state import read_state, write_state

if TYPE_CHECKING:
    from .status import GridProgress
    from .workers import GridOutcome


def _start_run(run_dir: Path, run: Run, worker: str) -> dict[str, Any]:
    """The run's state marked running by ``worker`` (an earlier error cleared), written at once."""
    state = read_state(run_dir)
    state.update(design=run.design, seed=run.seed, trained=run.trained, status="running")
    state.update(worker=worker, started_at=time.time(), workers=[*state.get("workers", []), worker])
    state.pop("error", None)
    write_state(run_dir, state)
    return state


def _train_phase(
    config: ExperimentConfig, run: Run, run_dir: Path, state: dict[str, Any], group: ProcessGroup
) -> None:
    """Train the run's design on every rank (resuming from its last checkpoint); records ``model_dir``."""
    from ..training.trainer import train

    train_cfg = config.train_config(run)
    start = time.monotonic()
    resume = group.broadcast((Path(train_cfg.training.output_dir) / "checkpoints").exists())
    model_dir = train(train_cfg, resume=resume)
    state.update(
        model_dir=str(model_dir), train_seconds=time.monotonic() - start + state.get("train_seconds", 0)
    )
    if group.main:
        write_state(run_dir, state)


def _evaluate_phase(
    config: ExperimentConfig, run: Run, run_dir: Path, state: dict[str, Any], group: ProcessGroup
) -> None:
    """Evaluate the model into ``eval/`` over every rank; rank 0 records ``eval_dir``, the
    parameter counts and a multilayer head's attention over layers."""
    from ..design import model_config
    from ..evaluation.distributed import evaluate  # sharded over ranks under `accelerate launch`
    from ..model import EmbeddingModel
    from ..model_card import update_model_card
    from .layers import layer_attention

    start = time.monotonic()
    if run.trained:
        model = EmbeddingModel.load(state["model_dir"])
    else:
        model = EmbeddingModel.from_config(model_config(**run.model))
    ev = config.evaluation
    evaluate(
        model,
        run_dir / "eval",
        tasks=ev.tasks or None,
        benchmark=ev.benchmark,
        local_data=ev.local_data,
        max_items=ev.max_items,
        batch_size=ev.batch_size,
    )
    if not group.main:
        return
    state.update(eval_dir=str(run_dir / "eval"), eval_seconds=time.monotonic() - start)
    if run.trained:
        update_model_card(state["model_dir"], results=run_dir / "eval")
    state["parameters"] = model.describe()
    write_state(run_dir, state)  # evaluation recorded at once: a later failure never repeats it
    if run.design.startswith("multilayer"):
        attention = layer_attention(model, config, run)  # None: experiment.layer_attention_sample = 0
        if attention is not None:
            state["layer_attention"] = attention


def _ablation_phase(config: ExperimentConfig, run_dir: Path, state: dict[str, Any]) -> None:
    """The layer ablation of the trained multilayer model into ``ablation/``; records ``ablation_dir``."""
    from ..layer_ablation import layer_ablation
    from ..model import EmbeddingModel

    start = time.monotonic()
    model = EmbeddingModel.load(state["model_dir"])
    layer_ablation(
        model,
        run_dir / "ablation",
        tasks=config.experiment.layer_ablation_tasks,
        local_data=config.evaluation.local_data,
        max_items=config.experiment.layer_ablation_items,
        batch_size=config.evaluation.batch_size,
    )
    state.update(ablation_dir=str(run_dir / "ablation"), ablation_seconds=time.monotonic() - start)


def run_one(config: ExperimentConfig, run: Run, index: int, progress: GridProgress) -> dict[str, Any]:
    """Train (if needed) and evaluate one run, recording each finished phase (rank 0); returns
    the state, which the worker marks done once every rank got through."""
    group = process_group()
    run_dir = config.output_dir / run.name
    state = group.broadcast(_start_run(run_dir, run, progress.worker) if group.main else None)

    def enter(phase: str) -> None:
        if group.main:
            state["phase"] = phase
            write_state(run_dir, state)
        progress.say(index, run, phase)

    if run.trained and "model_dir" not in state:
        enter("training")
        _train_phase(config, run, run_dir, state, group)
    if "eval_dir" not in state:
        enter("evaluating")
        _evaluate_phase(config, run, run_dir, state, group)
    wants_ablation = run.trained and run.design.startswith("multilayer")
    if wants_ablation and "ablation_dir" not in state and config.experiment.layer_ablation_items > 0:
        enter("layer ablation")
        if group.main:  # one process; the other ranks wait for it at the worker's end-of-run check
            _ablation_phase(config, run_dir, state)
    if group.main:
        write_state(run_dir, state)
    return state


def run_experiment(
    config: ExperimentConfig, runs: list[str] | None = None, shard: tuple[int, int] | None = None
) -> GridOutcome:
    """Run the grid alongside any other workers on the same output directory, then compare and
    report (``runs`` / ``shard`` (K, N): which runs this worker may take; see ``run_grid``)."""
    from .report import write_experiment_report
    from .workers import run_grid

    return run_grid(config, run_one, write_experiment_report, names=runs, shard=shard)


def describe_plan(config: ExperimentConfig) -> str:
    """The plan of a ``--dry-run``: designs, seeds, budget, data and tasks."""
    from ..training.recipe import adapter_text, recipe_text, training_recipe

    lines = [f"experiment {config.source} -> {config.output_dir}"]
    runs = config.runs()
    first = next((r for r in runs if r.trained), runs[0])
    tc = config.train_config(first)
    lines.append(f"base model: {tc.model.base}  max_length: {tc.model.max_length}  dtype: {tc.model.dtype}")
    lines.append(f"data: {', '.join(map(str, tc.data.train))}")
    recipe = training_recipe(tc, [])
    lines += [f"training: {recipe_text(recipe)}", f"adapter: {adapter_text(recipe)}"]
    ev = config.evaluation
    what = ev.benchmark or (
        ", ".join(ev.tasks) if ev.tasks else f"local suite ({ev.local_data or '$POOLATTN_DATA_DIR'})"
    )
    lines.append(
        f"evaluation: {what}; max_items {ev.max_items}; families need > {ev.min_datasets - 1} datasets for tests"
    )
    lines.append(f"runs ({len(runs)}):")
    for run in runs:
        state = read_state(config.output_dir / run.name).get("status", "pending")
        kind = "train + eval" if run.trained else "eval only (untrained)"
        lines.append(f"  {run.name:<40} {kind:<22} {state}")
    return "\n".join(lines)
