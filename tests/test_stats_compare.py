"""Family rule, intersection warning, file errors, report files; results without item files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from poolattn.cli import main
from poolattn.stats import ResultsError, compare, load_results

FAMILIES = {"Classification": 5, "STS": 4}


def write_results(root: Path, design: str, offset: float, skip: tuple[str, ...] = ()) -> Path:
    """A results dir like ``poolattn eval`` writes, with made-up scores."""
    root.mkdir(parents=True)
    tasks = {}
    k = 0
    for family, n in FAMILIES.items():
        for i in range(n):
            name = f"{family}{i}"
            k += 1
            if name in skip:
                continue
            score = 0.3 + 0.05 * k + offset * (1 + 0.1 * i)
            (root / f"{name}.json").write_text(
                json.dumps(
                    {"task_name": name, "scores": {"test": [{"hf_subset": "default", "main_score": score}]}}
                )
            )
            tasks[name] = {
                "file": f"{name}.json",
                "family": family,
                "main_score_name": "accuracy",
                "main_score": score,
                "sampling": {"max_items": 10, "kept": 10, "total": 50, "unit": "texts"},
            }
    run = {
        "model": {"name": f"poolattn/{design}", "design": design, "fingerprint": design * 4},
        "tasks": tasks,
    }
    (root / "run.json").write_text(json.dumps(run))
    return root


def test_family_rule_and_report_files(tmp_path: Path) -> None:
    """Results without item-level files (older runs): dataset-level tests only, clearly marked."""
    a = write_results(tmp_path / "a", "eos+causal", 0.02)
    b = write_results(tmp_path / "b", "mean+bidirectional", 0.0)
    summary = compare([a, b], tmp_path / "report", plots=False)
    assert summary["families"]["Classification"]["tested"] and not summary["families"]["STS"]["tested"]
    rows = {t["family"]: t for t in summary["family_tests"]}
    wilcoxon = rows["Classification"]["wilcoxon"]
    assert wilcoxon["rank_biserial"] == pytest.approx(1.0) and wilcoxon["pvalue"] == pytest.approx(2 / 32)
    assert wilcoxon["floor"] == pytest.approx(2 / 32) and not wilcoxon["can_reject"]
    assert not rows["STS"]["wilcoxon"]["paper_rule"]
    fallback = rows["Classification"]["hierarchical"]
    assert fallback["method"] == "t-test over 5 datasets" and fallback["ci95"][0] > 0
    assert all(not t["pvalue"] for t in summary["dataset_tests"])  # nothing to resample within a dataset
    for name in ("report.md", "scores.csv", "stats.json"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    csv_rows = list(csv.DictReader((tmp_path / "report" / "scores.csv").open()))
    assert len(csv_rows) == 9 and csv_rows[0]["data_used"] == "10/50 texts"
    report = (tmp_path / "report" / "report.md").read_text()
    assert "cannot reject with 4 datasets** (paper: not tested)" in report and "10/50 texts" in report
    assert "no item-level results for eos+causal, mean+bidirectional" in report


def test_intersection_warns_and_lists_dropped(tmp_path: Path) -> None:
    a = write_results(tmp_path / "a", "eos+causal", 0.02)
    b = write_results(tmp_path / "b", "latent+causal", 0.0, skip=("STS1",))
    with pytest.warns(UserWarning, match=r"dropped eos\+causal: STS1"):
        summary = compare([a, b], tmp_path / "report", plots=False)
    assert "STS1" not in summary["datasets"] and summary["families"]["STS"]["n"] == 3
    assert "STS1" in (tmp_path / "report" / "report.md").read_text()


def test_corrupt_and_empty_files_are_named(tmp_path: Path) -> None:
    a = write_results(tmp_path / "a", "eos+causal", 0.0)
    (a / "STS2.json").write_text("{not json")
    with pytest.raises(ResultsError, match=r"STS2\.json: corrupt JSON"):
        load_results(a)
    (a / "STS2.json").write_text("")
    with pytest.raises(ResultsError, match=r"STS2\.json: empty file"):
        load_results(a)
    (a / "run.json").write_text("")
    b = write_results(tmp_path / "b", "mean+causal", 0.0)
    assert main(["compare", str(a), str(b), "--output", str(tmp_path / "r")]) == 2


def test_cli_compare_with_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_results(tmp_path / "a", "eos+causal", 0.02)
    b = write_results(tmp_path / "b", "multilayer+bidirectional", 0.0)
    assert main(["compare", str(a), str(b), "--output", str(tmp_path / "r")]) == 0
    for name in ("family_means.png", "heatmap.png", "report.md", "scores.csv", "stats.json"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    out = capsys.readouterr().out
    # one run per design and no seed replicates: a difference of two checkpoints, not of designs
    assert "Classification (5 datasets)" in out
    assert "  these two checkpoints differ: eos+causal ahead of multilayer+bidirectional by" in out
    assert "better than" not in out
