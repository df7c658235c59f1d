"""``poolattn compare``: verdicts per task family between results dirs, with the tests behind them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import ConfigError
from . import comma_list, user_errors

HELP = "compare results directories: verdicts per family (item-level, seed-aware tests), report.md/CSV/JSON/plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS_DIR", help="directories written by poolattn eval"
    )
    parser.add_argument("--output", "-o", required=True, help="report directory")
    parser.add_argument(
        "--names",
        help="comma-separated run names, one per directory (default: each run's design); "
        "names '<design>-seed<N>' are seeds of one design",
    )
    parser.add_argument(
        "--designs",
        help="comma-separated design labels, one per directory: directories with the same label are "
        "seed replicates of one design",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm correction")
    parser.add_argument(
        "--rope",
        type=rope_arg,
        default=None,
        help="region of practical equivalence in points on the x100 scale: one number for every family "
        "(e.g. 1) and/or FAMILY=POINTS overrides (e.g. 'Clustering=3,STS=0.5'); default per family: 2 for "
        "Classification and Clustering (their evaluator is itself noisy), 1 for the rest",
    )
    parser.add_argument(
        "--fixed",
        help="comma-separated designs that are fixed checkpoints without a training seed (a published "
        "model, an untrained baseline; 'untrained-*' designs always are): no seed variance on their side",
    )
    parser.add_argument(
        "--holm-scope",
        choices=("family", "global"),
        default="family",
        help="Holm correction within each family over its design pairs (default, the paper's per-family "
        "claims) or over all families at once",
    )
    parser.add_argument(
        "--resamples", type=int, default=2000, help="bootstrap / permutation resamples (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every resampling")
    parser.add_argument(
        "--min-datasets",
        type=int,
        default=5,
        help="the paper's rule for its Wilcoxon test (families with at least this many datasets); "
        "other families are still tested and marked",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="also say how many items per dataset, datasets or seeds a target effect needs",
    )
    parser.add_argument(
        "--target-effect",
        type=float,
        help="the effect --plan is for, in points on the x100 scale (default: each family's ROPE)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--backbones",
        action="store_true",
        help="the two arguments are experiment folders on two backbones: per family, the design "
        "ranking on each, Kendall's tau and which pairwise verdicts agree, flip or stay undecided "
        "(backbones.md/.json)",
    )


def rope_arg(text: str) -> dict[str, float]:
    """``--rope``: '2' (every family), 'Clustering=3,STS=0.5' or both, in points -> family -> ROPE
    on the 0-1 scale ('*' = every family not named)."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        family, _, value = part.rpartition("=")
        try:
            points = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: expected POINTS or FAMILY=POINTS") from None
        if points < 0:
            raise argparse.ArgumentTypeError(f"{part!r}: the ROPE must be >= 0")
        out[family.strip() or "*"] = points / 100.0
    return out


def run(args: argparse.Namespace) -> int:
    import warnings

    from ..stats.compare import compare
    from ..stats.report import plan_section, rope_text

    if args.backbones:
        return _run_backbones(args)
    if len(args.results) < 2:
        raise ConfigError("give at least two results directories")
    target = args.target_effect / 100.0 if args.target_effect is not None else None
    with user_errors(ValueError), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = compare(
            args.results,
            args.output,
            plots=not args.no_plots,
            names=comma_list(args.names),
            designs=comma_list(args.designs),
            plan_target=target if args.plan else None,
            plan=args.plan,
            **_compare_options(args),
        )
    for text in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)):
        print(f"warning: {text}", file=sys.stderr)
    print(f"Holm scope: {args.holm_scope}; {rope_text(summary)}; alpha {args.alpha}")
    for family, info in summary["families"].items():
        means = ", ".join(f"{name} {value * 100:.2f}" for name, value in info["means"].items())
        print(f"{family} ({info['n']} datasets): {means}")
        for t in summary["family_tests"]:
            if t["family"] == family:
                print(f"  {t['verdict']['text']}")
    if args.plan:
        print("\n".join(line for line in plan_section(summary, target) if line))
    print(f"report: {args.output}/report.md")
    return 0


def _compare_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``stats.compare.compare_models`` this command sets, for both kinds of run."""
    return {
        "alpha": args.alpha,
        "rope": args.rope,
        "holm_scope": args.holm_scope,
        "n_resamples": args.resamples,
        "seed": args.seed,
        "min_datasets": args.min_datasets,
        "fixed": comma_list(args.fixed) or (),
    }


def _run_backbones(args: argparse.Namespace) -> int:
    """``--backbones EXP_A EXP_B``: the cross-backbone comparison (``stats.backbones``)."""
    from ..stats.backbones import REPORT_FILE, compare_backbones, summary_lines

    if len(args.results) != 2:
        raise ConfigError("--backbones takes exactly two experiment folders")
    with user_errors(ValueError):  # the stats' ResultsError and ItemsError too
        result = compare_backbones(args.results[0], args.results[1], args.output, **_compare_options(args))
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print("\n".join(summary_lines(result)))
    print(f"report: {args.output}/{REPORT_FILE}")
    return 0
