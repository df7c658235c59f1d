"""Write a comparison: report.md, scores.csv, stats.json and two PNG plots.

Every table shows the down-sampling a dataset was evaluated with, so a quick run can
never be mistaken for a full one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

SCALE = 100.0  # scores shown in percent, as MTEB tables do


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sampling_text(sampling: dict[str, Any] | None) -> str:
    """A short description of the down-sampling, e.g. ``200/1379 pairs``, or ``full``."""
    if not sampling or sampling.get("max_items") is None:
        return "full"
    text = f"{sampling.get('kept')}/{sampling.get('total')} {sampling.get('unit', 'items')}"
    if "sets_total" in sampling:
        text += f" in {sampling['sets']}/{sampling['sets_total']} sets"
    if "corpus_kept" in sampling:
        text += f", corpus {sampling['corpus_kept']}/{sampling['corpus_total']}"
    if "train_kept" in sampling:
        text += f", train {sampling['train_kept']}/{sampling['train_total']}"
    if "candidates" in sampling:
        text += f", {sampling['candidates']} candidates"
    return text


def _fmt(x: float, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{x:.2g}" if x >= 0.001 else f"{x:.1e}"


def format_run_table(run: dict[str, Any]) -> str:
    """A markdown table of one evaluation run (used by ``poolattn eval``)."""
    model = run["model"]
    lines = [
        f"model: {model.get('design') or model['name']}  fingerprint: {model['fingerprint'][:12]}  "
        f"max_items: {run['settings'].get('max_items')}",
        "",
        "| family | task | metric | score | data used |",
        "|---|---|---|---:|---|",
    ]
    for task, info in sorted(run["tasks"].items(), key=lambda kv: (kv[1]["family"], kv[0])):
        lines.append(
            f"| {info['family']} | {task} | {info['main_score_name']} | {info['main_score'] * SCALE:.2f} | "
            f"{sampling_text(info.get('sampling'))} |"
        )
    return "\n".join(lines)


def scores_csv(summary: dict[str, Any]) -> str:
    names = [m["name"] for m in summary["models"]]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["family", "task", "metric", "max_items", "data_used", *names])
    for task, info in summary["datasets"].items():
        sampling = info.get("sampling") or {}
        writer.writerow(
            [info["family"], task, info["metric"], sampling.get("max_items"), sampling_text(sampling)]
            + [f"{info['scores'][n]:.6f}" for n in names]
        )
    return out.getvalue()


def report_markdown(summary: dict[str, Any], plots: bool) -> str:
    names = [m["name"] for m in summary["models"]]
    lines = ["# Comparison of embedding designs", ""]
    for m in summary["models"]:
        max_items = (m.get("settings") or {}).get("max_items")
        lines.append(
            f"- **{m['name']}**: `{m['directory']}`, fingerprint `{(m['fingerprint'] or '')[:12]}`, "
            f"max_items {max_items if max_items is not None else 'none (full data)'}"
        )
    for text in summary.get("warnings", []):
        lines.append(f"\n> **Warning:** {text}")
    lines += ["", "## Mean main score per task family (x100)", ""]
    lines.append("| family | datasets | " + " | ".join(names) + " |")
    lines.append("|---|---:|" + "---:|" * len(names))
    for family, info in summary["families"].items():
        best = max(info["means"].values())
        cells = [
            f"**{_fmt(info['means'][n] * SCALE)}**"
            if info["means"][n] == best
            else _fmt(info["means"][n] * SCALE)
            for n in names
        ]
        lines.append(f"| {family} | {info['n']} | " + " | ".join(cells) + " |")
    lines += ["", "## Per-dataset main scores (x100)", ""]
    lines.append("| family | task | metric | data used | " + " | ".join(names) + " |")
    lines.append("|---|---|---|---|" + "---:|" * len(names))
    for task, info in summary["datasets"].items():
        cells = [_fmt(info["scores"][n] * SCALE) for n in names]
        lines.append(
            f"| {info['family']} | {task} | {info['metric']} | {sampling_text(info.get('sampling'))} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "## Paired Wilcoxon signed-rank tests over datasets",
        "",
        f"Two-sided, per family and pair of models; Holm–Bonferroni over all {len(summary['tests'])} tests; "
        f"alpha {summary['alpha']}; families with fewer than {summary['min_datasets']} datasets are not tested. "
        "Effect size: matched-pairs rank-biserial correlation (+1: A better on every dataset). "
        "CI: 95% percentile bootstrap of the mean difference A−B over datasets (x100).",
        "",
    ]
    untested = [f"{f} ({i['n']})" for f, i in summary["families"].items() if not i["tested"]]
    if summary["tests"]:
        lines.append("| family | A | B | n | mean A−B | W | p | p (Holm) | r (rank-biserial) | 95% CI | |")
        lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|---|---|")
        for t in summary["tests"]:
            ci = t.get("ci95_mean_diff")
            ci_text = f"[{_fmt(ci[0] * SCALE)}, {_fmt(ci[1] * SCALE)}]" if ci else "–"
            lines.append(
                f"| {t['family']} | {t['model_a']} | {t['model_b']} | {t['n']} | {_fmt(t['mean_diff'] * SCALE)} | "
                f"{_fmt(t['statistic'], 1)} | {_p(t['pvalue'])} | {_p(t['pvalue_holm'])} | "
                f"{_fmt(t['rank_biserial'])} | {ci_text} | {'significant' if t['significant'] else 'n.s.'} |"
            )
    else:
        lines.append("No family has enough datasets for a test.")
    if untested:
        lines += ["", f"Not tested (too few datasets): {', '.join(untested)}."]
    if plots:
        lines += [
            "",
            "## Plots",
            "",
            "![per-family means](family_bars.png)",
            "",
            "![per-dataset scores](heatmap.png)",
        ]
    return "\n".join(lines) + "\n"


def write_report(summary: dict[str, Any], output: Path, plots: bool = True) -> None:
    """All report files into ``output`` (created); each written atomically."""
    output.mkdir(parents=True, exist_ok=True)
    _atomic_write(output / "stats.json", json.dumps(summary, indent=2, default=str) + "\n")
    _atomic_write(output / "scores.csv", scores_csv(summary))
    _atomic_write(output / "report.md", report_markdown(summary, plots))
    if plots:
        from .plots import family_bars, heatmap

        family_bars(summary, output / "family_bars.png")
        heatmap(summary, output / "heatmap.png")
