"""``poolattn export MODEL_DIR --format sentence-transformers --output DIR``: export a model."""

from __future__ import annotations

import argparse

HELP = "export a saved poolattn model to another format (sentence-transformers)"
FORMATS = ("sentence-transformers",)  # = poolattn.export.FORMATS, not imported: `--help` loads no torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="a saved poolattn model directory")
    parser.add_argument("--format", choices=FORMATS, default=FORMATS[0], help="target format")
    parser.add_argument("--output", "-o", required=True, help="directory to write")
    parser.add_argument("--instruction", default=None, help="instruction of the 'query' prompt")
    parser.add_argument(
        "--no-bundle-backbone",
        dest="bundle_backbone",
        action="store_false",
        help="do not copy the base backbone inside (the export then resolves the design's base at load)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def run(args: argparse.Namespace) -> int:
    from ..export import export_sentence_transformers

    # an existing output directory raises FileExistsError: cli.main reports it in one line, exit 2
    out = export_sentence_transformers(
        args.model_dir,
        args.output,
        instruction=args.instruction,
        bundle_backbone=args.bundle_backbone,
        overwrite=args.overwrite,
    )
    print(f"wrote {out}; load it with SentenceTransformer({str(out)!r}, trust_remote_code=True)")
    return 0
