"""The experiment report: ``report.md`` and its PNGs, verdicts first, rebuilt from the files the
runs wrote (so ``--report-only`` can redo it, and it never claims more than they hold)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import write_text_atomic
from .plan import ExperimentConfig, Run
from .state import read_state
from .summary import control_pairs, summarise

REPORT_FILE = "report.md"


@dataclass(frozen=True)
class ExperimentReport:
    """What ``write_experiment_report`` wrote: the report's path and its summary lines."""

    path: Path
    summary: list[str]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The training log (``metrics.jsonl``) of one run; empty when it was not trained."""
    path = run_dir / "train" / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if "loss" in row and "step" in row]


def plot_training_curves(curves: dict[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """One loss curve per trained design."""
    if not any(curves.values()):
        return None
    from ..stats.plots import agg_figure

    fig, ax = agg_figure((8, 4.5))
    for name, rows in curves.items():
        if rows:
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name, linewidth=1.5)
    ax.set(xlabel="step", ylabel="InfoNCE loss", title="Training loss per design")
    return _finish(fig, ax, path)


def plot_layer_attention(layers: dict[str, list[float]], path: Path) -> Path | None:
    """Attention mass per layer of each multilayer head (where its latents look)."""
    if not layers:
        return None
    from ..stats.plots import agg_figure

    fig, ax = agg_figure((8, 4.5))
    for name, mass in layers.items():
        ax.plot(range(1, len(mass) + 1), mass, marker="o", markersize=3, label=name)
    uniform = 1 / max(len(m) for m in layers.values())
    ax.axhline(uniform, color="grey", linestyle="--", linewidth=1, label="uniform")
    ax.set(xlabel="transformer layer", ylabel="mean attention of the latents")
    ax.set_title("Multilayer pooling: attention mass per layer")
    return _finish(fig, ax, path)


def _finish(fig: Any, ax: Any, path: Path) -> Path:
    """Grid and legend a line plot and save it as PNG."""
    from ..stats.plots import save_figure

    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _fmt_int(n: Any) -> str:
    return f"{int(n):,}" if isinstance(n, int | float) else "-"


def _dtype_text(setting: str, train_dir: Path) -> str:
    """The dtype setting and, for ``auto``, what it resolved to (the trained model's own record)."""
    from ..training.config import read_train_run

    try:
        ran = read_train_run(train_dir)["model"]["compute_dtype"]
    except (OSError, ValueError, KeyError, TypeError):
        return setting
    return f"{setting} (computed in {ran})" if ran != setting else setting


def setup_section(config: ExperimentConfig, runs: list[Run], states: dict[str, dict[str, Any]]) -> list[str]:
    from ..training.recipe import adapter_text, recipe_text, training_recipe

    trained = next((r for r in runs if r.trained), None)
    lines = ["## Setup, time and throughput", ""]
    if trained is not None:
        tc = config.train_config(trained)
        recipe = training_recipe(tc, [])
        lines += [
            f"- Base model: `{tc.model.base}`, max length {tc.model.max_length}, "
            f"dtype {_dtype_text(tc.model.dtype, Path(tc.training.output_dir))}",
            f"- Training data: {', '.join(f'`{Path(p).name}`' for p in tc.data.train)}",
            f"- Recipe (identical for every design): {recipe_text(recipe)}, seeds {config.experiment.seeds}",
            f"- Adapter: {adapter_text(recipe)}",
        ]
    ev = config.evaluation
    sampled = f"down-sampled to max_items={ev.max_items} per dataset" if ev.max_items else "full datasets"
    lines += [f"- Evaluation: {ev.benchmark or ', '.join(ev.tasks) or 'local suite'}; {sampled}", ""]
    lines += [
        "| run | status | backbone params | adapter params | head params | train min | eval min | train examples/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        s = states[run.name]
        p = s.get("parameters", {})
        counts = " | ".join(_fmt_int(p.get(f"{part}_parameters")) for part in ("backbone", "adapter", "head"))
        minutes = f"{s.get('train_seconds', 0) / 60:.1f} | {s.get('eval_seconds', 0) / 60:.1f}"
        rate = "-"
        if run.trained and s.get("train_seconds"):
            metrics = read_metrics(config.output_dir / run.name)
            if metrics and "examples_per_s" in metrics[-1]:
                rate = f"{sum(m['examples_per_s'] for m in metrics) / len(metrics):.1f}"
        lines.append(f"| {run.name} | {s.get('status', 'pending')} | {counts} | {minutes} | {rate} |")
    for r in runs:
        if states[r.name].get("status") == "failed":
            lines.append(f"\n**{r.name} failed**: {states[r.name].get('error')} (see `{r.name}/state.json`)")
    return lines + [""]


def ablation_section(config: ExperimentConfig) -> list[str]:
    """Every ``layer_ablation.json`` in the experiment folder, a run's folder or its ``ablation/``
    folder (the runner's), summarised with its PNG."""
    from ..layer_ablation import JSON_FILE as ABLATION_JSON
    from ..layer_ablation import PNG_FILE as ABLATION_PNG

    out = config.output_dir
    found = sorted(
        {*out.glob(ABLATION_JSON), *out.glob(f"*/{ABLATION_JSON}"), *out.glob(f"*/ablation/{ABLATION_JSON}")}
    )
    lines: list[str] = []
    for path in found:
        try:
            result = json.loads(path.read_text())
            rows = result["per_layer"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            lines.append(f"- `{path.relative_to(out)}`: unreadable ({exc})")
            continue
        top = sorted(rows, key=lambda r: -r["importance"])[:3]
        tasks = ", ".join(t["name"] for t in result.get("tasks", []))
        lines.append(
            f"- **{result.get('model', {}).get('design', path.parent.name)}** (`{path.parent.relative_to(out)}`; "
            f"{tasks}): all layers {result['all']['mean'] * 100:.2f}; removing layer "
            + ", ".join(f"{r['layer']} costs {r['importance'] * 100:+.2f}" for r in top)
            + " points (the three most needed)."
        )
        png = path.with_name(ABLATION_PNG)
        if png.exists():
            lines += ["", f"![layer ablation]({png.relative_to(out)})", ""]
    return lines


def comparison_sections(result: dict[str, Any]) -> list[str]:
    """Everything the comparison found, verdicts first (images in ``comparison/``)."""
    from ..stats.report import (
        dataset_table,
        dataset_tests_table,
        family_table,
        family_tests_table,
        ranks_section,
        seed_section,
        settings_text,
        verdict_table,
    )

    designs = list(result["designs"])
    controls = control_pairs(designs)
    control_set = {frozenset(p) for p in controls}
    design_pairs = [
        (t["model_a"], t["model_b"])
        for t in result["family_tests"]
        if frozenset((t["model_a"], t["model_b"])) not in control_set
    ]
    lines = ["## Verdicts per family: every pair of designs", "", settings_text(result), ""]
    lines += (
        verdict_table(result, list(dict.fromkeys(design_pairs))) if design_pairs else ["One design only."]
    )
    lines += ["", "## Positive control: each trained design vs the untrained baseline", ""]
    lines += verdict_table(result, controls) if controls else ["No untrained baseline in the grid."]
    family = [*family_table(result), "", "![family means](comparison/family_means.png)"]
    datasets = [*dataset_table(result), "", "![per-dataset scores](comparison/heatmap.png)"]
    lines += ["", "## Comparison", ""]
    for title, body in (
        ("Mean main score per task family (x100, 95% CI over items and seeds)", family),
        ("Per-dataset main scores (x100, 95% CI)", datasets),
        ("All designs at once: Friedman and Nemenyi", ranks_section(result, prefix="comparison/")),
        ("Seed-to-seed spread", seed_section(result)),
        ("Family-level tests", family_tests_table(result)),
        ("Per-dataset paired tests (x100)", dataset_tests_table(result)),
    ):
        lines += [f"### {title}", "", *body, ""]
    lines += [
        "Full method notes, CSV and JSON: `comparison/report.md`, `comparison/scores.csv`, "
        "`comparison/stats.json`.",
        "",
    ]
    return lines


def write_experiment_report(config: ExperimentConfig) -> ExperimentReport:
    """Compare the finished runs and write ``report.md`` with its PNGs in the experiment folder."""
    from ..stats.compare import compare

    out = config.output_dir
    runs = config.runs()
    states = {run.name: read_state(out / run.name) for run in runs}
    finished = [run for run in runs if states[run.name].get("status") == "done"]
    lines = [f"# Experiment report: {config.source.name if config.source else out.name}", ""]
    designs = list(dict.fromkeys(r.label for r in finished))  # seeds of one design share it
    seeds = config.experiment.seeds
    lines += [
        f"{len(finished)} of {len(runs)} runs finished: {len(designs)} designs"
        + (f", each trained design with seeds {seeds} (replicates of one design)" if len(seeds) > 1 else "")
        + ". Setup, time and throughput at the end.",
        "",
    ]
    if len(designs) >= 2:
        result = compare(
            [Path(states[r.name]["eval_dir"]) for r in finished],
            out / "comparison",
            min_datasets=config.evaluation.min_datasets,
            names=[r.name for r in finished],
            designs=[r.label for r in finished],
        )
        summary, sections = summarise(result), comparison_sections(result)
    else:
        summary = ["Fewer than two designs finished: nothing to compare yet."]
        sections = ["## Comparison", "", "Nothing to compare yet.", ""]
    lines += ["## Summary", "", *summary, "", *sections]
    ablation = ablation_section(config)
    if ablation:
        lines += ["## Layer ablation: which layers the multilayer heads need", "", *ablation, ""]
    layers = {
        r.name: states[r.name]["layer_attention"] for r in finished if states[r.name].get("layer_attention")
    }
    if plot_layer_attention(layers, out / "layer_attention.png"):
        lines += ["## Which layers the multilayer heads attend to (attention mass)", ""]
        lines += ["![layer attention](layer_attention.png)", ""]
        for name, mass in layers.items():
            top = sorted(range(len(mass)), key=lambda i: -mass[i])[:3]
            lines.append(
                f"- {name}: most attended layers {', '.join(str(i + 1) for i in top)} "
                f"(uniform would be {1 / len(mass):.3f} each; max {max(mass):.3f})"
            )
        lines.append("")
    curves = {r.name: read_metrics(out / r.name) for r in finished if r.trained}
    if plot_training_curves(curves, out / "training_curves.png"):
        lines += ["## Training curves", "", "![training curves](training_curves.png)", ""]
    lines += setup_section(config, runs, states)
    path = out / REPORT_FILE
    write_text_atomic(path, "\n".join(lines) + "\n")
    return ExperimentReport(path, summary)
