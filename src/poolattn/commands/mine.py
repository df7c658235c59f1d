"""``poolattn mine``: add hard negatives to query/positive pairs with any embedding model."""

from __future__ import annotations

import argparse

HELP = "mine hard negatives for a pairs JSONL file with a poolattn or sentence-transformers model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="JSONL file of {query, positive} records")
    parser.add_argument(
        "-o", "--output", required=True, help="where to write {query, positive, negative} JSONL"
    )
    parser.add_argument(
        "--model",
        default="all-MiniLM-L6-v2",
        help="a poolattn model dir, BASE:POOLING+ATTENTION, a backbone alias, a sentence-transformers dir "
        "or all-MiniLM-L6-v2 (packaged, the default)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="texts encoded at once")
    parser.add_argument(
        "--corpus", help="extra candidate texts: JSONL with a 'text' field or one text per line"
    )
    parser.add_argument("--num-negatives", type=int, default=1, help="negatives kept per query")
    parser.add_argument(
        "--range", default="0:50", help="rank window START:END of candidates (0 = most similar)"
    )
    parser.add_argument(
        "--margin", type=float, default=0.0, help="drop candidates scored within MARGIN of the positive"
    )
    parser.add_argument(
        "--max-duplicate-similarity",
        type=float,
        default=0.95,
        help="drop candidates this similar to the positive",
    )
    parser.add_argument(
        "--instruction", help="query instruction for poolattn models (default: per record or built-in)"
    )
    parser.add_argument("--skip-invalid", action="store_true", help="skip malformed lines instead of failing")


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..io import check_output_path
    from ..training.mining import MiningSettings, mine_file

    check_output_path(args.output, "--output")  # before any model is loaded
    try:
        start, end = (int(x) for x in args.range.split(":"))
    except ValueError as exc:
        raise ConfigError(f"--range {args.range!r}: expected START:END, e.g. 10:50") from exc
    settings = MiningSettings(
        num_negatives=args.num_negatives,
        rank_start=start,
        rank_end=end,
        margin=args.margin,
        max_duplicate_similarity=args.max_duplicate_similarity,
        instruction=args.instruction,
        batch_size=args.batch_size,
    )
    settings.validate()  # a ConfigError before any model is loaded
    path, n_in, n_out = mine_file(
        args.input, args.output, args.model, settings, args.corpus, args.skip_invalid
    )
    print(f"mined {n_out} triples from {n_in} pairs -> {path}")
    return 0
