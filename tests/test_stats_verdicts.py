"""Verdicts in words, seeds as replicates, Holm scope, planning (issue 11; issue 13 acceptance 5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from stats_helpers import noisy, write_item_results

from poolattn.cli import main
from poolattn.stats import compare
from poolattn.stats.power import plan

FAMILIES = {"STS": 3, "Retrieval": 2}
FORBIDDEN = ("no difference", "not significant", "no pairwise difference")


def verdicts(summary: dict) -> dict[tuple[str, str, str], dict]:
    return {(t["family"], t["model_a"], t["model_b"]): t["verdict"] for t in summary["family_tests"]}


def test_every_family_undecided_says_what_could_be_detected(tmp_path: Path) -> None:
    a = write_item_results(tmp_path / "a", "eos+causal", FAMILIES, noisy(20, noise=0.3), seed=1)
    b = write_item_results(tmp_path / "b", "latent+causal", FAMILIES, noisy(20, noise=0.3), seed=2)
    summary = compare([a, b], tmp_path / "r", plots=False)
    found = verdicts(summary)
    assert set(found) == {(f, "eos+causal", "latent+causal") for f in FAMILIES}
    for (family, _, _), v in found.items():
        row = next(t for t in summary["family_tests"] if t["family"] == family)
        mde = row["hierarchical"]["mde"] * 100
        assert v["kind"] == "undecided"
        assert v["text"].startswith(f"undecided: only differences ≥ {mde:.2f} points could be detected")
        assert mde > 1.0  # 20 noisy items per dataset cannot resolve a one-point difference
    report = (tmp_path / "r" / "report.md").read_text()
    assert "| STS | 3 | eos+causal vs latent+causal | undecided | undecided: only differences ≥" in report
    for phrase in FORBIDDEN:
        assert phrase not in report.lower()


def test_one_pair_clearly_better(tmp_path: Path) -> None:
    """Two trained designs with seed replicates: a design-level "better", naming what it accounts for."""
    families = {"STS": 4, "Retrieval": 4}
    dirs, names = [], []
    for design, shift, seeds in (
        ("multilayer+bidirectional", 0.1, 2),
        ("eos+causal", 0.0, 2),
        ("latent+causal", 0.0, 1),
    ):
        for s in range(seeds):
            seed = len(dirs) + 1
            dirs.append(
                write_item_results(
                    tmp_path / f"{seed}", design, families, noisy(100, shift=shift, noise=0.1), seed=seed
                )
            )
            names.append(f"{design}-seed{s}")
    summary = compare(dirs, tmp_path / "r", plots=False, names=names)
    found = verdicts(summary)
    for family in families:
        for loser in ("eos+causal", "latent+causal"):
            v = found[(family, "multilayer+bidirectional", loser)]
            assert v["kind"] == "better" and v["winner"] == "multilayer+bidirectional"
            assert v["text"].startswith(f"multilayer+bidirectional better than {loser} by ")
            assert "t-test over 4 datasets" in v["text"] and "Holm p = " in v["text"]
            assert "seed-to-seed variance pooled over multilayer+bidirectional, eos+causal" in v["text"]
        assert found[(family, "eos+causal", "latent+causal")]["kind"] != "better"
    # the Wilcoxon column shows why the paper's test could not have said it
    wilcoxon = next(t for t in summary["family_tests"] if t["family"] == "STS")["wilcoxon"]
    assert wilcoxon["floor"] == pytest.approx(2 / 2**4) and not wilcoxon["can_reject"]
    assert "cannot reject with 4 datasets" in (tmp_path / "r" / "report.md").read_text()


def test_one_seed_per_design_is_a_comparison_of_checkpoints(tmp_path: Path) -> None:
    """Issue 22 acceptance 2: no seed replicate anywhere, so no design-level "better"."""
    families = {"STS": 4}
    a = write_item_results(tmp_path / "a", "eos+causal", families, noisy(100, shift=0.1, noise=0.1), seed=1)
    b = write_item_results(tmp_path / "b", "latent+causal", families, noisy(100, noise=0.1), seed=2)
    summary = compare([a, b], tmp_path / "r", plots=False)
    (row,) = summary["family_tests"]
    assert row["verdict"]["kind"] == "checkpoints" and row["verdict"]["winner"] is None
    assert row["verdict"]["text"].startswith(
        "these two checkpoints differ: eos+causal ahead of latent+causal"
    )
    assert "not seed-to-seed variance" in row["verdict"]["text"]
    assert "better" not in (tmp_path / "r" / "report.md").read_text().split("## Methods")[0]
    # the same pair with the baseline declared a fixed checkpoint: only one side has a seed,
    # still unmeasured; with both fixed (published models) the checkpoints are the designs
    both = compare([a, b], tmp_path / "r2", plots=False, fixed=["eos+causal", "latent+causal"])
    assert both["family_tests"][0]["verdict"]["kind"] == "better"
    assert "no seed term (fixed checkpoints)" in both["family_tests"][0]["verdict"]["text"]


def test_model_compared_with_itself_is_practically_equivalent(tmp_path: Path) -> None:
    a = write_item_results(tmp_path / "a", "eos+causal", FAMILIES, noisy(40), seed=1)
    shutil.copytree(a, tmp_path / "copy")
    summary = compare([a, tmp_path / "copy"], tmp_path / "r", plots=False)
    for row in summary["family_tests"]:
        h = row["hierarchical"]
        assert h["diff"] == 0 and h["ci95"] == [0.0, 0.0] and h["pvalue"] == 1.0
        assert row["bayes"]["p_equivalent"] == 1.0
        assert row["verdict"]["kind"] == "equivalent"
        assert "practically equivalent within ±1.00 points" in row["verdict"]["text"]
    for row in summary["dataset_tests"]:
        assert row["diff"] == 0 and row["ci95"] == [0.0, 0.0] and row["pvalue"] == 1.0


def test_seeds_are_one_design_with_their_spread(tmp_path: Path) -> None:
    dirs = [
        write_item_results(tmp_path / f"x{s}", "eos+causal", FAMILIES, noisy(30, shift=0.02 * s), seed=s)
        for s in range(3)
    ]
    dirs.append(write_item_results(tmp_path / "y", "latent+causal", FAMILIES, noisy(30, shift=0.02), seed=9))
    names = ["eos+causal-seed0", "eos+causal-seed1", "eos+causal-seed2", "latent+causal-seed0"]
    summary = compare(dirs, tmp_path / "r", plots=False, names=names)
    assert summary["designs"]["eos+causal"] == {"runs": names[:3], "seeds": 3}
    assert list(summary["designs"]) == ["eos+causal", "latent+causal"]
    task = "STS0"
    runs = summary["datasets"][task]["runs"]["eos+causal"]
    assert len(runs) == 3 and summary["datasets"][task]["scores"]["eos+causal"] == pytest.approx(
        np.mean(runs)
    )
    assert summary["datasets"][task]["seed_sd"]["eos+causal"] == pytest.approx(np.std(runs, ddof=1))
    assert summary["datasets"][task]["seed_sd"]["latent+causal"] is None
    sts = summary["families"]["STS"]
    assert sts["seed_sd"]["eos+causal"] > 0.005  # seeds shifted by 2 points each
    row = next(t for t in summary["family_tests"] if t["family"] == "STS")
    assert "seed-to-seed variance pooled over eos+causal" in row["hierarchical"]["levels"]
    assert row["below_seed_spread"] == (abs(row["diff"]) < sts["seed_sd"]["eos+causal"])
    report = (tmp_path / "r" / "report.md").read_text()
    assert (
        "## Seed-to-seed spread" in report
        and "eos+causal-seed0, eos+causal-seed1, eos+causal-seed2" in report
    )


def test_holm_scope_and_plan_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_item_results(tmp_path / "a", "eos+causal", FAMILIES, noisy(30), seed=1)
    b = write_item_results(tmp_path / "b", "latent+causal", FAMILIES, noisy(30, shift=0.01), seed=2)
    args = ["compare", str(a), str(b), "--output", str(tmp_path / "r"), "--no-plots"]
    assert main([*args, "--holm-scope", "global", "--plan", "--target-effect", "2"]) == 0
    out = capsys.readouterr().out
    assert "Holm scope: global" in out and "items/dataset needed" in out
    stats = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert stats["settings"]["holm_scope"] == "global"
    assert "Holm correction global-wide" in (tmp_path / "r" / "report.md").read_text()
    for t in stats["family_tests"]:  # the plan's MDE now is the verdict's MDE, at the Holm level
        h = t["hierarchical"]
        now = plan(t["power"], 0.02, 0.05, 0.8, h["tests"])["mde_now"]
        assert h["tests"] == 2 and now == pytest.approx(h["mde"])
    with pytest.raises(SystemExit):  # argparse rejects an unknown scope
        main([*args, "--holm-scope", "nope"])


def test_plan_inverts_the_mde() -> None:
    per_item = 0.02
    c = {
        "datasets": 6,
        "items": 100.0,
        "dataset_var": per_item / 100,
        "per_item_var": per_item,
        "seed_var": None,
        "seed_df": None,
        "seeds": {"a": 1, "b": 1},
        "trained": ["a", "b"],
        "se": float(np.sqrt(per_item / 100 / 6)),
        "df": 5.0,
    }
    now = plan(c, 1.0)["mde_now"]
    at_now = plan(c, now)
    assert at_now["items"] == pytest.approx(100, abs=1) and at_now["datasets"] == 6
    half = plan(c, now / 2)
    assert half["items"] == pytest.approx(400, abs=2)  # df stays K - 1: SE must halve
    assert 6 < half["datasets"] < 24  # more datasets also add degrees of freedom
    assert half["seeds"] is None and "seed variance unknown" in half["seeds_note"]
    assert plan(c, now, tests=15)["items"] > 100  # the Holm level needs more
    c_tau = {**c, "dataset_var": 0.001 + per_item / 100, "seed_var": 1e-9, "seed_df": 2}
    tight = plan(c_tau, 0.004)
    assert tight["items"] is None and tight["seeds"] is None  # neither items nor seeds beat tau^2 / K
    assert tight["datasets"] > 6  # only more datasets average the heterogeneity away
    noisy_seeds = {**c, "seed_var": 1e-4, "seed_df": 2, "seeds": {"a": 2, "b": 2}}
    assert plan(noisy_seeds, 0.001)["datasets"] is None  # seed noise shared by all datasets


def test_identical_scores_on_a_handful_of_items_are_not_called_equivalent(tmp_path: Path) -> None:
    a = write_item_results(tmp_path / "a", "eos+causal", FAMILIES, noisy(8), seed=1)
    shutil.copytree(a, tmp_path / "copy")
    summary = compare([a, tmp_path / "copy"], tmp_path / "r", plots=False)
    for row in summary["family_tests"]:
        assert row["verdict"]["kind"] == "undecided"
        assert row["verdict"]["text"].startswith(
            "undecided: 8 items in a dataset are too few to decide either way"
        )


def test_one_directory_labelled_as_two_designs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 28 item 10: ``compare DIR DIR --designs a,b`` runs and calls a and b equivalent."""
    a = write_item_results(tmp_path / "a", "eos+causal", FAMILIES, noisy(40), seed=1)
    args = ["compare", str(a), str(a), "--designs", "a,b", "--output", str(tmp_path / "r"), "--no-plots"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("a and b practically equivalent within ±1.00 points") == len(FAMILIES)
    stats = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert {d: v["seeds"] for d, v in stats["designs"].items()} == {"a": 1, "b": 1}
    assert [m["design"] for m in stats["models"]] == ["a", "b"]


def test_mde_beyond_the_metric_range_says_the_data_cannot_decide(tmp_path: Path) -> None:
    """Issue 28 item 7: an MDE over 100 points is not reported as a detectable difference."""
    families = {"Retrieval": 2}
    a = write_item_results(tmp_path / "a", "eos+causal", families, noisy(30, noise=0.6), seed=1)
    b = write_item_results(
        tmp_path / "b", "latent+causal", families, noisy(30, shift=0.05, noise=0.6), seed=2
    )
    summary = compare([a, b], tmp_path / "r", plots=False)
    (row,) = summary["family_tests"]
    assert row["hierarchical"]["mde"] > 1.0  # two datasets: t on 1 df
    assert row["verdict"]["text"].startswith("undecided: this data cannot decide at all")
    assert "could be detected" not in row["verdict"]["text"]
    from poolattn.experiment.summary import summarise

    assert any("cannot decide at all" in line for line in summarise(summary))


def test_rope_per_family_and_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_item_results(tmp_path / "a", "eos+causal", {"Clustering": 3, "STS": 3}, noisy(30), seed=1)
    b = write_item_results(tmp_path / "b", "latent+causal", {"Clustering": 3, "STS": 3}, noisy(30), seed=2)
    summary = compare([a, b], tmp_path / "r", plots=False)
    assert summary["families"]["Clustering"]["rope"] == pytest.approx(0.02)
    assert summary["families"]["STS"]["rope"] == pytest.approx(0.01)
    args = ["compare", str(a), str(b), "--output", str(tmp_path / "r2"), "--no-plots"]
    assert main([*args, "--rope", "0.5,Clustering=3"]) == 0
    assert "ROPE (points) Clustering ±3, STS ±0.5" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([*args, "--rope", "Clustering=big"])
    assert exc.value.code == 2


def test_nemenyi_only_after_friedman_rejects(tmp_path: Path) -> None:
    fams = {"STS": 4}
    dirs = [
        write_item_results(tmp_path / d, d, fams, noisy(30, noise=0.3), seed=i)
        for i, d in enumerate(("eos+causal", "latent+causal", "mean+causal"))
    ]
    summary = compare(dirs, tmp_path / "r", plots=False)
    info = summary["families"]["STS"]
    assert info["friedman"]["pvalue_f"] >= 0.05 and info["nemenyi"] is None
    assert (
        "does not reject at alpha 0.05, so no Nemenyi post-hoc test"
        in (tmp_path / "r" / "report.md").read_text()
    )
