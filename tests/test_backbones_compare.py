"""Across backbones (issue 16): two experiments side by side, ranking agreement per family.

Two made-up experiment folders in the layout ``poolattn experiment`` writes: STS keeps the
same design order on both backbones, Classification reverses it, and "Clustering" has a
different order on each side with differences too small for either backbone to decide.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from poolattn.cli import main
from poolattn.stats.backbones import (
    backbone_agreement,
    compare_backbones,
    kendall,
    load_experiment,
    relation,
)
from poolattn.stats.compare import ResultsError

DESIGNS = [
    "eos+causal",
    "latent+causal",
    "multilayer+causal",
    "latent+bidirectional",
    "multilayer+bidirectional",
]
FAMILIES = {"STS": 6, "Classification": 6, "Clustering": 5}
NOISE = [0.04, -0.03, 0.02, -0.04, 0.03, -0.02]  # larger than the 1-point ROPE


def score(backbone: str, family: str, design: int, dataset: int) -> float:
    """Design ``design`` (0 = best on the first backbone) on one dataset of one family."""
    base = 0.4 + 0.02 * dataset
    if family == "STS":
        return base - 0.05 * design  # same order everywhere, large gaps
    if family == "Classification":
        sign = 1 if backbone == "smollm2-135m" else -1
        return base - sign * 0.05 * design  # reversed on the second backbone
    # Clustering: an order that differs by backbone, buried in dataset-level noise.
    order = [0, 1, 2, 3, 4] if backbone == "smollm2-135m" else [1, 0, 3, 2, 4]
    return base + 0.0005 * order[design] + NOISE[(dataset + design) % len(NOISE)]


def write_experiment(root: Path, backbone: str, extra_run: str | None = None) -> Path:
    """An experiment folder: ``<run>/state.json`` (done) and ``<run>/eval`` (run.json + tasks)."""
    runs = [(f"{d}-seed0", i) for i, d in enumerate(DESIGNS)] + [("untrained-eos+causal-seed0", 0)]
    if extra_run:
        runs.append((extra_run, 2))
    for name, index in runs:
        eval_dir = root / name / "eval"
        eval_dir.mkdir(parents=True)
        tasks = {}
        for family, n in FAMILIES.items():
            for k in range(n):
                task = f"{family}{k}"
                value = score(backbone, family, index, k) - (0.3 if name.startswith("untrained") else 0)
                (eval_dir / f"{task}.json").write_text(
                    json.dumps({"task_name": task, "scores": {"test": [{"main_score": value}]}})
                )
                tasks[task] = {"file": f"{task}.json", "family": family, "main_score_name": "score"}
        design = name.removeprefix("untrained-").rsplit("-seed", 1)[0]
        run = {"model": {"design": design, "base": backbone, "fingerprint": name}, "tasks": tasks}
        (eval_dir / "run.json").write_text(json.dumps(run))
        state = {"status": "done", "design": design, "eval_dir": str(eval_dir)}
        (root / name / "state.json").write_text(json.dumps(state))
    (root / "pending-run").mkdir()
    (root / "pending-run" / "state.json").write_text(json.dumps({"status": "running"}))
    return root


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("backbones")
    a = write_experiment(root / "quick", "smollm2-135m", extra_run="mean+causal-seed0")
    b = write_experiment(root / "quick-gemma3", "gemma3-270m")
    return compare_backbones(a, b, root / "report", n_resamples=200)


def test_kendall_matches_scipy_and_states_its_floor() -> None:
    a, b = [0.5, 0.4, 0.3, 0.2, 0.1], [0.45, 0.5, 0.2, 0.3, 0.1]
    k = kendall(a, b)
    expected = stats.kendalltau(a, b)
    assert k["tau"] == pytest.approx(expected.statistic) and k["pvalue"] == pytest.approx(expected.pvalue)
    assert k["n"] == 5 and k["min_pvalue"] == pytest.approx(2 / 120)
    assert kendall(a, a)["pvalue"] == pytest.approx(2 / 120)  # a perfect order reaches the floor
    assert math.isnan(kendall([0.1, 0.1], [0.2, 0.3])["tau"])  # constant: undefined, not an error


def test_relations() -> None:
    better = lambda winner: {"kind": "better", "winner": winner}  # noqa: E731
    equivalent, undecided = {"kind": "equivalent", "winner": None}, {"kind": "undecided", "winner": None}
    assert relation(better("x"), better("x"), "A", "B") == "agree"
    assert relation(better("x"), better("y"), "A", "B") == "flip"
    assert relation(equivalent, equivalent, "A", "B") == "agree"
    assert relation(better("x"), equivalent, "A", "B") == "differ"
    assert relation(better("x"), undecided, "A", "B") == "undecided on B"
    assert relation(undecided, equivalent, "A", "B") == "undecided on A"
    assert relation(undecided, undecided, "A", "B") == "undecided on both"
    ahead = lambda winner: {"kind": "checkpoints", "winner": None, "ahead": winner}  # noqa: E731
    assert relation(ahead("x"), better("x"), "A", "B") == "agree"
    assert relation(ahead("x"), ahead("y"), "A", "B") == "flip"


def test_same_order_agrees_and_a_reversed_order_flips(result: dict) -> None:
    sts, cls = result["families"]["STS"], result["families"]["Classification"]
    assert result["labels"] == ["smollm2-135m", "gemma3-270m"]
    assert sts["kendall"]["tau"] == pytest.approx(1.0) and sts["kendall"]["pvalue"] == pytest.approx(2 / 120)
    assert cls["kendall"]["tau"] == pytest.approx(-1.0)
    assert sts["best"] == {"smollm2-135m": "eos+causal", "gemma3-270m": "eos+causal"}
    assert cls["best"]["gemma3-270m"] == "multilayer+bidirectional"
    assert {p["relation"] for p in sts["pairs"]} == {"agree"} and len(sts["pairs"]) == 10
    assert {p["relation"] for p in cls["pairs"]} == {"flip"} and cls["relations"]["flip"] == 10
    assert all(p["same_direction"] for p in sts["pairs"]) and not any(
        p["same_direction"] for p in cls["pairs"]
    )
    pair = cls["pairs"][0]  # one seed per design: the checkpoints differ, no design-level "better"
    assert pair["smollm2-135m"]["kind"] == pair["gemma3-270m"]["kind"] == "checkpoints"
    assert pair["smollm2-135m"]["ahead"] == "eos+causal" and pair["gemma3-270m"]["ahead"] == "latent+causal"


def test_small_noisy_differences_stay_undecided(result: dict) -> None:
    clustering = result["families"]["Clustering"]
    assert clustering["kendall"]["tau"] < 1.0
    assert clustering["relations"]["undecided on both"] == 10
    assert not any(p["smollm2-135m"]["kind"] == "better" for p in clustering["pairs"])


def test_runs_untrained_and_report(result: dict, tmp_path: Path) -> None:
    assert "untrained-eos+causal" not in result["designs"] and len(result["designs"]) == 5
    assert "mean+causal-seed0" not in result["runs"]
    assert any("runs only on smollm2-135m: mean+causal-seed0" in n for n in result["notes"])
    report_dir = Path(result["backbones"]["smollm2-135m"]).parent / "report"
    text = (report_dir / "backbones.md").read_text()
    assert "## Ranking agreement per family" in text and "### STS (6 datasets on smollm2-135m" in text
    assert (
        "| eos+causal vs latent+causal | eos+causal ahead (checkpoints) | latent+causal ahead (checkpoints) | flip |"
        in text
    )
    assert (
        json.loads((report_dir / "backbones.json").read_text())["families"].keys()
        == result["families"].keys()
    )


def test_untrained_can_be_ranked_too(tmp_path: Path) -> None:
    a = write_experiment(tmp_path / "a", "smollm2-135m")
    b = write_experiment(tmp_path / "b", "gemma3-270m")
    out = compare_backbones(a, b, include_untrained=True, n_resamples=200)
    sts = out["families"]["STS"]
    assert (
        "untrained-eos+causal" in sts["designs"] and sts["ranks"]["gemma3-270m"]["untrained-eos+causal"] == 6
    )


def test_agreement_from_summaries_alone() -> None:
    """The pure core: two ``compare_models``-shaped summaries, no files."""

    def summary(means: dict[str, float], winner: str | None) -> dict:
        kind = "better" if winner else "undecided"
        test = {"family": "STS", "model_a": "x", "model_b": "y", "diff": means["x"] - means["y"]}
        test["verdict"] = {"kind": kind, "winner": winner}
        return {"families": {"STS": {"means": means, "datasets": ["d"]}}, "family_tests": [test]}

    out = backbone_agreement(
        summary({"x": 0.6, "y": 0.5}, "x"), summary({"x": 0.4, "y": 0.5}, None), "A", "B", ["x", "y"]
    )
    pair = out["STS"]["pairs"][0]
    assert pair["relation"] == "undecided on B" and not pair["same_direction"]
    assert out["STS"]["ranks"] == {"A": {"x": 1, "y": 2}, "B": {"y": 1, "x": 2}}


def test_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no finished run"):
        load_experiment(tmp_path)
    a = write_experiment(tmp_path / "a", "smollm2-135m")
    (tmp_path / "a" / "eos+causal-seed0" / "state.json").write_text("{oops")
    with pytest.raises(ResultsError, match=r"eos\+causal-seed0/state.json: corrupt JSON"):
        load_experiment(a)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_experiment(tmp_path / "a", "smollm2-135m")
    b = write_experiment(tmp_path / "b", "gemma3-270m")
    code = main(
        ["compare", "--backbones", str(a), str(b), "--output", str(tmp_path / "out"), "--resamples", "200"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "STS: Kendall's tau 1.00" in out and "Classification: Kendall's tau -1.00" in out
    assert (tmp_path / "out" / "backbones.md").exists()
    assert main(["compare", "--backbones", str(a), "--output", str(tmp_path / "x")]) == 2
    assert "two experiment folders" in capsys.readouterr().err
