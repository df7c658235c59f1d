"""Grid workers: atomic claims, takeover of dead workers' runs, shards, status, and two real
``poolattn experiment`` processes sharing configs/tiny.toml's grid (one killed mid-run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import save_tiny_backbone

from poolattn.cli import main
from poolattn.config import ConfigError
from poolattn.experiment import load_experiment_config
from poolattn.experiment.claims import (
    Worker,
    claim_path,
    generations,
    read_claim,
    try_claim,
)
from poolattn.experiment.status import format_status, grid_status
from poolattn.experiment.workers import parse_shard, run_grid, select_runs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def elsewhere(pid: int = 4242) -> Worker:
    """A worker on another machine: only its heartbeat tells whether it lives."""
    return Worker("node-b", pid, "node-b/boot/pidns", "1")


# ----------------------------------------------------------------------------- claims
def test_one_claim_wins_among_concurrent_workers(tmp_path: Path) -> None:
    winners: list[object] = []
    barrier = threading.Barrier(8)

    def contend(i: int) -> None:
        barrier.wait()
        claim = try_claim(tmp_path / "run", elsewhere(100 + i), timeout=60)
        if claim is not None:
            winners.append(claim)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert generations(tmp_path / "run") == [1]
    assert read_claim(tmp_path / "run")["worker"] == winners[0].data["worker"]


def test_live_claim_is_left_alone_and_stale_one_taken_over_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = try_claim(run, elsewhere(1), timeout=10)
    assert first is not None
    assert try_claim(run, elsewhere(2), timeout=10) is None  # fresh heartbeat: held
    assert try_claim(run, elsewhere(2), timeout=10, now=time.time() + 9) is None

    # the holder fell silent 20 s ago (timeout 10 s): eight workers race for the takeover
    silent = dict(first.data, heartbeat=time.time() - 20)
    claim_path(run, 1).write_text(json.dumps(silent))
    takers: list[object] = []
    barrier = threading.Barrier(8)

    def contend(pid: int) -> None:
        barrier.wait()
        taker = try_claim(run, elsewhere(pid), timeout=10)
        if taker is not None:
            takers.append(taker)

    threads = [threading.Thread(target=contend, args=(10 + i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(takers) == 1 and takers[0].generation == 2
    assert generations(run) == [1, 2]
    took = read_claim(run)["takeover_of"]
    assert took["generation"] == 1 and took["worker"] == "node-b:1" and "no heartbeat" in took["reason"]
    # the old holder notices on its next heartbeat and leaves the run alone
    assert first.beat() is False and first.lost.is_set()
    assert json.loads(claim_path(run, 1).read_text())["released"] is False


def test_dead_holder_on_this_machine_is_taken_over_at_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = Worker.current()
    dead = Worker(dead.host, int(done.stdout), dead.machine, "0")
    assert try_claim(tmp_path / "run", dead, timeout=3600) is not None
    claim = try_claim(tmp_path / "run", Worker.current(), timeout=3600)
    assert claim is not None and "is gone" in claim.data["takeover_of"]["reason"]
    # but a live process on this machine keeps its claim however long the timeout
    assert try_claim(tmp_path / "run", dead, timeout=3600) is None


def test_released_claims(tmp_path: Path) -> None:
    run = tmp_path / "run"
    claim = try_claim(run, elsewhere(1), timeout=60)
    claim.release("interrupted")
    again = try_claim(run, elsewhere(2), timeout=60)  # an interrupted run is free at once
    assert again is not None and again.data["takeover_of"] is None and again.generation == 2
    again.release("done")
    assert try_claim(run, elsewhere(3), timeout=60) is None  # a finished run is never claimed again
    assert read_claim(run)["outcome"] == "done"


def test_heartbeat_thread_refreshes_and_reports_a_lost_claim(tmp_path: Path) -> None:
    run = tmp_path / "run"
    claim = try_claim(run, Worker.current(), timeout=0.6)  # heartbeat every 0.2 s
    lost = threading.Event()
    claim.on_lost = lost.set
    claim.start()
    first = read_claim(run)["heartbeat"]
    time.sleep(0.7)
    assert read_claim(run)["heartbeat"] > first
    claim.set_phase("training")
    assert read_claim(run)["phase"] == "training"
    # someone else takes the run over (as after a long stall): the holder must notice
    other = dict(read_claim(run), worker="node-b:9", generation=2)
    claim_path(run, 2).write_text(json.dumps(other))
    assert lost.wait(2.0)
    claim.release("done")  # a lost claim is not written to any more
    assert read_claim(run, 1)["released"] is False


# ----------------------------------------------------------------------------- shards and selection
@pytest.fixture
def paper_config():
    return load_experiment_config(CONFIGS / "paper-qwen2-0.5b.toml", ["experiment.seeds=[0,1,2]"])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 15, 20])
def test_shards_cover_the_grid_exactly_once(paper_config, n: int) -> None:
    runs = [r.name for r in paper_config.runs()]
    assert len(runs) == 15
    taken = [r.name for k in range(1, n + 1) for r in select_runs(paper_config.runs(), shard=(k, n))]
    assert sorted(taken) == sorted(runs)  # each run once, none skipped


def test_cli_shards_1_2_and_2_2_cover_tiny_grid(capsys) -> None:
    seen = []
    for shard in ("1/2", "2/2"):
        assert main(["experiment", str(CONFIGS / "tiny.toml"), "--dry-run", "--shard", shard]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert line.startswith("this worker's runs")
        seen += line.split(": ", 1)[1].split(", ")
    grid = [r.name for r in load_experiment_config(CONFIGS / "tiny.toml").runs()]
    assert sorted(seen) == sorted(grid)


def test_runs_and_shard_options_are_validated(paper_config, capsys) -> None:
    picked = select_runs(paper_config.runs(), ["latent+causal-seed1", "eos+causal-seed0"])
    assert [r.name for r in picked] == ["eos+causal-seed0", "latent+causal-seed1"]
    with pytest.raises(ConfigError, match="unknown run.*the grid has: eos\\+causal-seed0"):
        select_runs(paper_config.runs(), ["eos+causal-seed9"])
    for bad in ("3/2", "0/2", "1-2", "x/y"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)
    assert main(["experiment", str(CONFIGS / "tiny.toml"), "--dry-run", "--runs", "nope"]) == 2
    assert "--runs: unknown run(s) nope" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the worker loop
def _grid(tmp_path: Path, timeout: float = 2):
    return load_experiment_config(
        CONFIGS / "tiny.toml",
        [f"experiment.output_dir={json.dumps(str(tmp_path / 'out'))}", f"experiment.claim_timeout={timeout}"],
    )


@pytest.mark.parametrize("one_run", [False, True])
def test_two_workers_share_the_grid_without_repeating_a_run(tmp_path: Path, one_run: bool) -> None:
    config = _grid(tmp_path)
    if one_run:  # one worker runs it, the other waits for it; still a single report
        config.experiment.designs, config.experiment.untrained = ["eos+causal"], []
    calls: list[str] = []
    reports: list[str] = []

    def run_one(cfg, run, index, progress):  # a stand-in for training + evaluation
        calls.append(run.name)
        progress.say(index, run, "training")
        time.sleep(0.3)
        (cfg.output_dir / run.name / "state.json").write_text(json.dumps({"status": "done"}))

    def report(cfg):
        reports.append(threading.current_thread().name)
        return cfg.output_dir / "report.md"

    threads = [
        threading.Thread(target=run_grid, args=(config, run_one, report), name=f"w{i}") for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == sorted(r.name for r in config.runs())  # every run exactly once
    assert len(reports) == 1  # the report written once, by whoever finished last
    for run in config.runs():
        assert generations(config.output_dir / run.name) == [1]
        assert read_claim(config.output_dir / run.name)["outcome"] == "done"


def test_a_failure_is_reported_not_retried_by_other_workers(tmp_path: Path) -> None:
    config = _grid(tmp_path)
    calls: list[str] = []

    def run_one(cfg, run, index, progress):
        calls.append(run.name)
        time.sleep(0.2)
        if run.name.startswith("multilayer"):
            raise RuntimeError("out of memory")
        (cfg.output_dir / run.name / "state.json").write_text(json.dumps({"status": "done"}))

    threads = [
        threading.Thread(target=run_grid, args=(config, run_one, lambda c: c.output_dir / "r.md"))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == sorted(r.name for r in config.runs())
    state = json.loads((config.output_dir / "multilayer+bidirectional-seed0" / "state.json").read_text())
    assert state["status"] == "failed" and "out of memory" in state["error"]
    # a later worker (a new session) does retry it
    run_grid(config, run_one, lambda c: c.output_dir / "r.md", names=["multilayer+bidirectional-seed0"])
    assert calls.count("multilayer+bidirectional-seed0") == 2


def test_status_shows_phase_worker_and_elapsed(tmp_path: Path) -> None:
    config = _grid(tmp_path, timeout=60)
    out = config.output_dir
    done, training = out / "eos+causal-seed0", out / "multilayer+bidirectional-seed0"
    done.mkdir(parents=True)
    (done / "state.json").write_text(json.dumps({"status": "done", "train_seconds": 90, "eval_seconds": 30}))
    claim = try_claim(training, elsewhere(7), timeout=60)
    claim.set_phase("training")
    (training / "train").mkdir()
    (training / "train" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3))
    )
    statuses = grid_status(config)
    assert [(s.name, s.phase) for s in statuses] == [
        ("eos+causal-seed0", "done"),
        ("multilayer+bidirectional-seed0", "training"),
        ("untrained-eos+causal-seed0", "pending"),
    ]
    assert statuses[0].elapsed == 120 and statuses[1].worker == "node-b:7"
    assert statuses[1].detail == "step 3/2"  # tiny.toml trains 2 steps; the log says 3
    table = format_status(config, statuses)
    assert "node-b:7" in table and "2.0 min" in table and "1 done, 1 pending, 1 training" in table

    stale_cfg = _grid(tmp_path, timeout=0.01)
    time.sleep(0.05)
    row = grid_status(stale_cfg)[1]
    assert row.phase == "stale (training)" and "no heartbeat from node-b:7" in row.detail


# ----------------------------------------------------------------------------- real processes
@pytest.fixture
def tiny_grid(tmp_path: Path, tokenizer, data_dir) -> list[str]:
    """configs/tiny.toml's grid on a tiny random Llama, two STS datasets, 24 steps."""
    base = save_tiny_backbone(tmp_path / "tiny-llama", tokenizer)
    out = tmp_path / "out"
    sets = {
        "experiment.output_dir": json.dumps(str(out)),
        "experiment.claim_timeout": "4",
        "model.base": json.dumps(str(base)),
        "training.steps": "24",
        "training.keep_checkpoints": "2",
        "evaluation.local_data": json.dumps(str(data_dir)),
        "evaluation.tasks": '["STSBenchmark", "SICK-R"]',
    }
    args = [str(CONFIGS / "tiny.toml")]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return args


