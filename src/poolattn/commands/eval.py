"""``poolattn eval``: evaluate a model with the real MTEB evaluators on local or mteb tasks."""

from __future__ import annotations

import argparse

from . import add_model_argument, comma_list, set_epilog

HELP = "evaluate a model (MTEB evaluators, local data or mteb tasks) into a results directory"

EPILOG = """MODEL is one of:
  a poolattn model directory (written by EmbeddingModel.save / poolattn train),
  a design spec BASE:POOLING+ATTENTION for an untrained design, e.g. smollm2-135m:eos+causal,
  a backbone alias such as smollm2-135m (its default design),
  a sentence-transformers model directory, or all-MiniLM-L6-v2 (the packaged copy).
Local data defaults to $POOLATTN_DATA_DIR; --max-items N down-samples every dataset
deterministically (recorded in run.json and every report).
Under `accelerate launch -m poolattn.cli eval ...` the encoding is sharded across the
processes and rank 0 runs the evaluators; the scores equal a single-process run."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    set_epilog(parser, EPILOG)
    add_model_argument(parser)
    parser.add_argument(
        "--output", "-o", required=True, help="results directory (run.json + one JSON per task)"
    )
    parser.add_argument("--tasks", help="comma-separated mteb task names or local dataset names")
    parser.add_argument("--benchmark", help='an mteb benchmark, e.g. "MTEB(eng, v1)" (needs network)')
    parser.add_argument("--local-data", help="local data folder (default: $POOLATTN_DATA_DIR)")
    parser.add_argument("--max-items", type=int, help="deterministic down-sampling per dataset")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-embedding-cache", action="store_true", help="do not keep embeddings on disk")


def run(args: argparse.Namespace) -> int:
    from ..evaluation.distributed import evaluate  # sharded under `accelerate launch`
    from ..io import check_output_path
    from ..stats.report import format_run_table

    check_output_path(args.output, "--output")  # before any model is loaded
    kwargs = {"cache_dir_path": None} if args.no_embedding_cache else {}
    result = evaluate(
        args.model,
        args.output,
        tasks=comma_list(args.tasks),
        benchmark=args.benchmark,
        local_data=args.local_data,
        max_items=args.max_items,
        batch_size=args.batch_size,
        **kwargs,
    )
    if result is None:  # a non-zero rank of `accelerate launch`: rank 0 reports
        return 0
    print(format_run_table(result))
    print(f"\nresults: {args.output} ({result['wall_seconds']} s)")
    return 0
