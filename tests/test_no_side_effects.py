"""Importing or asking poolattn for a path changes nothing outside it: no process-wide warning
filter, no matplotlib backend, no cache folder created, and the experiment CLI prints the
summary the report function returned (it never reads the markdown back)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from poolattn.cli import main
from poolattn.experiment.report import ExperimentReport
from poolattn.settings import CACHE_DIR_ENV, cache_dir

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def run_probe(code: str) -> object:
    """Run ``code`` in a fresh interpreter; it prints one JSON line, returned decoded."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_poolattn_adds_no_warning_filter() -> None:
    """Every warning-filter call made while importing is recorded with its caller's module;
    libraries may set their own, poolattn sets none."""
    probe = """
import json, sys, warnings
callers = []
def spy(real):
    def record(*args, **kwargs):
        callers.append(sys._getframe(1).f_globals.get("__name__", "?"))
        return real(*args, **kwargs)
    return record
warnings.filterwarnings, warnings.simplefilter = spy(warnings.filterwarnings), spy(warnings.simplefilter)
import poolattn
from poolattn import EmbeddingModel
from poolattn.model import EmbeddingModel
print(json.dumps([len(callers), sorted({c for c in callers if c.split(".")[0] == "poolattn"})]))
"""
    seen, ours = run_probe(probe)
    assert seen > 0  # the spy works: torch, numpy and scipy set filters of their own
    assert ours == []


def test_plots_choose_no_backend_and_leave_pyplot_unloaded(tmp_path: Path) -> None:
    probe = f"""
import json, sys
from pathlib import Path
from poolattn.experiment.report import plot_training_curves
from poolattn.stats.plots import heatmap
out = Path({str(tmp_path)!r})
plot_training_curves({{"a": [{{"step": 1, "loss": 2.0}}, {{"step": 2, "loss": 1.5}}]}}, out / "curves.png")
summary = {{"designs": ["a", "b"], "datasets": {{"T": {{"family": "STS", "scores": {{"a": 0.5, "b": 0.6}}}}}}}}
heatmap(summary, out / "heatmap.png")
print(json.dumps(["matplotlib.pyplot" in sys.modules, sorted(p.name for p in out.glob("*.png"))]))
"""
    assert run_probe(probe) == [False, ["curves.png", "heatmap.png"]]
    assert (tmp_path / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cache_dir_is_only_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "not-yet"))
    assert cache_dir() == tmp_path / "not-yet"
    assert not (tmp_path / "not-yet").exists()


def test_experiment_cli_prints_the_returned_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "never-written.md"  # reading it back would fail

    def fake_report(config: object) -> ExperimentReport:
        return ExperimentReport(missing, ["- **STS**: eos+causal better than mean+causal"])

    monkeypatch.setattr("poolattn.experiment.report.write_experiment_report", fake_report)
    assert main(["experiment", str(CONFIGS / "tiny.toml"), "--report-only"]) == 0
    out = capsys.readouterr().out
    assert out == f"## Summary\n\n- **STS**: eos+causal better than mean+causal\n\nreport: {missing}\n"