def _start(args: list[str], log: Path, machine: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "POOLATTN_MACHINE_ID": machine}
    return subprocess.Popen(
        [sys.executable, "-m", "poolattn.cli", "experiment", *args],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _steps(run_dir: Path) -> list[int]:
    return [
        json.loads(line)["step"] for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
    ]


RUNS = ["eos+causal-seed0", "multilayer+bidirectional-seed0", "untrained-eos+causal-seed0"]


@pytest.mark.needs_data
@pytest.mark.slow
def test_two_processes_finish_tiny_grid_each_run_once(tiny_grid, tmp_path: Path) -> None:
    procs = [_start(tiny_grid, tmp_path / f"w{i}.log", "this-host") for i in range(2)]
    codes = [p.wait(timeout=600) for p in procs]
    logs = "\n".join((tmp_path / f"w{i}.log").read_text()[-2000:] for i in range(2))
    assert codes == [0, 0], logs
    out = tmp_path / "out"
    holders = set()
    for name in RUNS:
        assert json.loads((out / name / "state.json").read_text())["status"] == "done"
        assert generations(out / name) == [1], name  # claimed once, never taken over
        holders.add(read_claim(out / name)["pid"])
    assert holders == {p.pid for p in procs}  # both workers took part
    for name in RUNS[:2]:
        assert _steps(out / name) == list(range(1, 25))  # trained exactly once
        assert json.loads((out / name / "train" / "run.json").read_text())["resumed_from_step"] == 0
    assert len(list((out / "claims").glob("report-*.json"))) == 1
    assert all(name in (out / "report.md").read_text() for name in RUNS)


@pytest.mark.needs_data
@pytest.mark.slow
def test_killed_worker_run_is_taken_over_after_timeout_and_resumed(tiny_grid, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # different machine ids: the survivor cannot see the victim's PID, only its heartbeat
    procs = {_start(tiny_grid, tmp_path / f"w{i}.log", f"node-{i}"): i for i in range(2)}
    by_pid = {p.pid: p for p in procs}
    victim, run_name, deadline = None, None, time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:
        for name in RUNS[:2]:
            claim = read_claim(out / name)
            ckpts = out / name / "train" / "checkpoints"
            if claim and not claim.get("released") and ckpts.exists() and any(ckpts.glob("*/model")):
                victim, run_name = by_pid[claim["pid"]], name
                break
        time.sleep(0.05)
    assert victim is not None, "no run reached a checkpoint"
    os.killpg(victim.pid, signal.SIGKILL)  # mid-training, no chance to release its claim
    victim.wait()
    killed_at = time.time()
    survivor = next(p for p in procs if p is not victim)
    assert survivor.wait(timeout=600) == 0, (tmp_path / f"w{procs[survivor]}.log").read_text()[-3000:]

    assert generations(out / run_name) == [1, 2]
    first, second = read_claim(out / run_name, 1), read_claim(out / run_name, 2)
    assert first["pid"] == victim.pid and not first["released"]
    assert second["pid"] == survivor.pid and second["outcome"] == "done"
    assert second["takeover_of"]["worker"] == first["worker"]
    assert "no heartbeat" in second["takeover_of"]["reason"]
    assert second["claimed_at"] >= killed_at + 4 - 1.0  # only after the 4 s claim timeout
    run = json.loads((out / run_name / "train" / "run.json").read_text())
    assert run["resumed_from_step"] > 0  # resumed from its checkpoint, not restarted
    assert _steps(out / run_name) == list(range(1, 25))
    for name in RUNS:
        assert json.loads((out / name / "state.json").read_text())["status"] == "done"
    assert "taking over from" in (tmp_path / f"w{procs[survivor]}.log").read_text()
    assert (out / "report.md").exists()
