"""Across backbones: does the design ranking found on one backbone hold on another?

Each experiment is compared within itself (``compare_models``, same settings, shared runs);
then per family: each side's ranking, Kendall's tau-b of the family means and how the two
verdicts on each pair relate. With n designs tau's p cannot go below 2/n! (0.017 at five), so
tau is the measure and the direction of the observed differences is what a small grid shows.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats

from ..eval_results import EVAL_RUN_FILE, SCALE, read_eval_run
from ..experiment.plan import UNTRAINED_PREFIX
from ..experiment.state import STATE_FILE, StateError, recorded_runs
from ..io import write_json_atomic, write_text_atomic
from .compare import ModelResults, ResultsError, compare_models, design_groups, load_results
from .report import format_number, format_p

REPORT_FILE = "backbones.md"
JSON_FILE = "backbones.json"
RELATIONS = ("agree", "flip", "differ", "undecided on one side", "undecided on both")


@dataclass
class Experiment:
    """One backbone's finished grid: a label (the base model) and the results of its runs."""

    label: str
    directory: Path
    runs: list[ModelResults]


def _eval_dir(run_dir: Path, state: dict[str, Any]) -> Path:
    """The run's results folder: ``<run>/eval`` (so a moved experiment folder still reads), else
    the path its state recorded."""
    local = run_dir / "eval"
    for folder in (local, Path(state.get("eval_dir") or local)):
        if (folder / EVAL_RUN_FILE).exists():
            return folder
    raise ResultsError(
        f"{run_dir / STATE_FILE}: status done but no results folder ({local} has no {EVAL_RUN_FILE})"
    )


def load_experiment(directory: str | Path) -> Experiment:
    """Every finished run (``<run>/state.json`` with status done) of an experiment folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsError(f"{directory}: not an experiment folder")
    runs: list[ModelResults] = []
    try:
        recorded = recorded_runs(directory)
    except StateError as exc:
        raise ResultsError(str(exc)) from exc
    for run_dir, state in recorded:
        if state.get("status") != "done":
            continue
        results = load_results(_eval_dir(run_dir, state))
        results.name = run_dir.name  # the run name, e.g. eos+causal-seed0
        runs.append(results)
    if not runs:
        raise ResultsError(f"{directory}: no finished run (no */{STATE_FILE} with status done)")
    bases = (read_eval_run(run.directory).get("model", {}).get("base") for run in runs)
    return Experiment(str(next((b for b in bases if b), directory.name)), directory, runs)


def kendall(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Kendall's tau-b of two paired score lists, its two-sided p-value and the smallest p
    attainable with this many designs (2/n!, exact test without ties)."""
    n = len(a)
    floor = 2 / math.factorial(n) if n >= 2 else math.nan
    if n < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return {"tau": math.nan, "pvalue": math.nan, "n": n, "min_pvalue": floor}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.kendalltau(a, b)
    return {"tau": float(res.statistic), "pvalue": float(res.pvalue), "n": n, "min_pvalue": floor}


def _verdict(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"kind": "missing", "winner": None, "diff": math.nan, "text": "not compared"}
    v = row.get("verdict") or {}
    return {
        "kind": v.get("kind", "undecided"),
        "winner": v.get("winner"),
        "ahead": v.get("ahead"),
        "diff": float(row.get("diff", math.nan)),
        "text": v.get("text", ""),
    }


def relation(a: dict[str, Any], b: dict[str, Any], label_a: str, label_b: str) -> str:
    """How two verdicts on one pair relate (``RELATIONS``, the one-sided case names the side);
    "checkpoints differ" counts as a direction, like "better": does the ordering hold?"""
    ahead_a, ahead_b = (v.get("winner") or v.get("ahead") for v in (a, b))
    directed = ("better", "checkpoints")
    decided = (*directed, "equivalent")
    decided_a, decided_b = a["kind"] in decided, b["kind"] in decided
    if decided_a and decided_b:
        if a["kind"] in directed and b["kind"] in directed:
            return "agree" if ahead_a == ahead_b else "flip"
        return "agree" if a["kind"] == b["kind"] else "differ"
    if decided_a or decided_b:
        return f"undecided on {label_b if decided_a else label_a}"
    return "undecided on both"


def _tests_by_pair(summary: dict[str, Any], family: str) -> dict[frozenset[str], dict[str, Any]]:
    return {
        frozenset((t["model_a"], t["model_b"])): t for t in summary["family_tests"] if t["family"] == family
    }


def _ranks(means: dict[str, float]) -> dict[str, int]:
    order = sorted(means, key=lambda d: -means[d])
    return {d: order.index(d) + 1 for d in means}


