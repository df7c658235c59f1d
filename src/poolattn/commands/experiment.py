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


def run(args: argparse.Namespace) -> int:
    from ..experiment import describe_plan, load_experiment_config, run_experiment, write_report

    config = load_experiment_config(args.config, args.overrides)
    if args.dry_run:
        print(describe_plan(config))
        return 0
    path = write_report(config) if args.report_only else run_experiment(config)
    text = path.read_text()
    if "## Summary" in text:
        print(text[text.index("## Summary") :].split("\n## ", 1)[0])
    print(f"report: {path}")
    return 0
