"""The demo's sizing study (BENCHMARKS.md, "Sizing study"): where a family verdict's uncertainty
comes from, and what more training steps buy.

    python bench/demo_sizing.py power runs/quick/comparison/stats.json
    python bench/demo_sizing.py steps runs/quick runs/sizing-80

``power`` reads the variance components every family test stores (``stats/power.py``) and prints,
per family, the share of the squared standard error due to datasets, items and seeds, and the
minimum detectable effect with more items or seeds (a one-seed design is given its family's measured
seed variance); then, for the positive control on STS and retrieval, what the planner says detecting
the observed gain would take. ``steps`` compares two experiments with the same seed and items but a
different step count (e.g. quick.toml and a copy with ``training.steps = 80`` and
``evaluation.tasks`` set to the STS and retrieval datasets) against the untrained baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from poolattn.eval_results import task_main_score
from poolattn.stats.power import mde_of, plan

FAMILIES = ("STS", "Retrieval")


def _with_seed_variance(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each test's components, an unknown seed variance set to the family's measured mean."""
    known = [t["power"]["seed_var"] for t in tests if t["power"]["seed_var"] is not None]
    fill = statistics.mean(known) if known else 0.0
    out = []
    for t in tests:
        c = dict(t["power"])
        if c["seed_var"] is None:
            c["seed_var"], c["seed_df"] = fill, max(t["power"].get("seed_df") or 1, 1)
        out.append(c)
    return out


def _shares(c: dict[str, Any]) -> tuple[float, float, float]:
    k, n = c["datasets"], c["items"]
    item = c["per_item_var"] / n
    parts = (
        max(c["dataset_var"] - item, 0.0) / k,
        item / k,
        (c["seed_var"] or 0.0) * sum(1 / c["seeds"][g] for g in c["trained"]),
    )
    total = sum(parts) or 1.0
    return parts[0] / total, parts[1] / total, parts[2] / total


def power_table(stats_path: Path) -> str:
    summary = json.loads(stats_path.read_text())
    median = statistics.median
    by_family: dict[str, list[dict[str, Any]]] = {}
    for t in summary["family_tests"]:
        if t["power"].get("items") is not None:
            by_family.setdefault(t["family"], []).append(t)
    lines = [
        "| family | pairs | SE^2 share: datasets / items / seeds | MDE now | 100 items | 200 items "
        "| 2 seeds each | 3 seeds each |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for family, tests in by_family.items():
        comps = _with_seed_variance(tests)
        shares = [_shares(c) for c in comps]
        cols = [
            [
                mde_of(c, 0.05, 0.8, t["hierarchical"].get("tests", 1), **kw) * 100
                for c, t in zip(comps, tests, strict=True)
            ]
            for kw in ({}, {"items": 100}, {"items": 200}, {"seeds": 2}, {"seeds": 3})
        ]
        share = " / ".join(f"{median(s[i] for s in shares):.0%}" for i in range(3))
        lines.append(
            f"| {family} | {len(tests)} | {share} | " + " | ".join(f"{median(c):.1f}" for c in cols) + " |"
        )
    lines += [
        "",
        "| family | trained design | observed gain | MDE now | SE^2 share: datasets / items / seeds "
        "| items per dataset to detect the gain |",
        "|---|---|---:|---:|---|---:|",
    ]
    for t in summary["family_tests"]:
        untrained = [m for m in (t["model_a"], t["model_b"]) if m.startswith("untrained-")]
        if t["family"] not in FAMILIES or not untrained:
            continue
        trained = t["model_b"] if untrained[0] == t["model_a"] else t["model_a"]
        c, gain = t["power"], abs(t["diff"])
        items = plan(c, gain, tests=t["hierarchical"].get("tests", 1))["items"]
        share = " / ".join(f"{s:.0%}" for s in _shares(c))
        lines.append(
            f"| {t['family']} | {trained} | {gain * 100:+.1f} | {t['hierarchical']['mde'] * 100:.1f} | {share} "
            f"| {items if items is not None else 'not reachable'} |"
        )
    return "\n".join(lines)


def _family_scores(run: Path, tasks: list[str]) -> list[float]:
    return [task_main_score(json.loads((run / "eval" / f"{t}.json").read_text())) * 100 for t in tasks]


def steps_table(short: Path, long: Path) -> str:
    """Family means of each design trained in both experiments, against the untrained baseline."""
    families: dict[str, list[str]] = {}
    run_json = json.loads(next(long.glob("*/eval/run.json")).read_text())
    for task, info in run_json["tasks"].items():
        if info.get("family") in FAMILIES:
            families.setdefault(info["family"], []).append(task)
    baseline = next(short.glob("untrained-*-seed0"))
    lines = [
        f"| family | design | untrained | {short.name} | {long.name} | gain ({short.name}) "
        f"| gain ({long.name}) | datasets improved |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for family, tasks in families.items():
        base = statistics.mean(_family_scores(baseline, tasks))
        for run in sorted(p for p in long.iterdir() if (p / "eval").is_dir()):
            a, b = _family_scores(short / run.name, tasks), _family_scores(run, tasks)
            ma, mb = statistics.mean(a), statistics.mean(b)
            better = sum(y > x for x, y in zip(a, b, strict=True))
            lines.append(
                f"| {family} | {run.name} | {base:.1f} | {ma:.1f} | {mb:.1f} | {ma - base:+.1f} "
                f"| {mb - base:+.1f} | {better}/{len(tasks)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("power").add_argument("stats_json", type=Path)
    steps = sub.add_parser("steps")
    steps.add_argument("short", type=Path, help="the experiment with fewer steps (e.g. runs/quick)")
    steps.add_argument("long", type=Path, help="the same recipe with more steps")
    args = parser.parse_args()
    print(power_table(args.stats_json) if args.what == "power" else steps_table(args.short, args.long))


if __name__ == "__main__":
    main()
