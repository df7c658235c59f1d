"""``poolattn encode MODEL --input FILE --output FILE``: embed a file of texts (see poolattn.encode_file)."""

from __future__ import annotations

import argparse
import sys

from ..config import DTYPES
from . import add_model_argument, set_epilog, user_errors

HELP = "embed a file of texts (.txt, .jsonl, .csv, .tsv) into vectors (.npy, .jsonl, .parquet)"

EPILOG = """MODEL is anything `poolattn eval` accepts: a saved poolattn model directory, a design
spec BASE:POOLING+ATTENTION such as smollm2-135m:eos+causal, a backbone alias, folder or .gguf
file (default design eos+causal), a sentence-transformers model directory, or all-MiniLM-L6-v2
(the packaged copy).

Vectors are float32, L2-normalised, in input order; .jsonl/.parquet rows carry an id (the
line number, or --id-field). A bad line (empty text, missing field, undecodable bytes) stops
the run naming its line unless --skip-invalid. An interrupted run keeps its finished chunks
in .OUTPUT.parts/ beside the output: rerun the same command to resume.

examples:
  poolattn encode runs/quick/eos+causal/final --input docs.jsonl --output docs.npy
  poolattn encode smollm2-135m:eos+causal --input questions.txt --output q.parquet \\
      --prompt-type query --instruction "Retrieve passages that answer the question"
  poolattn encode all-MiniLM-L6-v2 --input table.csv --column body --output vectors.npy"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    set_epilog(parser, EPILOG)
    add_model_argument(parser)
    parser.add_argument(
        "--input", "-i", required=True, help="texts: .txt (one per line), .jsonl, .csv or .tsv"
    )
    parser.add_argument("--output", "-o", required=True, help="vectors: .npy, or .jsonl / .parquet with ids")
    parser.add_argument(
        "--field",
        "--column",
        dest="field",
        default="text",
        help="JSONL field or CSV/TSV column holding the text (default: text)",
    )
    parser.add_argument(
        "--id-field", help="JSONL field or CSV/TSV column holding an id (default: line number)"
    )
    parser.add_argument(
        "--prompt-type",
        choices=("document", "query"),
        default="document",
        help="document: bare text (default); query: the model's instruction template",
    )
    parser.add_argument("--instruction", help="the query instruction (with --prompt-type query)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default: 32)")
    parser.add_argument(
        "--max-length", type=int, help="truncate texts to this many tokens (default: the model's)"
    )
    parser.add_argument("--dtype", choices=DTYPES, help="run the model in this dtype (default: as saved)")
    parser.add_argument(
        "--skip-invalid", action="store_true", help="skip and count bad lines instead of failing"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=1024, help="texts per resumable chunk (default: 1024)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--restart", action="store_true", help="discard the chunks of an unfinished run")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# flags passed to encode_file as keywords of the same names
OPTIONS = ("field", "id_field", "prompt_type", "instruction", "batch_size", "max_length", "dtype")
OPTIONS += ("skip_invalid", "chunk_size", "overwrite", "restart")


def run(args: argparse.Namespace) -> int:
    from ..encode_file import MAX_REPORTED, InputError, encode_file, parts_dir

    options = {name: getattr(args, name) for name in OPTIONS}
    options["progress"] = not args.no_progress
    try:
        with user_errors(InputError):
            summary = encode_file(args.model, args.input, args.output, **options)
    except KeyboardInterrupt:
        print(
            f"poolattn encode: interrupted; finished chunks are kept in {parts_dir(args.output)} - "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    rate = summary.encoded / summary.encode_seconds if summary.encode_seconds > 0 else 0.0
    print(
        f"wrote {summary.texts} vectors of dimension {summary.dim} to {summary.output} in "
        f"{summary.seconds:.1f} s ({summary.encoded} encoded at {rate:.1f} texts/s"
        + (f"; {summary.reused} reused from an interrupted run" if summary.reused else "")
        + ")"
    )
    if summary.skipped:
        shown = ", ".join(f"line {line} ({reason})" for line, reason in summary.skipped[:MAX_REPORTED])
        skipped = len(summary.skipped)
        more = f" and {skipped - MAX_REPORTED} more" if skipped > MAX_REPORTED else ""
        print(f"skipped {skipped} invalid lines: {shown}{more}", file=sys.stderr)
    return 0
