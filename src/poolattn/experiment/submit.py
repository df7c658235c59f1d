"""The grid on a cluster through ``submitit`` (``--submit CLUSTER.toml``, see
configs/slurm/submitit.toml): a job array of plain grid workers, one per run, requeued on preemption."""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, load_toml
from .plan import Run

CLUSTERS = ("slurm", "local", "debug")  # submitit.AutoExecutor's names


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how the tasks run: submitit's cluster, processes per task, executor settings."""

    cluster: str = "slurm"
    processes: int = 1  # accelerate processes per task (the node's GPUs); 1 runs plain
    accelerate_config: str | None = None  # absolute, or relative to the cluster file
    executor: dict[str, Any] = field(default_factory=dict)  # submitit's update_parameters


def load_cluster_config(path: str | Path) -> ClusterConfig:
    """Read a cluster file (see configs/slurm/submitit.toml); bad input -> ConfigError naming it."""
    path = Path(path)
    data = load_toml(path)
    unknown = set(data) - {"cluster", "processes", "accelerate_config", "executor"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    cluster = data.get("cluster", "slurm")
    if cluster not in CLUSTERS:
        raise ConfigError(f"{path}: cluster: {cluster!r} is not one of {', '.join(CLUSTERS)}")
    processes = data.get("processes", 1)
    if not isinstance(processes, int) or processes < 1:
        raise ConfigError(f"{path}: processes: must be a whole number >= 1, not {processes!r}")
    if not isinstance(data.get("executor", {}), dict):
        raise ConfigError(f"{path}: executor: must be a table of submitit parameters")
    launch = data.get("accelerate_config")
    if launch is not None:
        launch = str((path.parent / launch).resolve())
        if not Path(launch).exists():
            raise ConfigError(f"{path}: accelerate_config: {launch} not found")
    return ClusterConfig(cluster, processes, launch, dict(data.get("executor", {})))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class GridTask:
    """One array task: one run of the grid, as its own ``poolattn experiment`` worker."""

    config: str
    run: str
    overrides: tuple[str, ...] = ()
    processes: int = 1
    accelerate_config: str | None = None

    def command(self) -> list[str]:
        args = ["experiment", self.config, "--runs", self.run]
        for item in self.overrides:
            args += ["--set", item]
        if self.processes == 1:
            return [sys.executable, "-m", "poolattn.cli", *args]
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1"]
        launch += ["--num_processes", str(self.processes), "--main_process_port", str(_free_port())]
        if self.accelerate_config:
            launch += ["--config_file", self.accelerate_config]
        return [*launch, "-m", "poolattn.cli", *args]

    def __call__(self) -> str:
        code = subprocess.call(self.command())
        if code != 0:
            raise RuntimeError(f"run {self.run}: poolattn experiment exited with status {code}")
        return self.run

    def checkpoint(self) -> Any:
        """Before a preemption or the time limit: requeue this task (it resumes from its checkpoint)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


def submit_grid(
    config: str | Path,
    overrides: list[str],
    runs: list[Run],
    cluster: ClusterConfig,
    folder: str | Path,
) -> list[Any]:
    """Submit one task per run as one job array; returns submitit's jobs (in ``runs`` order)."""
    import submitit

    executor = submitit.AutoExecutor(folder=Path(folder), cluster=cluster.cluster)
    executor.update_parameters(name="poolattn-grid", **cluster.executor)
    path, launch = str(Path(config).resolve()), (cluster.processes, cluster.accelerate_config)
    return executor.submit_array([GridTask(path, run.name, tuple(overrides), *launch) for run in runs])
