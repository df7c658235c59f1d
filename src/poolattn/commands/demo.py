"""``poolattn demo``: embed a handful of sentences with two designs and print a similarity table."""

from __future__ import annotations

import argparse

HELP = "embed a few sentences with the default model in two designs and print their similarities"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base", default="smollm2-135m", help="backbone: alias, local path, GGUF file or hub id"
    )


def run(args: argparse.Namespace) -> int:
    from ..demo import similarity_demo

    print(similarity_demo(args.base))
    return 0
