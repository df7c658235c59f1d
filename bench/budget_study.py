"""Budget study (issue 27, BENCHMARKS.md "Budget study"): does the ranking of EOS and multi-layer
pooling move with the training budget, and does a head warm-up give the trainable head a fair start?

Each variant (a design, with or without ``training.head_warmup_steps``, optionally another head
learning rate) is trained ONCE per seed to the largest budget; at every budget (joint steps, the
warm-up not counted) training stops, the checkpoint is evaluated on a fixed subset of the local
suite (STS and retrieval), and training resumes (a resume is exact: tests/test_training_resume.py,
tests/test_head_warmup.py). So a budget costs an evaluation, not a training run.

Learning rate: the recipe's schedule (linear warm-up, then linear decay to 0 at ``training.steps``)
would make a step-k checkpoint differ from a k-step run. The study sets ``training.steps`` to
``CONSTANT_LR_HORIZON`` (10**6) and stops at each budget with ``max_steps_this_run``: after the
warm-up the rate stays within 0.02% of its peak up to step 200, i.e. constant, and a step-k
checkpoint IS a k-step run at a constant rate.

Verdicts per budget and family come from the project's family test (``poolattn.stats.compare``:
the t-test over datasets with the pooled seed variance, Holm within the family, ``verdict.decide``).
Outputs in ``--out``: ``budget_study.json`` (every score, verdict, wall time), ``budget_study.md``
(tables) and ``budget_study.png`` (family mean against steps per variant, seed range as a band);
``compare/step-<k>/`` holds each budget's full comparison report.

    python bench/budget_study.py                     # full size: ~2 h on the 2-core CPU (see PLAN)
    python bench/budget_study.py --head-lr 1e-4,1e-3,1e-2   # plus the head learning-rate sweep
    python bench/budget_study.py --estimate          # print the plan and its estimated cost only
    python bench/budget_study.py --smoke --config tiny-experiment.toml --out /tmp/b   # does it run?

Full size (``configs/quick.toml``'s recipe, SmolLM2-135M, bf16): eos+causal, multilayer+causal and
multilayer+causal with a 25-step head warm-up, seeds 0 and 1, budgets 25/50/100/200, on
STSBenchmark, SICK-R, BIOSSES, SciFact, NFCorpus and MED at 50 items. Estimated (GUIDE/BENCHMARKS
figures: ~4.3 s per LoRA step of 16 queries, ~1.5 s per warm-up step, ~60 s per evaluation of these
six tasks at 50 items): 6 runs x 200 steps = 86 min, warm-up 1 min, 24 evaluations 24 min, about
1 h 51 min (``--estimate`` prints it). ``--head-lr 1e-4,1e-3,1e-2`` adds, per learning rate, one
seed of multilayer+causal with and without warm-up to 50 steps: +35 min for the three rates.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONSTANT_LR_HORIZON = 10**6
FAMILIES = ("STS", "Retrieval")
DEFAULT_TASKS = ("STSBenchmark", "SICK-R", "BIOSSES", "SciFact", "NFCorpus", "MED")
# seconds, for --estimate (measured figures of this machine: GUIDE.md, BENCHMARKS.md)
COST = {"joint_step": 4.3, "warmup_step": 1.5, "evaluation": 60.0}

log = logging.getLogger("budget_study")


@dataclass
class Variant:
    """One line of the study: a design trained with one recipe variation, over seeds and budgets."""

    design: str
    warmup: int = 0
    head_lr: float | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    budgets: list[int] = field(default_factory=lambda: [25, 50, 100, 200])

    @property
    def label(self) -> str:
        text = self.design + (f"+warmup{self.warmup}" if self.warmup else "")
        return text + (f"@head-lr{self.head_lr:g}" if self.head_lr is not None else "")

    def run_name(self, seed: int) -> str:
        return f"{self.label}-seed{seed}"


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _trainable(design: str) -> bool:
    from poolattn.design import parse_design
    from poolattn.pooling import POOLERS

    return bool(POOLERS[parse_design(design, "--designs")[0]].trainable)


def plan(args: argparse.Namespace) -> list[Variant]:
    """The study's variants: every design without warm-up, the trainable ones with it too, and
    (``--head-lr``) each trainable variant at each head learning rate, first seed, small budgets."""
    variants = [Variant(d, 0, None, args.seeds, args.budgets) for d in args.designs]
    trainable = [d for d in args.designs if _trainable(d)]
    if args.warmup:
        variants += [Variant(d, args.warmup, None, args.seeds, args.budgets) for d in trainable]
    sweep_budgets = [b for b in args.budgets if b <= args.sweep_max_steps] or args.budgets[:1]
    for lr in args.head_lr:
        for warmup in (0, args.warmup) if args.warmup else (0,):
            variants += [Variant(d, warmup, lr, args.seeds[:1], sweep_budgets) for d in trainable]
    return variants


def estimate(variants: list[Variant]) -> float:
    """Estimated seconds of the whole study (``COST``)."""
    total = 0.0
    for v in variants:
        per_seed = max(v.budgets) * COST["joint_step"] + len(v.budgets) * COST["evaluation"]
        per_seed += v.warmup * COST["warmup_step"] if _trainable(v.design) else 0.0
        total += per_seed * len(v.seeds)
    return total


def _train_data(exp: Any, variant: Variant, seed: int, out: Path) -> dict[str, Any]:
    """The run's raw training config: the experiment's shared recipe, this design and seed, a
    constant rate after the warm-up (``CONSTANT_LR_HORIZON``), checkpoints only where it stops."""
    from poolattn.experiment.plan import Run

    data = exp.train_data(Run(variant.design, seed, True, exp.model_for(variant.design)))
    t = data["training"]
    t.update(
        output_dir=str(out / variant.run_name(seed) / "train"),
        steps=CONSTANT_LR_HORIZON,
        save_every=CONSTANT_LR_HORIZON,
        keep_checkpoints=1,
        head_warmup_steps=variant.warmup,
        progress=False,
    )
    if variant.head_lr is not None:
        t["head_learning_rate"] = variant.head_lr
    return data


def run_variant(exp: Any, variant: Variant, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one seed of a variant once, stopping at each budget to evaluate; returns its record
    (results directory and wall time per budget). A finished seed (its ``record.json``) is reused."""
    from poolattn.evaluation.runner import evaluate
    from poolattn.settings import data_dir
    from poolattn.training.config import train_config_from_dict
    from poolattn.training.trainer import train

    root = args.out / variant.run_name(seed)
    record_file = root / "record.json"
    if record_file.exists():
        return json.loads(record_file.read_text())
    shutil.rmtree(root, ignore_errors=True)  # an unfinished seed starts over: one clean trajectory
    cfg = train_config_from_dict(_train_data(exp, variant, seed, args.out), exp.base_dir)
    warmup = variant.warmup if _trainable(variant.design) else 0
    done, budgets = 0, []
    for budget in sorted(variant.budgets):
        began = time.perf_counter()
        cfg.training.max_steps_this_run = warmup + budget - done
        model_dir = train(cfg, resume=done > 0)
        done = warmup + budget
        trained = time.perf_counter() - began
        results = root / f"step-{budget}"
        evaluate(
            str(model_dir),
            results,
            tasks=args.tasks,
            local_data=data_dir(args.local_data or exp.evaluation.local_data),
            max_items=args.max_items,
            batch_size=exp.evaluation.batch_size,
            cache_dir_path=None,
        )
        budgets.append(
            {
                "steps": budget,
                "results": str(results),
                "train_s": trained,
                "eval_s": time.perf_counter() - began - trained,
            }
        )
        log.info(
            "%s step %d: trained %.0f s, evaluated %.0f s",
            variant.run_name(seed),
            budget,
            trained,
            budgets[-1]["eval_s"],
        )
    record = {"variant": asdict(variant), "label": variant.label, "seed": seed, "budgets": budgets}
    from poolattn.io import write_json_atomic

    write_json_atomic(record_file, record)
    shutil.rmtree(root / "train" / "checkpoints", ignore_errors=True)  # the scores are what the study keeps
    return record


