"""``poolattn experiment CONFIG.toml``: train, evaluate and compare a grid of designs."""

from __future__ import annotations

import argparse
from typing import Any

from . import add_overrides_option, comma_list

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
    parser.add_argument(
        "--submit",
        metavar="CLUSTER.toml",
        help="submit the runs (of --runs/--shard) as a job array through submitit, one task per run "
        "(see configs/slurm/submitit.toml); run nothing here",
    )


def run(args: argparse.Namespace) -> int:
    """0 when this worker's runs all finished (or nothing ran); 1 when any of them failed."""
    import sys

    from ..experiment.plan import load_experiment_config
    from ..experiment.report import write_experiment_report
    from ..experiment.runner import describe_plan, run_experiment
    from ..experiment.status import format_status, grid_status
    from ..experiment.workers import parse_shard, select_runs

    config = load_experiment_config(args.config, args.overrides)
    names = comma_list(args.runs)
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
    if args.submit:
        from ..experiment.submit import load_cluster_config, submit_grid

        cluster = load_cluster_config(args.submit)
        folder = config.output_dir / "submitit"
        jobs = submit_grid(args.config, args.overrides, selected, cluster, folder)
        print(
            f"submitted {len(jobs)} task(s), one per run ({cluster.cluster}): {', '.join(j.job_id for j in jobs)}"
        )
        print(f"logs: {folder}; watch with: poolattn experiment {args.config} --status")
        if cluster.cluster == "slurm":
            return 0
        # local / debug: the tasks run on this machine; wait for them. exception(), not result():
        # the debug executor's result() opens pdb on a failure, which hangs a non-interactive run.
        failed = [run_.name for job, run_ in zip(jobs, selected, strict=True) if _task_error(job)]
        if failed:
            print(f"{len(failed)} task(s) failed: {', '.join(failed)} (logs in {folder})", file=sys.stderr)
        return 1 if failed else 0
    if args.report_only:
        report, failed = write_experiment_report(config), []
    else:
        outcome = run_experiment(config, names, shard)
        report, failed = outcome.report, outcome.failed
    if report is not None:
        print("\n".join(["## Summary", "", *report.summary, ""]))
        print(f"report: {report.path}")
    if failed:
        print(
            f"{len(failed)} run(s) failed in this worker: {', '.join(failed)} (see their state.json)",
            file=sys.stderr,
        )
        return 1
    return 0


def _task_error(job: Any) -> BaseException | None:
    """A finished submitit task's error (None: it succeeded), without a debugger prompt."""
    try:
        return job.exception()
    except Exception as exc:  # the task never completed
        return exc
