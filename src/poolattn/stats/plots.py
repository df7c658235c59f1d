"""Comparison plots, sized to be read at 100% zoom: ``family_means.png`` (each design's family
mean with its 95% CI), ``heatmap.png`` (per-dataset scores) and ``cd_<family>.png`` (Nemenyi).

Figures live on their own Agg canvas, never pyplot: plotting chooses no backend for the process.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..eval_results import SCALE
from ..io import atomic_file

DPI = 110


def agg_figure(
    figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **kwargs: Any
) -> tuple[Any, Any]:
    """A figure and its axes (``Figure.subplots``) on an Agg canvas, unknown to pyplot: no
    backend is chosen and nothing needs closing (the figure goes with its last reference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Any, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG atomically: a kill never leaves half a picture."""
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return [palette[i % len(palette)] for i in range(n)]


def family_means(summary: dict[str, Any], path: Path) -> None:
    """Small multiples: per family, each design's mean (x100) with its 95% CI as a bar."""
    names = list(summary["designs"])
    families = list(summary["families"])
    ncols = min(3, len(families))
    nrows = math.ceil(len(families) / ncols)
    height = nrows * (0.9 + 0.32 * len(names)) + 0.6
    fig, axes = agg_figure((3.9 * ncols + 1.6, height), nrows, ncols, squeeze=False, sharey=True)
    colors = _colors(len(names))
    ys = np.arange(len(names))[::-1]
    for ax, family in zip(axes.flat, families, strict=False):
        info = summary["families"][family]
        for y, name, color in zip(ys, names, colors, strict=True):
            mean = info["means"][name] * SCALE
            ci = info["ci95"].get(name)
            xerr = [[mean - ci[0] * SCALE], [ci[1] * SCALE - mean]] if ci else None
            ax.errorbar(mean, y, xerr=xerr, fmt="o", color=color, capsize=3, markersize=5)
            ax.annotate(
                f"{mean:.1f}", (mean, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7
            )
        ax.set_title(f"{family} ({info['n']} dataset{'s' if info['n'] != 1 else ''})", fontsize=9)
        ax.set_yticks(ys, names, fontsize=8)
        ax.set_ylim(-0.7, len(names) - 0.3)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.15)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in list(axes.flat)[len(families) :]:
        ax.set_visible(False)
    fig.suptitle(
        "Family mean main score (x100) with 95% CI over items and seeds; pairwise results: verdict table",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, path)


def heatmap(summary: dict[str, Any], path: Path) -> None:
    """Datasets (rows, grouped by family) x designs (columns), annotated with scores."""
    names = list(summary["designs"])
    tasks = sorted(summary["datasets"], key=lambda t: (summary["datasets"][t]["family"], t))
    data = np.array([[summary["datasets"][t]["scores"][n] * SCALE for n in names] for t in tasks])
    families = [summary["datasets"][t]["family"] for t in tasks]
    fig, ax = agg_figure((3.4 + 1.25 * len(names), 1.0 + 0.3 * len(tasks)))
    image = ax.imshow(data, cmap="viridis", aspect="auto", vmin=0, vmax=max(100.0, float(np.nanmax(data))))
    for (r, c), value in np.ndenumerate(data):
        color = "black" if value > 60 else "white"
        weight = "bold" if value == np.nanmax(data[r]) and len(names) > 1 else "normal"
        ax.text(c, r, f"{value:.1f}", ha="center", va="center", fontsize=7, color=color, fontweight=weight)
    for r in range(1, len(tasks)):  # a line between families
        if families[r] != families[r - 1]:
            ax.axhline(r - 0.5, color="white", lw=2)
    ax.set_xticks(range(len(names)), names, fontsize=8, rotation=20, ha="right")
    ax.set_yticks(range(len(tasks)), [f"{f} · {t}" for f, t in zip(families, tasks, strict=True)], fontsize=7)
    ax.set_title("Main score per dataset (x100; bold = best)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    save_figure(fig, path)


def cd_file(family: str) -> str:
    return f"cd_{re.sub(r'[^A-Za-z0-9]+', '_', family)}.png"


def cd_diagram(summary: dict[str, Any], family: str, path: Path) -> None:
    """Critical-difference diagram of one family (scikit-posthocs), with the Friedman result."""
    import pandas as pd
    import scikit_posthocs as sp

    info = summary["families"][family]
    nem, fr = info["nemenyi"], info["friedman"]
    names = list(nem["ranks"])
    ranks = pd.Series(nem["ranks"])
    sig = pd.DataFrame([[nem["pvalues"][a][b] for b in names] for a in names], index=names, columns=names)
    k = len(names)
    fig, ax = agg_figure((8.0, 1.9 + 0.32 * k))
    designs = list(summary["designs"])  # the same colour per design as in family_means.png
    palette = {n: c for n, c in zip(designs, _colors(len(designs)), strict=True) if n in names}
    sp.critical_difference_diagram(
        ranks, sig, ax=ax, alpha=summary["alpha"], label_props={"fontsize": 8}, color_palette=palette
    )
    pad = 0.05 * (k - 1)
    ax.set_xlim(1 - pad, k + pad)  # the whole rank scale, 1 = best
    ax.set_xticks(range(1, k + 1))
    ax.set_title(
        f"{family}: mean rank over {info['n']} datasets (1 = best); a bar joins designs Nemenyi cannot tell apart\n"
        f"Friedman chi2 = {fr['statistic']:.2f}, p = {fr['pvalue']:.3g}; critical difference CD = {nem['cd']:.2f}",
        fontsize=8,
        pad=18,
    )
    fig.subplots_adjust(left=0.25, right=0.75, top=0.78, bottom=0.05)
    save_figure(fig, path)
