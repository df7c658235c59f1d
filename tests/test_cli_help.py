"""The command line answers at once: ``poolattn --help`` and ``poolattn COMMAND --help`` import
no torch, transformers or mteb; errors are one line unless ``-v``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from poolattn import cli

HEAVY = ("torch", "transformers", "mteb", "sentence_transformers", "accelerate", "peft", "scipy")

PROBE = """
import json, sys
from poolattn.cli import COMMANDS, main
outputs = {}
for argv in [["--help"]] + [[name, "--help"] for name in COMMANDS]:
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
print(json.dumps({"heavy": sorted(m for m in %r if m in sys.modules), "commands": COMMANDS}))
"""


def test_help_imports_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,)], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert "encode" in report["commands"]


def test_every_listed_command_is_registered() -> None:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert set(subparsers.choices) == set(cli.COMMANDS)


def test_top_level_help_says_what_poolattn_is_for(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "text-embedding model" in out and "attention" in out and "pooling" in out
    assert "thin" not in out  # no note to developers
    common = out[out.index("most common commands:") :]
    for command in ("poolattn encode MODEL --input", "poolattn train", "poolattn eval MODEL"):
        assert command in common


def test_export_formats_match_the_library() -> None:
    from poolattn.commands import export as command
    from poolattn.export import FORMATS

    assert command.FORMATS == FORMATS


def test_unexpected_error_is_one_line_and_traceback_only_with_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from poolattn.commands import demo

    def boom(args: object) -> int:
        raise RuntimeError("the backbone caught fire")

    monkeypatch.setattr(demo, "run", boom)
    assert cli.main(["demo"]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "poolattn demo: error: RuntimeError: the backbone caught fire (rerun with -v for the traceback)"
    )
    with pytest.raises(RuntimeError, match="caught fire"):
        cli.main(["demo", "-v"])  # -v after the command name works too


def test_user_error_is_one_line_with_traceback_under_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["encode", "m", "--input", "missing.txt", "--output", "v.npy"]
    assert cli.main(args) == 2
    assert capsys.readouterr().err.strip() == "poolattn encode: error: missing.txt: no such input file"
    assert cli.main(["-v", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("missing.txt: no such input file")
