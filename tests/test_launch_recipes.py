"""The cluster recipes: the submitit job array (one task per run, requeued on preemption) and the
README's commands parse, render and agree with the grid."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser
from helpers import refuses
from submitit.core.utils import DelayedSubmission

from poolattn.cli import build_parser, main
from poolattn.experiment import load_experiment_config
from poolattn.experiment.state import read_state
from poolattn.experiment.submit import GridTask, load_cluster_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "configs" / "slurm" / "submitit.toml"


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


def fake_slurm(tmp_path: Path) -> dict[str, str]:
    """An ``sbatch`` that keeps the file it is given and answers as Slurm does."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "sbatch").write_text(
        '#!/bin/bash\ncp "$1" ' + str(tmp_path) + '/sbatched\necho "Submitted batch job 4242"\n'
    )
    (stubs / "srun").write_text("#!/bin/bash\nexit 0\n")  # submitit looks for it before submitting
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    return {"PATH": f"{stubs}:{os.environ['PATH']}"}


@pytest.mark.parametrize("config", ["configs/paper-qwen2-0.5b.toml", "configs/tiny.toml"])
def test_submit_builds_one_slurm_array_task_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], config: str
) -> None:
    for key, value in fake_slurm(tmp_path).items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    overrides = ["--set", f"experiment.output_dir={json.dumps(str(out))}"]
    runs = [r.name for r in load_experiment_config(ROOT / config).runs()]
    assert dry_run_count(config, capsys) == len(runs)
    assert main(["experiment", str(ROOT / config), *overrides, "--submit", str(CLUSTER)]) == 0
    assert f"submitted {len(runs)} task(s)" in capsys.readouterr().out
    sbatch = (tmp_path / "sbatched").read_text()
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?$", sbatch, flags=re.M))
    assert flags["array"] == f"0-{len(runs) - 1}%{len(runs)}"  # one task per run of the grid
    assert flags["requeue"] == "" and flags["signal"] == "USR2@120"  # requeue ahead of a preemption
    assert flags["gpus-per-node"] == "8" and flags["nodes"] == "1" and flags["time"] == "1440"
    assert "-m submitit.core._submit" in sbatch
    tasks = [
        DelayedSubmission.load(out / "submitit" / f"4242_{i}_submitted.pkl").function
        for i in range(len(runs))
    ]
    assert [t.run for t in tasks] == runs  # task i runs the i-th run, in plan order
    for task in tasks:
        words = task.command()
        launched = launch_command_parser().parse_args(words[3:])
        assert launched.num_processes == 8 and launched.num_machines == 1 and launched.module
        cluster = load_config_from_file(launched.config_file)
        assert cluster.distributed_type.value == "MULTI_GPU"
        args = launched.training_script_args
        assert args[:4] == ["experiment", str(ROOT / config), "--runs", task.run]
        build_parser().parse_args(args)
        again = task.checkpoint()  # what submitit requeues on preemption: the same task
        assert isinstance(again, DelayedSubmission) and again.function == task


def test_cluster_file_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    refuses(
        load_cluster_config, bad, 'cluster = "pbs"\n', r"c.toml: cluster: 'pbs' is not one of slurm, local"
    )
    no_file = r"c.toml: accelerate_config: .*nowhere.yaml not found"
    refuses(load_cluster_config, bad, 'accelerate_config = "nowhere.yaml"\n', no_file)
    assert load_cluster_config(CLUSTER).processes == 8
    assert GridTask("c.toml", "r").command()[1:4] == ["-m", "poolattn.cli", "experiment"]


def test_a_failed_debug_task_exits_nonzero_without_a_debugger(tmp_path: Path, monkeypatch, capsys) -> None:
    """submitit's debug executor opens pdb when result() meets a failure, which hangs a
    non-interactive run; the command waits on exception() and reports the failed runs."""
    import pdb

    opened: list[int] = []
    monkeypatch.setattr(pdb, "post_mortem", lambda *a, **k: opened.append(1))
    monkeypatch.setattr(GridTask, "command", lambda self: [sys.executable, "-c", "raise SystemExit(3)"])
    cluster = tmp_path / "debug.toml"
    cluster.write_text('cluster = "debug"\n')
    out = json.dumps(str(tmp_path / "out"))
    args = ["experiment", str(ROOT / "configs" / "tiny.toml"), "--submit", str(cluster)]
    assert main([*args, "--set", f"experiment.output_dir={out}"]) == 1
    assert not opened
    assert "3 task(s) failed" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.needs_data
def test_submitit_debug_executor_runs_each_run_once(tmp_path: Path, tokenizer, data_dir) -> None:
    """The same submission run by submitit's debug executor on this machine: every run trained
    and evaluated once, by its own task, and the report written."""
    from helpers import save_tiny_backbone

    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    cluster = tmp_path / "debug.toml"
    cluster.write_text('cluster = "debug"\n[executor]\ntimeout_min = 30\n')
    out = tmp_path / "out"
    sets = {
        "experiment.output_dir": json.dumps(str(out)),
        "experiment.designs": '["eos+causal"]',
        "model.base": json.dumps(str(base)),
        "evaluation.local_data": json.dumps(str(data_dir)),
        "evaluation.tasks": '["STSBenchmark"]',
    }
    args = ["experiment", str(ROOT / "configs" / "tiny.toml"), "--submit", str(cluster)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "poolattn.cli", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("eos+causal-seed0", "untrained-eos+causal-seed0"):
        state = read_state(out / name)
        assert state["status"] == "done" and len(state["workers"]) == 1
    assert (out / "report.md").exists()


def test_readme_cluster_commands_parse_and_name_real_files() -> None:
    section = readme_section()
    blocks = bash_blocks(section)
    assert len(blocks) >= 5
    seen = {"poolattn": 0, "accelerate": 0, "submit": 0}
    for block in blocks:
        subprocess.run(["bash", "-n"], input=block, text=True, check=True)
        for words in commands(block):
            seen[words[0]] = seen.get(words[0], 0) + 1
            if words[0] == "poolattn":
                build_parser().parse_args(words[1:])
                seen["submit"] += "--submit" in words
            elif words[0] == "accelerate":
                launched = launch_command_parser().parse_args(words[2:])
                load_config_from_file(str(ROOT / launched.config_file))
                build_parser().parse_args(launched.training_script_args)
            for word in words:
                word = word.split("=", 1)[-1]
                if word.startswith("configs/") and "$" not in word:
                    assert (ROOT / word).exists(), word
    assert seen["poolattn"] >= 6 and seen["accelerate"] >= 2 and seen["submit"] >= 2
    for name in re.findall(r"configs/accelerate/[\w-]+\.yaml", section):
        load_config_from_file(str(ROOT / name))


def test_readme_zero3_recipe_makes_a_cluster_file_that_loads(tmp_path: Path) -> None:
    """The README's sed line turns the cluster file into a DeepSpeed ZeRO-3 one that loads."""
    block = next(b for b in bash_blocks(readme_section()) if "zero3.toml" in b)
    line = next(li for li in block.splitlines() if li.startswith("sed "))
    line = line.replace("configs/slurm/submitit.toml", str(CLUSTER)).replace(
        "> zero3.toml", f"> {tmp_path}/z.toml"
    )
    subprocess.run(["bash", "-c", line], cwd=ROOT, check=True)
    cluster = load_cluster_config(tmp_path / "z.toml")
    assert cluster.accelerate_config == str(ROOT / "configs" / "accelerate" / "deepspeed-zero3.yaml")
    assert load_config_from_file(cluster.accelerate_config).distributed_type.value == "DEEPSPEED"
