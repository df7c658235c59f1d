"""Write a comparison: report.md (verdicts first), scores.csv, stats.json and PNG plots.

Tables show each dataset's down-sampling, so a quick run is never mistaken for a full one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..eval_results import SCALE
from ..io import write_text_atomic


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


def format_number(x: float | None, digits: int = 2) -> str:
    """A plain number (e.g. Kendall's tau) with ``digits`` decimals; ``–`` when missing or NaN."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def format_p(x: float | None) -> str:
    """A p-value: two significant digits, scientific below 0.001; ``–`` when missing or NaN."""
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


def _pts(x: float | None) -> str:
    """A score or difference on the x100 scale."""
    return format_number(None if x is None else x * SCALE)


def _ci(ci: list[float] | None) -> str:
    return f"[{_pts(ci[0])}, {_pts(ci[1])}]" if ci and not any(math.isnan(c) for c in ci) else "–"


KIND_CELLS = {
    "better": "**better**",
    "checkpoints": "checkpoints differ",
    "equivalent": "**equivalent**",
    "undecided": "undecided",
}


def scores_csv(summary: dict[str, Any]) -> str:
    """Per dataset and design: score, 95% CI and seed SD (0-1 scale)."""
    names = list(summary["designs"])
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["family", "task", "metric", "max_items", "data_used", "items"]
    for n in names:
        header += [n, f"{n} ci_low", f"{n} ci_high", f"{n} seed_sd"]
    writer.writerow(header)
    for task, info in summary["datasets"].items():
        sampling = info.get("sampling") or {}
        row = [
            info["family"],
            task,
            info["metric"],
            sampling.get("max_items"),
            sampling_text(sampling),
            info["n_items"],
        ]
        for n in names:
            values = (info["scores"][n], *(info["ci95"].get(n) or [None, None]), info["seed_sd"].get(n))
            row += ["" if x is None else f"{x:.6f}" for x in values]
        writer.writerow(row)
    return out.getvalue()


# --------------------------------------------------------------------------- sections
def rope_text(summary: dict[str, Any]) -> str:
    """The ROPE of every family, e.g. ``ROPE ±1 points`` or ``ROPE (points) Clustering ±2, STS ±1``."""
    ropes = {f: info.get("rope") for f, info in summary["families"].items() if info.get("rope") is not None}
    if len(set(ropes.values())) == 1:
        return f"ROPE ±{next(iter(ropes.values())) * SCALE:g} points"
    return "ROPE (points) " + ", ".join(f"{f} ±{r * SCALE:g}" for f, r in ropes.items())


def settings_text(summary: dict[str, Any]) -> str:
    s = summary["settings"]
    fixed = s.get("fixed") or []
    return (
        f"alpha {s['alpha']}; {rope_text(summary)}; Holm correction {s['holm_scope']}-wide "
        f"({'within each family over its design pairs' if s['holm_scope'] == 'family' else 'over all families at once'}); "
        f"{s['n_resamples']} bootstrap resamples, seed {s['seed']}; MDE at {s['power']:.0%} power and the "
        "Holm level" + (f"; fixed checkpoints (no training seed): {', '.join(fixed)}" if fixed else "") + "."
    )


def verdict_table(summary: dict[str, Any], pairs: list[tuple[str, str]] | None = None) -> list[str]:
    """Per family and pair: the verdict in words (``pairs``: only these pairs)."""
    rows = summary["family_tests"]
    if pairs is not None:
        wanted = {frozenset(p) for p in pairs}
        rows = [t for t in rows if frozenset((t["model_a"], t["model_b"])) in wanted]
    if not rows:
        return ["No comparison."]
    lines = ["| family | datasets | pair | verdict | |", "|---|---:|---|---|---|"]
    for t in rows:
        v, text = t["verdict"], t["verdict"]["text"]
        if t.get("below_seed_spread"):
            text += f"; difference smaller than the seed-to-seed spread (SD {_pts(t['seed_sd'])})"
        lines.append(
            f"| {t['family']} | {t['n']} | {t['model_a']} vs {t['model_b']} | {KIND_CELLS[v['kind']]} | {text} |"
        )
    return lines


def family_table(summary: dict[str, Any]) -> list[str]:
    """The paper-style table: family means (x100) with 95% CI, best in bold, seed SD if any."""
    names = list(summary["designs"])
    seeds = any(d["seeds"] > 1 for d in summary["designs"].values())
    lines = ["| family | datasets | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for family, info in summary["families"].items():
        best = max(info["means"].values())
        cells = []
        for n in names:
            value = _pts(info["means"][n])
            value = f"**{value}**" if info["means"][n] == best else value
            cell = f"{value} {_ci(info['ci95'].get(n))}" if info["ci95"].get(n) else value
            if seeds and info["seed_sd"].get(n) is not None:
                cell += f" (seed SD {_pts(info['seed_sd'][n])})"
            cells.append(cell)
        lines.append(f"| {family} | {info['n']} | " + " | ".join(cells) + " |")
    return lines


def family_tests_table(summary: dict[str, Any]) -> list[str]:
    """All family-level tests side by side."""
    lines = [
        "| family | A | B | n | A−B | 95% CI (t) | df | p (Holm) | TOST p (Holm) | MDE | Wilcoxon p (Holm) | "
        "Wilcoxon floor (after Holm) | P(A>B) / P(≈) / P(B>A) |",
        "|---|---|---|---:|---:|---|---:|---|---|---:|---|---|---|",
    ]
    for t in summary["family_tests"]:
        h, w, b = t["hierarchical"], t["wilcoxon"], t["bayes"]
        floor = f"{format_p(w['floor'])} ({format_p(w['floor_holm'])})"
        if not w["can_reject"]:
            n = w["n_nonzero"]
            floor += f": **cannot reject with {n} dataset{'s' if n != 1 else ''}**"
        if not w.get("paper_rule", True):
            floor += " (paper: not tested)"
        lines.append(
            f"| {t['family']} | {t['model_a']} | {t['model_b']} | {t['n']} | {_pts(h['diff'])} | {_ci(h['ci95'])} | "
            f"{format_number(h.get('df'), 1)} | {format_p(h['pvalue'])} ({format_p(h['pvalue_holm'])}) | "
            f"{format_p(h.get('pvalue_tost'))} ({format_p(h.get('pvalue_tost_holm'))}) | {_pts(h['mde'])} | "
            f"{format_p(w['pvalue'])} ({format_p(w['pvalue_holm'])}) | {floor} | "
            f"{b['p_a_better']:.2f} / {b['p_equivalent']:.2f} / {b['p_b_better']:.2f} |"
        )
    return lines


def ranks_section(summary: dict[str, Any], prefix: str = "", plots: bool = True) -> list[str]:
    """Friedman per family with >= 3 datasets and >= 3 designs; Nemenyi and its CD diagram only
    where Friedman rejects (a post-hoc test after a non-rejection would be read as a finding)."""
    from .plots import cd_file

    lines: list[str] = []
    for family, info in summary["families"].items():
        if "friedman" not in info:
            continue
        fr, nem = info["friedman"], info.get("nemenyi")
        head = (
            f"- **{family}** ({info['n']} datasets): Friedman χ² = {fr['statistic']:.2f}, p = {format_p(fr['pvalue'])} "
            f"(Iman–Davenport F = {fr['iman_davenport_f']:.2f}, p = {format_p(fr['pvalue_f'])})"
        )
        if nem is None:
            lines.append(f"{head}: does not reject at alpha {summary['alpha']}, so no Nemenyi post-hoc test.")
            continue
        ranks = ", ".join(f"{n} {r:.2f}" for n, r in sorted(nem["ranks"].items(), key=lambda kv: kv[1]))
        lines.append(f"{head}, rejects; mean ranks {ranks}; Nemenyi critical difference {nem['cd']:.2f}.")
        if plots:
            lines += ["", f"![critical difference diagram, {family}]({prefix}{cd_file(family)})", ""]
    return lines or ["No family has at least 3 datasets and 3 designs (Friedman needs both)."]


def dataset_table(summary: dict[str, Any]) -> list[str]:
    names = list(summary["designs"])
    lines = [
        "| family | task | metric | data used | items | " + " | ".join(names) + " |",
        "|---|---|---|---|---:|" + "---:|" * len(names),
    ]
    for task, info in summary["datasets"].items():
        cells = [f"{_pts(info['scores'][n])} {_ci(info['ci95'].get(n))}" for n in names]
        items = str(info["n_items"]) if info["items"] else "–"
        lines.append(
            f"| {info['family']} | {task} | {info['metric']} | {sampling_text(info.get('sampling'))} | {items} | "
            + " | ".join(cells)
            + " |"
        )
    notes = [
        f"- {task}: {note}" for task, info in summary["datasets"].items() for note in info.get("notes", [])
    ]
    if notes:
        lines += ["", "Notes:", *notes]
    return lines


def dataset_tests_table(summary: dict[str, Any]) -> list[str]:
    lines = [
        "| family | task | A | B | A−B | 95% CI | p | p (Holm) | MDE | test |",
        "|---|---|---|---|---:|---|---:|---:|---:|---|",
    ]
    for t in sorted(summary["dataset_tests"], key=lambda t: (t["family"], t["task"])):
        mark = " *" if t["significant"] else ""
        lines.append(
            f"| {t['family']} | {t['task']} | {t['model_a']} | {t['model_b']} | {_pts(t['diff'])} | {_ci(t['ci95'])} | "
            f"{format_p(t['pvalue'])} | {format_p(t['pvalue_holm'])}{mark} | {_pts(t['mde'])} | {t['method']} |"
        )
    return lines


def seed_section(summary: dict[str, Any]) -> list[str]:
    """Seed-to-seed SD per design: of the family means and the median over datasets."""
    multi = [g for g, d in summary["designs"].items() if d["seeds"] > 1]
    if not multi:
        return ["Every design has one seed: the seed-to-seed spread is not measured (run ≥ 2 seeds)."]
    lines = [
        "| design | seeds | runs | " + " | ".join(summary["families"]) + " |",
        "|---|---:|---|" + "---:|" * len(summary["families"]),
    ]
    for g in multi:
        cells = []
        for info in summary["families"].values():
            per_dataset = [summary["datasets"][t]["seed_sd"][g] for t in info["datasets"]]
            cells.append(
                f"{_pts(info['seed_sd'][g])} (datasets: median {_pts(float(np.median(per_dataset)))})"
            )
        d = summary["designs"][g]
        lines.append(f"| {g} | {d['seeds']} | {', '.join(d['runs'])} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "SD of the family mean over seeds (x100); in brackets the median over the family's datasets of "
        "each dataset's seed SD. Verdicts flag a design difference smaller than this spread.",
    ]
    return lines


def plan_section(summary: dict[str, Any], target: float | None) -> list[str]:
    """For each family and pair: the current MDE and what detecting ``target`` (None: the
    family's ROPE) needs, for the test the verdicts use at its Holm level."""
    from .power import plan

    s = summary["settings"]
    what = f"{_pts(target)} points" if target is not None else f"each family's ROPE ({rope_text(summary)})"
    lines = [
        f"Target effect {what} at {s['power']:.0%} power, alpha {s['alpha']} Holm-corrected over each pair's "
        "family of tests (each knob changed alone; '–' = that knob alone cannot reach the target).",
        "",
        "| family | pair | datasets | items/dataset | MDE now | items/dataset needed | datasets needed | seeds/design needed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in summary["family_tests"]:
        c = t["power"]
        goal = target if target is not None else t["rope"]
        p = plan(c, goal, s["alpha"], s["power"], t["hierarchical"].get("tests", 1))
        items, datasets, seeds = ("–" if p[k] is None else str(p[k]) for k in ("items", "datasets", "seeds"))
        if p["seeds"] is None and c["trained"] and c["seed_var"] is None:
            seeds = "unknown (no seed replicates)"
        items_now = "–" if c["items"] is None else f"{c['items']:.0f}"
        lines.append(
            f"| {t['family']} | {t['model_a']} vs {t['model_b']} | {c['datasets']} | {items_now} | "
            f"{_pts(p['mde_now'])} | {items} | {datasets} | {seeds} |"
        )
    return lines


METHOD_NOTES = [
    "- **Per dataset**: difference of main scores with a 95% paired bootstrap CI over items (the statistic — "
    "correlation, max-AP, accuracy, mean nDCG — recomputed on every resample; seeds resampled too); p from a "
    "paired sign-flip permutation test when the score is a mean over items and each design has one run, "
    "otherwise from the bootstrap.",
    "- **Clustering and classification**: their items share the evaluator's own randomness (mteb's k-means "
    "runs on resamples of one document set; classifiers trained on a few samples per label), so their "
    "per-dataset tests are conditional on that evaluator run; no family verdict treats items as independent.",
    "- **Family test** (the verdicts' test): a t-test over the per-dataset differences on K − 1 degrees of "
    "freedom, whose spread holds the between-dataset heterogeneity, item and evaluator noise; plus the "
    "seed-to-seed variance of a family mean pooled over the designs with seed replicates (applied to every "
    "trained design; degrees of freedom min(K − 1, seed df)). CI and p come from the same t distribution. "
    "Without seed replicates a significant result says *these two checkpoints differ*, not that a design is "
    "better. MDE = the effect detected with the stated power at the Holm-corrected level (noncentral t): "
    "differences below it cannot be told apart with this data.",
    "- **Wilcoxon** (the paper's test) over datasets: with n datasets the exact two-sided test cannot go below "
    "p = 2/2ⁿ (0.0625 at n = 5), and Holm multiplies that floor by the number of pairs; such a family is "
    "marked *cannot reject*, and its failure to reject says nothing about the designs.",
    "- **Bayesian signed-rank** (Benavoli et al., JMLR 2017) over datasets, prior 0.5 at 0: probabilities that "
    "A is better, that they are within the ROPE, that B is better.",
    "- **Verdicts**: *better* = family test significant after Holm, seed variance accounted for; *checkpoints "
    "differ* = the same without any seed replicate; *practically equivalent* = TOST within the family's "
    "ROPE significant after its own Holm correction and P(equivalent) ≥ 0.95; neither with fewer than 20 "
    "items in a dataset; otherwise *undecided* with the MDE. A test that fails to reject gives *undecided*, "
    "with what the data could have detected. Each verdict names the variance sources it accounts for.",
]


def report_markdown(summary: dict[str, Any], plots: bool) -> str:
    lines = ["# Comparison of embedding designs", "", settings_text(summary), ""]
    for g, d in summary["designs"].items():
        runs = [m for m in summary["models"] if m["design"] == g]
        max_items = (runs[0].get("settings") or {}).get("max_items")
        where = ", ".join(f"`{m['directory']}` ({(m['fingerprint'] or '')[:12]})" for m in runs)
        lines.append(
            f"- **{g}**: {d['seeds']} run{'s' if d['seeds'] != 1 else ''} ({where}), "
            f"max_items {max_items if max_items is not None else 'none (full data)'}"
        )
    for text in summary.get("warnings", []):
        lines.append(f"\n> **Warning:** {text}")
    lines += ["", "## Verdicts", ""] + verdict_table(summary)
    lines += ["", "## Mean main score per task family (x100, 95% CI over items and seeds)", ""]
    lines += family_table(summary)
    if plots:
        lines += ["", "![family means with 95% CIs](family_means.png)"]
    lines += ["", "## Family-level tests", "", *family_tests_table(summary)]
    lines += ["", "## All designs at once: Friedman and Nemenyi", "", *ranks_section(summary, plots=plots)]
    lines += ["", "## Seed-to-seed spread", "", *seed_section(summary)]
    lines += ["", "## Per-dataset main scores (x100, 95% CI)", "", *dataset_table(summary)]
    if plots:
        lines += ["", "![per-dataset scores](heatmap.png)"]
    lines += ["", "## Per-dataset paired tests (x100)", "", *dataset_tests_table(summary)]
    if summary.get("plan") or summary.get("plan_target") is not None:
        lines += ["", "## Planning", "", *plan_section(summary, summary.get("plan_target"))]
    lines += ["", "## Methods", "", *METHOD_NOTES]
    return "\n".join(lines) + "\n"


def write_comparison_report(summary: dict[str, Any], output: Path, plots: bool = True) -> None:
    """All report files into ``output`` (created); each written atomically."""
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output / "stats.json", json.dumps(summary, indent=2, default=str) + "\n")
    write_text_atomic(output / "scores.csv", scores_csv(summary))
    write_text_atomic(output / "report.md", report_markdown(summary, plots))
    if plots:
        from .plots import cd_diagram, cd_file, family_means, heatmap

        family_means(summary, output / "family_means.png")
        heatmap(summary, output / "heatmap.png")
        for family, info in summary["families"].items():
            if info.get("nemenyi"):
                cd_diagram(summary, family, output / cd_file(family))
