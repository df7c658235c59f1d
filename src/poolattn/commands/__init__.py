"""One module per ``poolattn`` command (HELP, add_arguments, run); shared options live here."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from ..config import ConfigError


@contextlib.contextmanager
def user_errors(*errors: type[Exception]) -> Iterator[None]:
    """Report these library errors as a user's mistake: one line, exit status 2 (``cli.main``)."""
    try:
        yield
    except errors as exc:
        raise ConfigError(str(exc)) from exc


def comma_list(text: str | None) -> list[str] | None:
    """``--opt a,b`` -> ``["a", "b"]`` (blank items dropped); None when the option is not given."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def set_epilog(parser: argparse.ArgumentParser, epilog: str) -> None:
    """Show ``epilog`` under the command's help as written (its examples keep their line breaks)."""
    parser.epilog = epilog
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """The positional MODEL: everything ``poolattn.backends.resolve.load_backend`` resolves."""
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="model dir, BASE:POOLING+ATTENTION, backbone alias/folder/.gguf, s-t dir or all-MiniLM-L6-v2",
    )


def add_overrides_option(parser: argparse.ArgumentParser) -> None:
    """``--set section.key=value`` (TOML value syntax), repeatable, collected in ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a setting (TOML value syntax), e.g. --set training.steps=10; repeatable",
    )
