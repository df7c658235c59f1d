"""``poolattn compare``: per-family tables and paired significance tests between results dirs."""

from __future__ import annotations

import argparse
import sys

HELP = "compare results directories: family tables, Wilcoxon tests (Holm), report.md/CSV/JSON/plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS_DIR", help="directories written by poolattn eval"
    )
    parser.add_argument("--output", "-o", required=True, help="report directory")
    parser.add_argument(
        "--min-datasets",
        type=int,
        default=5,
        help="test a family only with at least this many datasets (paper: 5)",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm correction")
    parser.add_argument("--no-bootstrap", action="store_true", help="skip bootstrap CIs of mean differences")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    import warnings

    from ..stats import ResultsError, compare

    if len(args.results) < 2:
        print("poolattn compare: error: give at least two results directories", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = compare(
                args.results,
                args.output,
                min_datasets=args.min_datasets,
                alpha=args.alpha,
                bootstrap=not args.no_bootstrap,
                plots=not args.no_plots,
            )
    except (ResultsError, ValueError) as exc:
        print(f"poolattn compare: error: {exc}", file=sys.stderr)
        return 2
    for text in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)):
        print(f"warning: {text}", file=sys.stderr)
    for family, info in summary["families"].items():
        means = ", ".join(f"{name} {value * 100:.2f}" for name, value in info["means"].items())
        print(f"{family} ({info['n']} datasets{'' if info['tested'] else ', not tested'}): {means}")
    for t in summary["tests"]:
        print(
            f"  {t['family']}: {t['model_a']} vs {t['model_b']}: p={t['pvalue']:.3g}, "
            f"Holm p={t['pvalue_holm']:.3g}, r={t['rank_biserial']:+.2f}"
        )
    print(f"report: {args.output}/report.md")
    return 0
