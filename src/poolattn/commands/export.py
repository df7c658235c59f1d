"""``poolattn export MODEL_DIR [--format sentence-transformers|onnx] --output DIR``: export a model."""

from __future__ import annotations

import argparse

HELP = "export a saved poolattn model to sentence-transformers (plain where possible) or ONNX"
FORMATS = ("sentence-transformers", "onnx")  # = poolattn.export.FORMATS: `--help` loads no torch
DTYPES = ("float32", "bfloat16", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="a saved poolattn model directory")
    parser.add_argument("--format", choices=FORMATS, default=FORMATS[0], help="target format")
    parser.add_argument("--output", "-o", required=True, help="directory to write")
    parser.add_argument(
        "--instruction", default=None, help="instruction of the 'query' prompt (default: the training one)"
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default=None, help="weights' dtype (default: the model's; onnx: float32)"
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--plain",
        dest="plain",
        action="store_const",
        const=True,
        default=None,
        help="sentence-transformers: plain modules or an error (default: plain where the design allows)",
    )
    kind.add_argument(
        "--module",
        dest="plain",
        action="store_const",
        const=False,
        help="sentence-transformers: one poolattn module (needs trust_remote_code)",
    )
    parser.add_argument(
        "--no-bundle-backbone",
        dest="bundle_backbone",
        action="store_false",
        help="module export: do not copy the base backbone inside (resolves the design's base at load)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def run(args: argparse.Namespace) -> int:
    # an existing output directory raises FileExistsError: cli.main reports it in one line, exit 2
    common = {"instruction": args.instruction, "dtype": args.dtype, "overwrite": args.overwrite}
    if args.format == "onnx":
        from ..onnx_export import export_onnx

        out = export_onnx(args.model_dir, args.output, **common)
        print(f"wrote {out}; run it with onnxruntime (see {out}/README.md)")
        return 0
    from ..export import export_kind, export_sentence_transformers

    out = export_sentence_transformers(
        args.model_dir, args.output, plain=args.plain, bundle_backbone=args.bundle_backbone, **common
    )
    if export_kind(out) == "plain":
        print(f"wrote {out} (plain); load it with SentenceTransformer({str(out)!r})")
    else:
        print(f"wrote {out} (module); load it with SentenceTransformer({str(out)!r}, trust_remote_code=True)")
    return 0
