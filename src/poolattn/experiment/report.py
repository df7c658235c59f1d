"""The experiment report: setup, the comparison (tables + statistics), curves, costs, layers.

Everything in it is read back from the files the runs wrote, so the report can be rebuilt at
any time (``poolattn experiment CONFIG --report-only``) and never claims more than they hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .plan import ExperimentConfig, Run  # noqa: E402
from .runner import read_state  # noqa: E402
from .summary import summarise  # noqa: E402


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The training log (``metrics.jsonl``) of one run; empty when it was not trained."""
    path = run_dir / "train" / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if "loss" in row and "step" in row:
                rows.append(row)
    return rows


def plot_training_curves(curves: dict[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """One loss curve per trained design."""
    if not any(curves.values()):
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, rows in curves.items():
        if rows:
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name, linewidth=1.5)
    return _finish(fig, ax, "step", "InfoNCE loss", "Training loss per design", path)


def plot_layer_attention(layers: dict[str, list[float]], path: Path) -> Path | None:
    """Attention mass per layer of each multilayer head (which layers the head relies on)."""
    if not layers:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, mass in layers.items():
        ax.plot(range(1, len(mass) + 1), mass, marker="o", markersize=3, label=name)
    ax.axhline(
        1 / max(len(m) for m in layers.values()), color="grey", linestyle="--", linewidth=1, label="uniform"
    )
    return _finish(
        fig,
        ax,
        "transformer layer",
        "mean attention of the latents",
        "Multilayer pooling: attention mass per layer",
        path,
    )


def _finish(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    """Label, grid and legend a line plot, save it as PNG and free the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt_int(n: Any) -> str:
    return f"{int(n):,}" if isinstance(n, int | float) else "-"


def setup_section(config: ExperimentConfig, runs: list[Run], states: dict[str, dict[str, Any]]) -> list[str]:
    from ..training import train_config_from_dict

    trained = next((r for r in runs if r.trained), None)
    lines = ["## Setup", ""]
    if trained is not None:
        tc = train_config_from_dict(config.train_data(trained), config.base_dir)
        t, lora = tc.training, tc.lora
        lines += [
            f"- Base model: `{tc.model.base}`, max length {tc.model.max_length}, {tc.model.dtype}",
            f"- Training data: {', '.join(f'`{Path(p).name}`' for p in tc.data.train)}",
            f"- Recipe (identical for every design): {t.steps} steps, batch {t.batch_size} queries "
            f"(GradCache mini-batch {t.mini_batch_size}), lr {t.learning_rate}"
            + (f" (head {t.head_learning_rate})" if t.head_learning_rate else "")
            + f", warm-up {t.warmup_steps}, temperature {t.temperature}, seeds {config.experiment.seeds}",
            f"- LoRA: r {lora.r}, alpha {lora.alpha}, dropout {lora.dropout} on {', '.join(lora.target_modules)}",
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
        train_min = s.get("train_seconds", 0) / 60
        rate = "-"
        if run.trained and s.get("train_seconds"):
            metrics = read_metrics(config.output_dir / run.name)
            if metrics and "examples_per_s" in metrics[-1]:
                rate = f"{sum(m['examples_per_s'] for m in metrics) / len(metrics):.1f}"
        lines.append(
            f"| {run.name} | {s.get('status', 'pending')} | {_fmt_int(p.get('backbone_parameters'))} | "
            f"{_fmt_int(p.get('adapter_parameters'))} | {_fmt_int(p.get('head_parameters'))} | "
            f"{train_min:.1f} | {s.get('eval_seconds', 0) / 60:.1f} | {rate} |"
        )
    failed = [(r.name, states[r.name].get("error")) for r in runs if states[r.name].get("status") == "failed"]
    for name, error in failed:
        lines.append(f"\n**{name} failed**: {error} (see `{name}/state.json`)")
    return lines + [""]


def write_report(config: ExperimentConfig) -> Path:
    """Compare the finished runs and write ``report.md`` with its PNGs in the experiment folder."""
    from ..stats import compare

    out = config.output_dir
    runs = config.runs()
    states = {run.name: read_state(out / run.name) for run in runs}
    finished = [run for run in runs if states[run.name].get("status") == "done"]
    lines = [f"# Experiment report: {config.source.name if config.source else out.name}", ""]
    lines += setup_section(config, runs, states)
    comparison_dir = out / "comparison"
    if len(finished) >= 2:
        result = compare(
            [Path(states[r.name]["eval_dir"]) for r in finished],
            comparison_dir,
            min_datasets=config.evaluation.min_datasets,
            names=[r.name for r in finished],
        )
        lines += ["## Summary", ""] + summarise(result, [r.name for r in finished]) + [""]
        body = (comparison_dir / "report.md").read_text()
        body = body.replace("](", "](comparison/")  # images live in the comparison folder
        lines += ["## Comparison", "", body.split("\n", 1)[1] if body.startswith("# ") else body, ""]
    else:
        lines += ["## Comparison", "", "Fewer than two runs finished: nothing to compare yet.", ""]
    curves = {r.name: read_metrics(out / r.name) for r in finished if r.trained}
    if plot_training_curves(curves, out / "training_curves.png"):
        lines += ["## Training curves", "", "![training curves](training_curves.png)", ""]
    layers = {
        r.name: states[r.name]["layer_attention"] for r in finished if states[r.name].get("layer_attention")
    }
    if plot_layer_attention(layers, out / "layer_attention.png"):
        lines += [
            "## Which layers the multilayer heads rely on",
            "",
            "![layer attention](layer_attention.png)",
            "",
        ]
        for name, mass in layers.items():
            top = sorted(range(len(mass)), key=lambda i: -mass[i])[:3]
            lines.append(
                f"- {name}: most attended layers {', '.join(str(i + 1) for i in top)} "
                f"(uniform would be {1 / len(mass):.3f} each; max {max(mass):.3f})"
            )
        lines.append("")
    path = out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