def family_scores(results_dir: str) -> dict[str, float]:
    """Mean main score (x100) per family over the study's tasks of one results directory."""
    from poolattn.stats.compare import load_results

    res = load_results(results_dir)
    out: dict[str, float] = {}
    for family in FAMILIES:
        scores = [100 * s for task, s in res.scores.items() if res.families[task] == family]
        if scores:
            out[family] = statistics.fmean(scores)
    return out


def curves(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[int, list[float]]]]:
    """label -> family -> steps -> the seeds' family means."""
    out: dict[str, dict[str, dict[int, list[float]]]] = {}
    for rec in records:
        for b in rec["budgets"]:
            for family, score in family_scores(b["results"]).items():
                out.setdefault(rec["label"], {}).setdefault(family, {}).setdefault(b["steps"], []).append(
                    score
                )
    return out


def verdicts(records: list[dict[str, Any]], out: Path, min_datasets: int) -> list[dict[str, Any]]:
    """At each budget every variant with >= 2 seeds, compared by the family test; the rows that
    involve the first design (the baseline) or a variant against its own warm-up twin."""
    from poolattn.stats.compare import compare

    rows: list[dict[str, Any]] = []
    steps = sorted({b["steps"] for r in records for b in r["budgets"]})
    for step in steps:
        runs = [
            (r["label"], r["seed"], b["results"]) for r in records for b in r["budgets"] if b["steps"] == step
        ]
        labels = {label for label, _, _ in runs}
        multi = {label for label in labels if sum(1 for x, _, _ in runs if x == label) >= 2}
        chosen = [(label, seed, path) for label, seed, path in runs if label in multi]
        if len({label for label, _, _ in chosen}) < 2:
            continue
        summary = compare(
            [path for _, _, path in chosen],
            out / "compare" / f"step-{step}",
            min_datasets=min_datasets,
            plots=False,
            names=[f"{label}-seed{seed}" for label, seed, _ in chosen],
        )
        for t in summary["family_tests"]:
            h = t["hierarchical"]
            rows.append(
                {
                    "steps": step,
                    "family": t["family"],
                    "a": t["model_a"],
                    "b": t["model_b"],
                    "diff": 100 * t["diff"],
                    "ci95": [100 * x for x in h.get("ci95") or [float("nan")] * 2],
                    "p_holm": h.get("pvalue_holm"),
                    "verdict": t["verdict"]["text"],
                    "kind": t["verdict"]["kind"],
                }
            )
    return rows


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    return f"{mean:.1f} ({min(values):.1f}-{max(values):.1f})"


