"""Grid workers: run locks, shards, status, and two real ``poolattn experiment`` processes
sharing configs/tiny.toml's grid (one killed mid-run, its run taken over and resumed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import save_tiny_backbone

from poolattn.cli import main
from poolattn.config import ConfigError
from poolattn.experiment import load_experiment_config
from poolattn.experiment.state import read_state
from poolattn.experiment.status import GridProgress, RunLock, format_status, grid_status, lock_held
from poolattn.experiment.workers import parse_shard, run_grid, select_runs
from poolattn.training.checkpoint import list_checkpoints
from poolattn.training.config import TRAIN_RUN_FILE, read_train_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ----------------------------------------------------------------------------- locks
def test_one_lock_wins_among_concurrent_workers(tmp_path: Path) -> None:
    winners: list[RunLock] = []
    barrier = threading.Barrier(8)

    def contend() -> None:
        lock = RunLock(tmp_path / "run")
        barrier.wait()
        if lock.acquire():
            winners.append(lock)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and winners[0].held() and lock_held(tmp_path / "run")
    winners[0].release()
    assert not lock_held(tmp_path / "run") and RunLock(tmp_path / "run").acquire()


def test_a_dead_holders_lock_is_free_at_once(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from poolattn.experiment.status import RunLock; "
         f"lock = RunLock({str(tmp_path / 'run')!r}); assert lock.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    assert lock_held(tmp_path / "run") and not RunLock(tmp_path / "run").acquire()
    holder.kill()  # no chance to release anything
    holder.wait()
    assert not lock_held(tmp_path / "run") and RunLock(tmp_path / "run").acquire()


def test_a_deleted_or_replaced_lock_file_is_no_longer_held(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / "run")
    assert lock.acquire() and lock.held()
    lock.path.unlink()
    assert not lock.held()
    lock.path.write_text("")  # another worker's fresh lock file
    assert not lock.held()


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
def _grid(tmp_path: Path):
    return load_experiment_config(
        CONFIGS / "tiny.toml", [f"experiment.output_dir={json.dumps(str(tmp_path / 'out'))}"]
    )


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("poolattn.experiment.workers.POLL", 0.05)


@pytest.mark.parametrize("one_run", [False, True])
def test_two_workers_share_the_grid_without_repeating_a_run(tmp_path: Path, fast_poll, one_run: bool) -> None:
    config = _grid(tmp_path)
    if one_run:  # one worker runs it, the other waits for it; still a single report
        config.experiment.designs, config.experiment.untrained = ["eos+causal"], []
    calls: list[str] = []
    reports: list[str] = []
    held: list[bool] = []

    def run_one(cfg, run, index, progress):  # a stand-in for training + evaluation
        calls.append(run.name)
        held.append(lock_held(cfg.output_dir / run.name))
        progress.say(index, run, "training")
        time.sleep(0.3)
        return {"design": run.design}

    def report(cfg):
        reports.append(threading.current_thread().name)
        return cfg.output_dir / "report.md"

    outcomes = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(run_grid(config, run_one, report)), name=f"w{i}")
        for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == sorted(r.name for r in config.runs())  # every run exactly once
    assert all(held)  # each ran under its lock
    assert len(reports) == 1  # the report written once, by whoever finished last
    assert [o.failed for o in outcomes] == [[], []]
    for run in config.runs():
        state = read_state(config.output_dir / run.name)
        assert state["status"] == "done" and state["design"] == run.design and "finished_at" in state
        assert not lock_held(config.output_dir / run.name)


def test_a_failure_is_reported_not_retried_by_other_workers(tmp_path: Path, fast_poll) -> None:
    config = _grid(tmp_path)
    calls: list[str] = []

    def run_one(cfg, run, index, progress):
        calls.append(run.name)
        time.sleep(0.2)
        if run.name.startswith("multilayer"):
            raise RuntimeError("out of memory")
        return {}

    outcomes = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(run_grid(config, run_one, lambda c: c.output_dir)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == sorted(r.name for r in config.runs())
    assert sorted(o.failed for o in outcomes) == [[], ["multilayer+bidirectional-seed0"]]
    state = read_state(config.output_dir / "multilayer+bidirectional-seed0")
    assert state["status"] == "failed" and "out of memory" in state["error"]
    # a later worker (a new session) does retry it, and fails with it again
    again = run_grid(config, run_one, lambda c: c.output_dir, names=["multilayer+bidirectional-seed0"])
    assert calls.count("multilayer+bidirectional-seed0") == 2 and again.failed == [
        "multilayer+bidirectional-seed0"
    ]


def test_status_shows_done_running_failed_and_pending(tmp_path: Path) -> None:
    config = _grid(tmp_path)
    out = config.output_dir
    done, ablating = out / "eos+causal-seed0", out / "multilayer+bidirectional-seed0"
    done.mkdir(parents=True)
    (done / "state.json").write_text(json.dumps({"status": "done", "train_seconds": 90, "eval_seconds": 30}))
    ablating.mkdir()
    started = time.time() - 120
    state = {"status": "running", "phase": "layer ablation", "worker": "node-b:7", "started_at": started}
    (ablating / "state.json").write_text(json.dumps(state))
    lock = RunLock(ablating)
    assert lock.acquire()
    statuses = grid_status(config)
    assert [(s.name, s.phase) for s in statuses] == [
        ("eos+causal-seed0", "done"),
        ("multilayer+bidirectional-seed0", "running"),
        ("untrained-eos+causal-seed0", "pending"),
    ]
    assert statuses[0].elapsed == 120 and statuses[1].worker == "node-b:7"
    # the layer ablation is work under way (issue 23 item 7): active, and counted in the estimate
    assert statuses[1].active and statuses[1].detail == "layer ablation"
    progress = GridProgress(config, config.runs(), "me:1")
    progress.done_seconds = [60.0]
    assert progress.remaining(statuses) == 120.0  # two runs not finished, one worker at work
    table = format_status(config, statuses)
    assert "node-b:7" in table and "2.0 min" in table and "1 done, 1 pending, 1 running" in table
    lock.release()
    assert grid_status(config)[1].phase == "interrupted"  # its worker is gone: it resumes later
    (ablating / "state.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    assert grid_status(config)[1].phase == "failed"
    assert main(["experiment", str(CONFIGS / "tiny.toml"), "--set",
                 f"experiment.output_dir={json.dumps(str(out))}", "--status"]) == 0  # fmt: skip


def test_status_counts_the_head_warmup_steps_the_trainer_runs(tmp_path: Path) -> None:
    """The trainer numbers warm-up steps before the recipe's: a run 60 steps in of 50 + 20
    shows "step 60/70", not "step 60/50"; before its training record exists, the recipe's count."""
    config = _grid(tmp_path)
    run = config.runs()[0]
    run_dir = config.output_dir / run.name
    (run_dir / "train").mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps({"status": "running", "phase": "training"}))
    (run_dir / "train" / "metrics.jsonl").write_text(json.dumps({"step": 60}) + "\n")
    steps = config.train_data(run)["training"]["steps"]
    lock = RunLock(run_dir)
    assert lock.acquire()
    try:
        assert grid_status(config)[0].detail == f"training step 60/{steps}"
        (run_dir / "train" / TRAIN_RUN_FILE).write_text(json.dumps({"total_steps": steps + 20}))
        assert grid_status(config)[0].detail == f"training step 60/{steps + 20}"
    finally:
        lock.release()


