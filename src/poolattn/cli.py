"""The ``poolattn`` command: thin; each subcommand is a module in ``poolattn.commands``.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``;
every command calls a library function, so the CLI holds no logic of its own.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .config import ConfigError

COMMANDS = ("demo", "export", "train", "mine", "eval", "compare", "experiment")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poolattn", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"poolattn.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"poolattn.commands.{name}":
                raise
            continue
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"poolattn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
