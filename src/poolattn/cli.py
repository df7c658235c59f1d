"""The ``poolattn`` command line: parse the arguments, run one command module, report errors.

A command is a ``poolattn.commands`` module (``HELP``, ``add_arguments``, ``run``) named in
``COMMANDS``; it imports torch and mteb inside ``run`` only, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from .config import ConfigError
from .io import CorruptFileError

COMMANDS = ["encode", "train", "eval", "compare", "experiment", "layers", "export", "mine", "demo"]

DESCRIPTION = (
    "poolattn turns a decoder-only LLM (SmolLM2, Gemma, Llama, Qwen2, Mistral, ...) into a "
    "text-embedding model with the attention (causal or bidirectional) and the pooling as "
    "swappable designs; it trains them contrastively, evaluates them with the MTEB evaluators "
    "and compares designs with paired statistics."
)

EPILOG = """most common commands:
  poolattn encode MODEL --input texts.txt --output vectors.npy   embed your texts
  poolattn train configs/train-example.toml                      fine-tune a design
  poolattn eval MODEL --output results/                          score a model on MTEB tasks

MODEL is a saved model directory, a design such as smollm2-135m:eos+causal, or all-MiniLM-L6-v2.
Run `poolattn COMMAND --help` for a command's options."""

# Errors a user can fix from the message alone: one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    CorruptFileError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def quiet_process(args: argparse.Namespace) -> None:
    """Process-wide output settings of one command (the library itself changes none)."""
    import warnings

    # mteb both logs and warns that a task is superseded: the log line is enough
    warnings.filterwarnings("ignore", message=r"The task '.*' is superseded by", category=UserWarning)
    if getattr(args, "no_progress", False):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # transformers' and the hub's, also inside s-t and PEFT loaders


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poolattn",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress details; show tracebacks of errors"
    )
    verbose = argparse.ArgumentParser(add_help=False)  # -v also after the command name
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"poolattn.commands.{name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[verbose])
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    quiet_process(args)
    try:
        return int(args.handler(args) or 0)
    except USER_ERRORS as exc:
        if args.verbose:
            traceback.print_exc()
        os_error = isinstance(exc, OSError) and exc.strerror and exc.filename is not None
        message = f"{exc.filename}: {exc.strerror}" if os_error else str(exc)  # not "[Errno N] ..."
        print(f"poolattn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"poolattn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        print(
            f"poolattn {args.command}: error: {type(exc).__name__}: {exc} (rerun with -v for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
