"""Comparison plots (matplotlib, Agg): per-family bars with significance marks, and a
per-dataset heatmap grouped by family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SCALE = 100.0


def _stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "n.s."


def family_bars(summary: dict[str, Any], path: Path) -> None:
    """Grouped bars of each model's family mean; brackets mark Holm-corrected test outcomes."""
    names = [m["name"] for m in summary["models"]]
    families = list(summary["families"])
    n_models = len(names)
    width = 0.8 / n_models
    fig, ax = plt.subplots(figsize=(max(8.5, 1.3 * len(families) * max(1.0, n_models / 2) + 2.5), 5.0))
    colors = plt.get_cmap("tab10").colors
    top = 0.0
    for i, name in enumerate(names):
        values = [summary["families"][f]["means"][name] * SCALE for f in families]
        xs = np.arange(len(families)) + (i - (n_models - 1) / 2) * width
        bars = ax.bar(xs, values, width * 0.95, label=name, color=colors[i % len(colors)])
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
        top = max(top, *values)
    step = max(top * 0.07, 2.0)
    for fi, family in enumerate(families):
        rows = [t for t in summary["tests"] if t["family"] == family]
        for k, t in enumerate(rows):
            a, b = names.index(t["model_a"]), names.index(t["model_b"])
            xa = fi + (a - (n_models - 1) / 2) * width
            xb = fi + (b - (n_models - 1) / 2) * width
            y = top + step * (1.2 + k)
            ax.plot([xa, xa, xb, xb], [y - step * 0.25, y, y, y - step * 0.25], color="black", lw=0.8)
            ax.text((xa + xb) / 2, y, _stars(t["pvalue_holm"]), ha="center", va="bottom", fontsize=9)
    n_tests = max((sum(1 for t in summary["tests"] if t["family"] == f) for f in families), default=0)
    ax.set_ylim(0, top + step * (2.2 + n_tests))
    ax.set_xticks(np.arange(len(families)))
    ax.set_xticklabels(
        [
            f"{f}\nn={summary['families'][f]['n']}"
            + ("" if summary["families"][f]["tested"] else ", not tested")
            for f in families
        ],
        fontsize=9,
    )
    ax.set_ylabel("mean main score (x100)")
    ax.set_title(
        "Mean main score per task family\n"
        "paired Wilcoxon over datasets, Holm-corrected\n"
        f"* p<0.05, ** p<0.01, *** p<0.001, n.s. not significant; tested if ≥{summary['min_datasets']} datasets",
        fontsize=9,
    )
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def heatmap(summary: dict[str, Any], path: Path) -> None:
    """Datasets (rows, grouped by family) x models (columns), annotated with scores."""
    names = [m["name"] for m in summary["models"]]
    tasks = sorted(summary["datasets"], key=lambda t: (summary["datasets"][t]["family"], t))
    data = np.array([[summary["datasets"][t]["scores"][n] * SCALE for n in names] for t in tasks])
    labels = [f"{summary['datasets'][t]['family']} · {t}" for t in tasks]
    fig, ax = plt.subplots(figsize=(3.0 + 1.8 * len(names), 1.2 + 0.38 * len(tasks)))
    image = ax.imshow(data, cmap="viridis", aspect="auto", vmin=0, vmax=max(100.0, float(np.nanmax(data))))
    for r in range(data.shape[0]):
        best = np.nanmax(data[r])
        for c in range(data.shape[1]):
            value = data[r, c]
            color = "black" if value > 60 else "white"
            weight = "bold" if value == best and len(names) > 1 else "normal"
            ax.text(
                c, r, f"{value:.1f}", ha="center", va="center", fontsize=8, color=color, fontweight=weight
            )
    previous = None
    for r, t in enumerate(tasks):  # a line between families
        family = summary["datasets"][t]["family"]
        if previous is not None and family != previous:
            ax.axhline(r - 0.5, color="white", lw=2)
        previous = family
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=9, rotation=15, ha="right")
    ax.set_yticks(range(len(tasks)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_title("Main score per dataset (x100; bold = best)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