def tables(data: dict[str, dict[str, dict[int, list[float]]]], rows: list[dict[str, Any]]) -> str:
    """Markdown: family means per variant and budget (seed range in brackets), then the verdicts."""
    lines = []
    for family in FAMILIES:
        steps = sorted({s for fam in data.values() for s in fam.get(family, {})})
        if not steps:
            continue
        lines += [f"### {family} (mean main score x100 over the family's tasks; seed range)", ""]
        lines += ["| variant | " + " | ".join(f"{s} steps" for s in steps) + " |"]
        lines += ["|---|" + "---|" * len(steps)]
        for label, fam in data.items():
            cells = [_spread(fam[family][s]) if s in fam.get(family, {}) else "" for s in steps]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    if rows:
        lines += [
            "### Family tests per budget (A - B, x100; t-test over datasets with the pooled seed variance, Holm within family)",
            "",
        ]
        lines += [
            "| steps | family | A | B | A - B | 95% CI | p (Holm) | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            p = "" if r["p_holm"] is None else f"{r['p_holm']:.3g}"
            ci = f"[{r['ci95'][0]:.1f}, {r['ci95'][1]:.1f}]"
            lines.append(
                f"| {r['steps']} | {r['family']} | {r['a']} | {r['b']} | {r['diff']:+.1f} | {ci} | {p} | {r['verdict']} |"
            )
    return "\n".join(lines) + "\n"


def plot(data: dict[str, dict[str, dict[int, list[float]]]], path: Path) -> Path:
    """Family mean against steps per variant (log-scaled steps), the seeds' range as a band."""
    from poolattn.stats.plots import agg_figure, save_figure

    fig, axes = agg_figure((11, 4.2), 1, len(FAMILIES))
    for ax, family in zip(axes, FAMILIES, strict=True):
        for label, fam in data.items():
            points = sorted(fam.get(family, {}).items())
            if not points:
                continue
            steps = [s for s, _ in points]
            line = ax.plot(steps, [statistics.fmean(v) for _, v in points], marker="o", label=label)[0]
            if any(len(v) > 1 for _, v in points):
                ax.fill_between(
                    steps,
                    [min(v) for _, v in points],
                    [max(v) for _, v in points],
                    color=line.get_color(),
                    alpha=0.2,
                )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("joint training steps (head warm-up not counted)")
        ax.set_ylabel("family mean main score (x100)")
        ax.set_title(family)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Budget study: family means against training steps (band: seed range)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config",
        type=Path,
        default=ROOT / "configs" / "quick.toml",
        help="experiment TOML (recipe, data, evaluation)",
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], help="section.key=value override of --config"
    )
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "budget-study")
    p.add_argument(
        "--designs", default="eos+causal,multilayer+causal", help="comma-separated; the first is the baseline"
    )
    p.add_argument("--seeds", type=_ints, default=[0, 1])
    p.add_argument(
        "--budgets", type=_ints, default=[25, 50, 100, 200], help="joint steps at which to evaluate"
    )
    p.add_argument(
        "--warmup", type=int, default=25, help="head warm-up steps of the warm-up variants (0: none)"
    )
    p.add_argument(
        "--head-lr", type=_floats, default=[], help="head learning rates to sweep, e.g. 1e-4,1e-3,1e-2"
    )
    p.add_argument("--sweep-max-steps", type=int, default=50, help="largest budget of the head-lr sweep runs")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="STS and retrieval datasets (local data)")
    p.add_argument("--max-items", type=int, default=50)
    p.add_argument(
        "--local-data",
        default=None,
        help="local data folder (default: the config's, else $POOLATTN_DATA_DIR)",
    )
    p.add_argument("--min-datasets", type=int, default=3, help="datasets per family for the Wilcoxon column")
    p.add_argument(
        "--estimate", action="store_true", help="print the plan and its estimated cost, run nothing"
    )
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes: budgets 1,2, warm-up 1, 8 items, sweep at 1 step"
    )
    args = p.parse_args(argv)
    args.designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.smoke:
        args.budgets, args.warmup, args.max_items, args.sweep_max_steps = [1, 2], 1, 8, 1
    if not args.budgets or min(args.budgets) < 1 or args.warmup < 0 or len(args.seeds) < 1:
        p.error("--budgets must be >= 1, --warmup >= 0, and give at least one seed")
    for lr in args.head_lr:
        if lr <= 0:
            p.error(f"--head-lr: {lr} is not a positive learning rate")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from poolattn.config import ConfigError
    from poolattn.experiment.plan import load_experiment_config

    try:
        exp = load_experiment_config(args.config, args.overrides)
        variants = plan(args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"budget_study: {exc}", file=sys.stderr)
        return 2
    cost = estimate(variants)
    for v in variants:
        log.info("plan: %s seeds %s budgets %s", v.label, v.seeds, v.budgets)
    log.info("estimated cost: %.0f min (COST figures; smoke sizes are far cheaper)", cost / 60)
    if args.estimate:
        return 0
    began = time.perf_counter()
    records = [run_variant(exp, v, seed, args) for v in variants for seed in v.seeds]
    data = curves(records)
    rows = verdicts(records, args.out, args.min_datasets)
    from poolattn.io import write_json_atomic, write_text_atomic

    wall = time.perf_counter() - began
    result = {
        "command": "python bench/budget_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "constant_lr_horizon": CONSTANT_LR_HORIZON,
        "tasks": args.tasks,
        "max_items": args.max_items,
        "runs": records,
        "curves": {
            label: {f: {str(s): v for s, v in fam.items()} for f, fam in d.items()}
            for label, d in data.items()
        },
        "verdicts": rows,
        "wall_s": wall,
        "estimated_s": cost,
    }
    write_json_atomic(args.out / "budget_study.json", result)
    text = tables(data, rows) + f"\nWall time {wall / 60:.1f} min (estimated {cost / 60:.0f} min).\n"
    write_text_atomic(args.out / "budget_study.md", text)
    plot(data, args.out / "budget_study.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
