"""``poolattn experiment CONFIG.toml``: train, evaluate and compare a grid of designs."""

from __future__ import annotations

import argparse

from . import add_overrides_option

HELP = "run a controlled comparison of pooling x attention designs (train -> eval -> compare -> report)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", help="experiment TOML ([experiment], [model], [data], [training], [lora], [evaluation])"
    )
    add_overrides_option(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="validate the config and print the plan; run nothing"
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from finished runs")
    parser.add_argument(
        "--status",
        action="store_true",
        help="show every run's phase, worker and elapsed time (from the shared files); run nothing",
    )
    parser.add_argument(
        "--runs", metavar="NAME[,NAME]", help="take only these runs (names as --dry-run lists them)"
    )
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="take every N-th run from the K-th (plan order); N workers with K = 1..N cover the grid",
    )


def run(args: argparse.Namespace) -> int:
    from ..experiment.plan import load_experiment_config
    from ..experiment.report import write_experiment_report
    from ..experiment.runner import describe_plan, run_experiment
    from ..experiment.status import format_status, grid_status
    from ..experiment.workers import parse_shard, select_runs

    config = load_experiment_config(args.config, args.overrides)
    names = [n.strip() for n in args.runs.split(",") if n.strip()] if args.runs else None
    shard = parse_shard(args.shard) if args.shard else None
    selected = select_runs(config.runs(), names, shard)  # validates --runs / --shard early
    if args.status:
        print(format_status(config, grid_status(config)))
        return 0
    if args.dry_run:
        print(describe_plan(config))
        if names or shard:
            print(f"this worker's runs ({len(selected)}): {', '.join(r.name for r in selected) or 'none'}")
        return 0
    report = write_experiment_report(config) if args.report_only else run_experiment(config, names, shard)
    if report is None:  # other workers still at work, or another worker writes the report
        return 0
    print("\n".join(["## Summary", "", *report.summary, ""]))
    print(f"report: {report.path}")
    return 0