def test_a_worker_whose_lock_is_deleted_stops_at_once(tmp_path: Path) -> None:
    """Someone deletes the run's lock file: another worker could now take the run, so this one
    stops within a second, records nothing and exits non-zero."""
    script = textwrap.dedent(
        f"""
        import json, time
        from poolattn.experiment import load_experiment_config
        from poolattn.experiment.workers import run_grid
        config = load_experiment_config({str(CONFIGS / "tiny.toml")!r},
            [{"experiment.output_dir=" + json.dumps(str(tmp_path / "out"))!r}])
        def run_one(cfg, run, index, progress):
            (cfg.output_dir / run.name / "run.lock").unlink()
            print("deleted", flush=True)
            time.sleep(30)
            return {{}}
        run_grid(config, run_one, lambda c: None, names=["eos+causal-seed0"])
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "deleted", proc.stderr.read()
    start = time.monotonic()
    assert proc.wait(timeout=60) == 1
    assert time.monotonic() - start < 10  # the watchdog looks every 0.5 s; the run would take 30 s
    assert "lost its lock" in proc.stderr.read()
    assert read_state(tmp_path / "out" / "eos+causal-seed0") == {}  # nothing recorded: not done, not failed


def test_a_worker_whose_runs_failed_exits_non_zero(tmp_path: Path, capsys) -> None:
    """Issue 28 item 9: a missing training file fails the run; the worker says so and exits 1."""
    out = tmp_path / "out"
    args = ["experiment", str(CONFIGS / "tiny.toml"), "--runs", "eos+causal-seed0",
            "--set", f"experiment.output_dir={json.dumps(str(out))}",
            "--set", 'data.train=["nowhere/missing.jsonl"]']  # fmt: skip
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "1 run(s) failed in this worker: eos+causal-seed0" in captured.err
    assert read_state(out / "eos+causal-seed0")["status"] == "failed"


# ----------------------------------------------------------------------------- real processes
@pytest.fixture
def tiny_grid(tmp_path: Path, tokenizer, data_dir) -> list[str]:
    """configs/tiny.toml's grid on a tiny random Llama, two STS datasets, 24 steps."""
    base = save_tiny_backbone(tmp_path / "tiny-llama", tokenizer)
    out = tmp_path / "out"
    sets = {
        "experiment.output_dir": json.dumps(str(out)),
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


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
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
    procs = [_start(tiny_grid, tmp_path / f"w{i}.log") for i in range(2)]
    codes = [p.wait(timeout=600) for p in procs]
    logs = "\n".join((tmp_path / f"w{i}.log").read_text()[-2000:] for i in range(2))
    assert codes == [0, 0], logs
    out = tmp_path / "out"
    holders = set()
    for name in RUNS:
        state = read_state(out / name)
        assert state["status"] == "done"
        assert len(state["workers"]) == 1, name  # taken once, never taken over
        holders.add(int(state["worker"].rsplit(":", 1)[1]))
    assert holders == {p.pid for p in procs}  # both workers took part
    for name in RUNS[:2]:
        assert _steps(out / name) == list(range(1, 25))  # trained exactly once
        assert read_train_run(out / name / "train")["resumed_from_step"] == 0
    assert logs.count("comparing and writing the report") == 1
    assert all(name in (out / "report.md").read_text() for name in RUNS)


@pytest.mark.needs_data
@pytest.mark.slow
def test_killed_worker_run_is_taken_over_and_resumed(tiny_grid, tmp_path: Path) -> None:
    out = tmp_path / "out"
    procs = {_start(tiny_grid, tmp_path / f"w{i}.log"): i for i in range(2)}
    by_pid = {p.pid: p for p in procs}
    victim, run_name, deadline = None, None, time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:
        for name in RUNS[:2]:
            state = read_state(out / name) if (out / name / "state.json").exists() else {}
            if state.get("status") == "running" and list_checkpoints(out / name / "train"):
                victim, run_name = by_pid[int(state["worker"].rsplit(":", 1)[1])], name
                break
        time.sleep(0.05)
    assert victim is not None, "no run reached a checkpoint"
    os.killpg(victim.pid, signal.SIGKILL)  # mid-training, no chance to release anything
    victim.wait()
    survivor = next(p for p in procs if p is not victim)
    log = tmp_path / f"w{procs[survivor]}.log"
    assert survivor.wait(timeout=600) == 0, log.read_text()[-3000:]

    state = read_state(out / run_name)
    assert [int(w.rsplit(":", 1)[1]) for w in state["workers"]] == [victim.pid, survivor.pid]
    run = read_train_run(out / run_name / "train")
    assert run["resumed_from_step"] > 0  # resumed from its checkpoint, not restarted
    assert _steps(out / run_name) == list(range(1, 25))
    for name in RUNS:
        assert read_state(out / name)["status"] == "done"
    assert "resuming the run" in log.read_text()
    assert (out / "report.md").exists()