def backbone_agreement(
    summary_a: dict[str, Any],
    summary_b: dict[str, Any],
    label_a: str,
    label_b: str,
    designs: Sequence[str],
) -> dict[str, Any]:
    """Per family in both summaries (``compare_models`` output): rankings, Kendall's tau, pairs."""
    families: dict[str, Any] = {}
    for family in sorted(set(summary_a["families"]) & set(summary_b["families"])):
        fa, fb = summary_a["families"][family], summary_b["families"][family]
        shared = [d for d in designs if d in fa["means"] and d in fb["means"]]
        shared.sort(key=lambda d: -fa["means"][d])  # pairs read (higher on A) vs (lower on A)
        sides = {label_a: fa, label_b: fb}
        means = {label: {d: float(f["means"][d]) for d in shared} for label, f in sides.items()}
        ranks = {label: _ranks(m) for label, m in means.items()}
        pairs = []
        tests_a, tests_b = _tests_by_pair(summary_a, family), _tests_by_pair(summary_b, family)
        for x, y in itertools.combinations(shared, 2):
            key = frozenset((x, y))
            va, vb = _verdict(tests_a.get(key)), _verdict(tests_b.get(key))
            da, db = (m[x] - m[y] for m in means.values())
            pairs.append(
                {
                    "design_a": x,
                    "design_b": y,
                    label_a: va,
                    label_b: vb,
                    "diff": {label_a: da, label_b: db},
                    "relation": relation(va, vb, label_a, label_b),
                    "same_direction": bool(da * db > 0),
                }
            )
        counts = {r: 0 for r in RELATIONS}
        for p in pairs:
            counts[p["relation"] if p["relation"] in RELATIONS else "undecided on one side"] += 1
        families[family] = {
            "designs": shared,
            "datasets": {label: f.get("datasets", []) for label, f in sides.items()},
            "means": means,
            "ranks": ranks,
            "best": {label: min(r, key=r.get) if r else None for label, r in ranks.items()},
            "kendall": kendall(*([m[d] for d in shared] for m in means.values())),
            "pairs": pairs,
            "relations": counts,
            "same_direction": sum(p["same_direction"] for p in pairs),
        }
    return families


def compare_backbones(
    experiment_a: str | Path,
    experiment_b: str | Path,
    output_dir: str | Path | None = None,
    *,
    include_untrained: bool = False,
    **compare_options: Any,
) -> dict[str, Any]:
    """Compare two experiments' design rankings per family; write backbones.md/.json if asked.
    ``compare_options`` go to ``compare_models`` for both experiments alike."""
    exp_a, exp_b = load_experiment(experiment_a), load_experiment(experiment_b)
    label_a, label_b = exp_a.label, exp_b.label
    if label_a == label_b:
        label_a, label_b = f"{label_a} ({exp_a.directory.name})", f"{label_b} ({exp_b.directory.name})"
    names_a, names_b = {r.name for r in exp_a.runs}, {r.name for r in exp_b.runs}
    common = sorted(names_a & names_b)
    only = {label_a: sorted(names_a - names_b), label_b: sorted(names_b - names_a)}
    notes = [f"runs only on {label}: {', '.join(runs)} (left out)" for label, runs in only.items() if runs]
    if len(common) < 2:
        raise ResultsError(
            f"{exp_a.directory} and {exp_b.directory} share fewer than two finished runs "
            f"({', '.join(common) or 'none'}); nothing to rank"
        )
    summaries = {}
    for label, exp in ((label_a, exp_a), (label_b, exp_b)):
        runs = [r for r in exp.runs if r.name in common]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summaries[label] = compare_models(runs, **compare_options)
        notes += [f"{label}: {w.message}" for w in caught]
    designs = [
        d
        for d in design_groups([r for r in exp_a.runs if r.name in common])
        if include_untrained or not d.startswith(UNTRAINED_PREFIX)
    ]
    families = backbone_agreement(summaries[label_a], summaries[label_b], label_a, label_b, designs)
    for family, info in families.items():
        if set(info["datasets"][label_a]) != set(info["datasets"][label_b]):
            notes.append(f"{family}: the two backbones were evaluated on different datasets")
    result = {
        "backbones": {label_a: str(exp_a.directory), label_b: str(exp_b.directory)},
        "labels": [label_a, label_b],
        "runs": common,
        "designs": designs,
        "include_untrained": include_untrained,
        "settings": summaries[label_a].get("settings", {}),
        "families": families,
        "notes": notes,
    }
    if output_dir is not None:
        out = Path(output_dir)
        write_json_atomic(out / JSON_FILE, result)
        write_text_atomic(out / REPORT_FILE, format_report(result))
    return result


