"""Issue 11, acceptance 5: the experiment report uses the verdicts; seeds are one design.

The fast test runs a tiny random Llama through the whole grid (two designs) with two seeds; the
slow one runs ``configs/tiny.toml``'s multilayer design (its seeds differ from the first step:
the head's initialisation) on the real SmolLM2 with two seeds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import save_tiny_backbone

from poolattn.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TASKS = ["STSBenchmark", "SICK-R", "BIOSSES", "MSRP"]


def check_report(out: Path, designs: list[str], seeds: list[int]) -> str:
    """The report groups each trained design's seeds and shows their spread; returns it."""
    report = (out / "report.md").read_text()
    stats = json.loads((out / "comparison" / "stats.json").read_text())
    expected = {d: [f"{d}-seed{s}" for s in seeds] for d in designs}
    expected["untrained-eos+causal"] = [f"untrained-eos+causal-seed{seeds[0]}"]
    assert {d: v["runs"] for d, v in stats["designs"].items()} == expected
    heads = [line for line in report.splitlines() if line.startswith("## ")]
    assert heads[:4] == [
        "## Summary",
        "## Verdicts per family: every pair of designs",
        "## Positive control: each trained design vs the untrained baseline",
        "## Comparison",
    ]
    for d in designs:  # positive control rows: every trained design vs the baseline
        assert re.search(
            rf"\| {re.escape(d)} vs untrained-eos\+causal \| (\*\*better\*\*|\*\*equivalent\*\*|undecided) \|",
            report,
        )
    seed_table = report.split("### Seed-to-seed spread", 1)[1].split("###", 1)[0]
    for d in designs:
        row = next(line for line in seed_table.splitlines() if line.startswith(f"| {d} |"))
        assert f"| {d} | {len(seeds)} | {', '.join(expected[d])} |" in row
        sd = stats["families"]["STS"]["seed_sd"][d]
        assert sd is not None and f"{sd * 100:.2f}" in row
    assert stats["families"]["STS"]["seed_sd"]["untrained-eos+causal"] is None
    for family in stats["families"]:  # one verdict per family and pair, in words
        rows = [t for t in stats["family_tests"] if t["family"] == family]
        assert len(rows) == len(expected) * (len(expected) - 1) // 2
        assert all(t["verdict"]["kind"] in ("better", "equivalent", "undecided") for t in rows)
    assert "no pairwise difference" not in report.lower()
    assert (out / "comparison" / "family_means.png").stat().st_size > 1000
    return report


@pytest.fixture
def seeded_experiment(tmp_path: Path, tokenizer, data_dir: Path) -> Path:
    """A tiny random Llama, two designs x two seeds, plus the untrained baseline."""
    model_dir = save_tiny_backbone(tmp_path / "tiny-llama", tokenizer)
    lines = (data_dir / "train" / "snli_triples.jsonl").read_text().splitlines()[:64]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "exp.toml"
    config.write_text(
        f"""
[experiment]
output_dir = "{tmp_path / "out"}"
designs = ["eos+causal", "mean+bidirectional"]
seeds = [0, 1]
untrained = ["eos+causal"]
[model]
base = "{model_dir}"
max_length = 24
[data]
train = ["pairs.jsonl"]
[training]
steps = 3
batch_size = 4
mini_batch_size = 8
learning_rate = 1e-3
warmup_steps = 0
save_every = 3
progress = false
[lora]
r = 2
alpha = 4
target_modules = ["q_proj", "v_proj"]
[evaluation]
local_data = "{data_dir}"
tasks = {json.dumps(TASKS)}
max_items = 24
min_datasets = 2
"""
    )
    return config


@pytest.mark.needs_data
def test_two_seeds_are_one_design_in_the_report(seeded_experiment: Path) -> None:
    assert main(["experiment", str(seeded_experiment)]) == 0
    report = check_report(seeded_experiment.parent / "out", ["eos+causal", "mean+bidirectional"], [0, 1])
    # the report says which dtype ran, not only the setting: auto resolves per machine
    assert re.search(r"max length 24, dtype auto \(computed in (bfloat16|float32)\)", report)


# ~30 s on a 2-core AVX2 CPU (~50 s with a cold embedding cache)
@pytest.mark.needs_model
@pytest.mark.needs_data
@pytest.mark.slow
def test_tiny_config_with_two_seeds(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "tiny"
    overrides = {
        "experiment.output_dir": json.dumps(str(out)),
        "experiment.designs": '["multilayer+bidirectional"]',  # two designs x two seeds: the fast test
        "experiment.seeds": "[0, 1]",
        "evaluation.tasks": json.dumps(TASKS),
    }
    args = [x for key, value in overrides.items() for x in ("--set", f"{key}={value}")]
    assert main(["experiment", str(CONFIGS / "tiny.toml"), *args]) == 0
    report = check_report(out, ["multilayer+bidirectional"], [0, 1])
    assert "max_items=4" in report and "## Setup, time and throughput" in report
