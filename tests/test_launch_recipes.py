"""The cluster recipes: the Slurm array file and the README's commands parse, render and agree
with the grid (array size = the runs ``--dry-run`` prints; shards 1..N take one run each)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser

from poolattn.cli import build_parser, main
from poolattn.experiment import load_experiment_config
from poolattn.experiment.workers import select_runs

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "configs" / "slurm" / "experiment.sbatch"
BIN = Path(sys.executable).parent


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Running the study on a cluster")
    end = text.find("\n## ", start + 3)
    return text[start : end if end > 0 else None]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[list[str]]:
    """Each command of a bash block as words (continuations joined, env assignments dropped)."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" > ")[0].split(" #")[0].strip().rstrip("&").strip()
        if not line or line.startswith(("for ", "done", "wait", "#")):
            continue
        words = shlex.split(line)
        while words and re.match(r"^[A-Z_]+=", words[0]):
            words = words[1:]
        if words:
            out.append(words)
    return out


def dry_run_count(config: str, capsys: pytest.CaptureFixture[str]) -> int:
    assert main(["experiment", str(ROOT / config), "--dry-run"]) == 0
    return int(re.search(r"^runs \((\d+)\):$", capsys.readouterr().out, flags=re.M).group(1))


def test_sbatch_is_valid_bash_and_its_array_matches_the_grid(capsys: pytest.CaptureFixture[str]) -> None:
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    text = SBATCH.read_text()
    first, last = map(int, re.search(r"^#SBATCH --array=(\d+)-(\d+)$", text, flags=re.M).groups())
    default = re.search(r"^CONFIG=\$\{1:-(\S+)\}$", text, flags=re.M).group(1)
    runs = dry_run_count(default, capsys)
    assert (first, last) == (1, runs)  # one array task per run of the default config
    config = load_experiment_config(ROOT / default)
    picked = [select_runs(config.runs(), shard=(k, runs)) for k in range(first, last + 1)]
    assert all(len(p) == 1 for p in picked)  # task K of N: exactly one run
    assert sorted(p[0].name for p in picked) == sorted(r.name for r in config.runs())


@pytest.mark.parametrize("deepspeed", [False, True])
def test_sbatch_renders_the_launch_command(tmp_path: Path, deepspeed: bool) -> None:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (stubs / "accelerate").write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path}/launched\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURM_ARRAY_TASK_COUNT": "5",
        "SLURM_GPUS_ON_NODE": "4",
    }
    args = []
    if deepspeed:
        env["ACCELERATE_CONFIG"] = "configs/accelerate/deepspeed-zero3.yaml"
        args = ["configs/paper-mistral-7b.toml", "--set", "training.steps=500"]
    subprocess.run(["bash", str(SBATCH), *args], cwd=ROOT, env=env, check=True, capture_output=True)
    words = (tmp_path / "launched").read_text().splitlines()
    assert words[0] == "launch"
    launched = launch_command_parser().parse_args(words[1:])
    assert launched.num_processes == 4 and launched.num_machines == 1 and launched.main_process_port == 29502
    cluster = load_config_from_file(str(ROOT / launched.config_file))
    assert cluster.distributed_type.value == ("DEEPSPEED" if deepspeed else "MULTI_GPU")
    assert launched.module and launched.training_script == "poolattn.cli"
    poolattn_args = launched.training_script_args
    assert poolattn_args[:2] == ["experiment", args[0] if args else "configs/paper-qwen2-0.5b.toml"]
    assert poolattn_args[2:4] == ["--shard", "2/5"] and poolattn_args[4:] == args[1:]
    build_parser().parse_args(poolattn_args)


def test_readme_cluster_commands_parse_and_name_real_files() -> None:
    section = readme_section()
    blocks = bash_blocks(section)
    assert len(blocks) >= 5
    seen = {"poolattn": 0, "accelerate": 0, "sbatch": 0}
    for block in blocks:
        subprocess.run(["bash", "-n"], input=block, text=True, check=True)
        for words in commands(block):
            if words[0].startswith("RUNS=$("):
                continue  # executed in the next test
            seen[words[0]] = seen.get(words[0], 0) + 1
            if words[0] == "poolattn":
                build_parser().parse_args(words[1:])
            elif words[0] == "accelerate":
                launched = launch_command_parser().parse_args(words[2:])
                load_config_from_file(str(ROOT / launched.config_file))
                build_parser().parse_args(launched.training_script_args)
            elif words[0] == "sbatch":
                assert str(SBATCH.relative_to(ROOT)) in words
            for word in words:
                word = word.split("=", 1)[-1]
                if word.startswith("configs/") and "$" not in word:
                    assert (ROOT / word).exists(), word
    assert seen["poolattn"] >= 4 and seen["accelerate"] >= 2 and seen["sbatch"] >= 2
    for name in re.findall(r"configs/accelerate/[\w-]+\.yaml", section):
        load_config_from_file(str(ROOT / name))


def test_readme_array_sizes_equal_the_dry_run_counts(capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    checked = 0
    for block in bash_blocks(readme_section()):
        if "RUNS=$(" not in block:
            continue
        config = re.search(r"^CONFIG=(\S+)$", block, flags=re.M).group(1)
        count = re.search(r"^RUNS=.*$", block, flags=re.M).group(0)
        script = f"CONFIG={config}\n{count}\necho $RUNS"
        printed = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
        assert printed.returncode == 0, printed.stderr
        assert int(printed.stdout) == dry_run_count(config, capsys) > 0
        assert 'sbatch --array=1-"$RUNS"' in block
        checked += 1
    assert checked == 2  # DDP per node, and DeepSpeed for 7B