# --------------------------------------------------------------------------- report
def _verdict_cell(v: dict[str, Any]) -> str:
    if v["kind"] == "better":
        return f"{v['winner']} better"
    if v["kind"] == "checkpoints":
        return f"{v.get('ahead')} ahead (checkpoints)"
    return {"equivalent": "equivalent", "missing": "not compared"}.get(v["kind"], "undecided")


def overview_table(result: dict[str, Any]) -> list[str]:
    """One line per family: Kendall's tau and p, best design on each side, pair relations."""
    a, b = result["labels"]
    lines = [
        f"| family | designs | Kendall's tau | p (smallest possible) | best on {a} | best on {b} | "
        + "".join(f"{r} | " for r in RELATIONS)
        + "same direction |",
        "|---|---:|---:|---|---|---|" + "---:|" * (len(RELATIONS) + 1),
    ]
    for family, info in result["families"].items():
        k = info["kendall"]
        counts = [str(info["relations"][r]) for r in RELATIONS]
        lines.append(
            f"| {family} | {k['n']} | {format_number(k['tau'])} | {format_p(k['pvalue'])} ({format_p(k['min_pvalue'])}) | "
            f"{info['best'][a]} | {info['best'][b]} | {' | '.join(counts)} | "
            f"{info['same_direction']}/{len(info['pairs'])} |"
        )
    return lines


def family_section(family: str, info: dict[str, Any], labels: Sequence[str]) -> list[str]:
    """The side-by-side table of one family, its Kendall's tau and its pairwise verdicts."""
    a, b = labels
    n_a, n_b = len(info["datasets"][a]), len(info["datasets"][b])
    k = info["kendall"]
    lines = [
        f"### {family} ({n_a} datasets on {a}, {n_b} on {b})",
        "",
        f"| design | {a} (x100) | rank | {b} (x100) | rank |",
        "|---|---:|---:|---:|---:|",
    ]
    for d in sorted(info["designs"], key=lambda d: info["ranks"][a][d]):
        lines.append(
            f"| {d} | {info['means'][a][d] * SCALE:.2f} | {info['ranks'][a][d]} | "
            f"{info['means'][b][d] * SCALE:.2f} | {info['ranks'][b][d]} |"
        )
    lines += [
        "",
        f"Kendall's tau = {format_number(k['tau'])}, p = {format_p(k['pvalue'])} over {k['n']} designs "
        f"(the smallest p {k['n']} designs allow: {format_p(k['min_pvalue'])}).",
        "",
        f"| pair | {a} | {b} | relation | observed differences point the same way |",
        "|---|---|---|---|---|",
    ]
    for p in info["pairs"]:
        lines.append(
            f"| {p['design_a']} vs {p['design_b']} | {_verdict_cell(p[a])} | {_verdict_cell(p[b])} | "
            f"{p['relation']} | {'yes' if p['same_direction'] else 'no'} "
            f"({p['diff'][a] * SCALE:+.2f} / {p['diff'][b] * SCALE:+.2f}) |"
        )
    return lines + [""]


def format_report(result: dict[str, Any]) -> str:
    """Markdown: the overview, then each family side by side."""
    a, b = result["labels"]
    lines = [
        f"# Across backbones: {a} vs {b}",
        "",
        f"Experiments: `{result['backbones'][a]}` ({a}) and `{result['backbones'][b]}` ({b}); "
        f"runs compared: {', '.join(result['runs'])}. Each backbone's verdicts come from its own "
        "within-backbone comparison (same settings on both sides); the ranking covers "
        + ("every run." if result["include_untrained"] else "the trained designs."),
        "",
        "## Ranking agreement per family",
        "",
        *overview_table(result),
        "",
        "Kendall's tau: +1 the same order on both backbones, -1 reversed, 0 unrelated. Relations: "
        "*agree* same winner or equivalent on both; *flip* opposite winners; *differ* better on one, "
        "equivalent on the other; *undecided* where a backbone's data decided nothing.",
        "",
        "## Families side by side",
        "",
    ]
    for family, info in result["families"].items():
        lines += family_section(family, info, result["labels"])
    if result["notes"]:
        lines += ["## Notes", "", *[f"- {n}" for n in result["notes"]], ""]
    return "\n".join(lines)


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Short text for the terminal: one line per family."""
    a, b = result["labels"]
    out = []
    for family, info in result["families"].items():
        k = info["kendall"]
        pairs = ", ".join(f"{info['relations'][r]} {r}" for r in RELATIONS)
        out.append(
            f"{family}: Kendall's tau {format_number(k['tau'])} (p {format_p(k['pvalue'])}, {k['n']} designs); "
            f"best {info['best'][a]} on {a}, {info['best'][b]} on {b}; pairs: {pairs}"
        )
    return out
