"""The experiment grid: designs x seeds, everything else held equal, as a list of runs."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, config_relative, from_dict, load_toml
from ..io import check_output_path

if TYPE_CHECKING:
    from ..training.config import TrainConfig

# Runs (and the designs compared from them) named so are untrained baselines: the base model
# with a fresh head, evaluated once; the stats treat them as fixed checkpoints (no seed variance).
UNTRAINED_PREFIX = "untrained-"

PAPER_DESIGNS = [
    "eos+causal",
    "latent+causal",
    "multilayer+causal",
    "latent+bidirectional",
    "multilayer+bidirectional",
]


@dataclass
class ExperimentSection:
    """The ``[experiment]`` table: where results go and which designs and seeds to run."""

    output_dir: str = "runs/experiment"  # relative to the config file's folder
    designs: list[str] = field(default_factory=lambda: list(PAPER_DESIGNS))
    seeds: list[int] = field(default_factory=lambda: [0])
    # per-design seeds replacing ``seeds``: a budget buys replicates for the designs that matter most
    design_seeds: dict[str, list[int]] = field(default_factory=dict)
    untrained: list[str] = field(default_factory=lambda: ["eos+causal"])
    layer_attention_sample: int = 64
    # items per dev task for the layer ablation of each multilayer run (0 = no ablation)
    layer_ablation_items: int = 0
    layer_ablation_tasks: list[str] = field(default_factory=lambda: ["STSBenchmark", "SciFact"])


@dataclass
class EvaluationSection:
    """The ``[evaluation]`` table: the tasks every run is evaluated on."""

    local_data: str | None = None
    tasks: list[str] = field(default_factory=list)
    benchmark: str | None = None
    max_items: int | None = None
    batch_size: int = 32
    min_datasets: int = 5


@dataclass
class Run:
    """One cell of the grid: a design, a seed, and whether it is trained."""

    design: str
    seed: int
    trained: bool
    model: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.label}-seed{self.seed}"

    @property
    def label(self) -> str:
        """The design as the comparison names it: ``untrained-`` in front of an untrained baseline."""
        return self.design if self.trained else f"{UNTRAINED_PREFIX}{self.design}"


@dataclass
class ExperimentConfig:
    """A parsed experiment file: its own sections plus the shared training sections (raw)."""

    experiment: ExperimentSection
    evaluation: EvaluationSection
    shared: dict[str, Any]
    source: Path | None = None

    @property
    def output_dir(self) -> Path:
        """Where the grid's results go: relative to the config file's folder (``config_relative``)."""
        if self.base_dir is None:
            return Path(self.experiment.output_dir)
        return config_relative(self.experiment.output_dir, self.base_dir)

    @property
    def base_dir(self) -> Path | None:
        """The config file's folder: relative data paths resolve against it."""
        return self.source.resolve().parent if self.source else None

    def runs(self) -> list[Run]:
        """Every run of the grid, trained designs first, in a stable order."""
        runs: list[Run] = []
        for trained, designs in ((True, self.experiment.designs), (False, self.experiment.untrained)):
            for design in designs:
                seeds = self.experiment.design_seeds.get(design, self.experiment.seeds)
                for seed in seeds if trained else seeds[:1]:
                    runs.append(Run(design, seed, trained, self.model_for(design)))
        return runs

    def model_for(self, design: str) -> dict[str, Any]:
        """The shared [model] table with this design's pooling and attention."""
        from ..design import parse_design

        pooling, attention = parse_design(design, "experiment.designs")
        model = copy.deepcopy(self.shared.get("model", {}))
        model.update(pooling=pooling, attention=attention)
        return model

    def train_data(self, run: Run) -> dict[str, Any]:
        """Raw training config for one run: shared sections, this design, this seed, its own dir."""
        data = copy.deepcopy(self.shared)
        data["model"] = run.model
        training = data.setdefault("training", {})
        training["seed"] = run.seed
        training["output_dir"] = str(self.output_dir / run.name / "train")
        return data

    def train_config(self, run: Run) -> TrainConfig:
        """One run's validated TrainConfig (relative data paths against the config's folder)."""
        from ..training.config import train_config_from_dict

        return train_config_from_dict(self.train_data(run), self.base_dir)


def load_experiment_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read and validate an experiment TOML (``--set section.key=value`` overrides applied)."""
    raw = load_toml(path, overrides)
    where = str(path)
    experiment = from_dict(ExperimentSection, raw.pop("experiment", {}), f"{where}: experiment")
    evaluation = from_dict(EvaluationSection, raw.pop("evaluation", {}), f"{where}: evaluation")
    config = ExperimentConfig(experiment, evaluation, raw, Path(path))
    check_output_path(config.output_dir, f"{where}: experiment.output_dir")
    validate(config, where)
    return config


def validate(config: ExperimentConfig, where: str) -> None:
    """Check the grid and every run's training config before anything runs."""
    if not config.experiment.designs and not config.experiment.untrained:
        raise ConfigError(f"{where}: experiment.designs: the grid is empty")
    if not config.experiment.seeds:
        raise ConfigError(f"{where}: experiment.seeds: give at least one seed")
    for design, seeds in config.experiment.design_seeds.items():
        if design not in config.experiment.designs:
            raise ConfigError(
                f"{where}: experiment.design_seeds: {design!r} is not one of experiment.designs"
            )
        if not seeds:
            raise ConfigError(f"{where}: experiment.design_seeds.{design}: give at least one seed")
    for name in ("layer_ablation_items", "layer_attention_sample"):
        if getattr(config.experiment, name) < 0:
            raise ConfigError(f"{where}: experiment.{name}: must be >= 0 (0 = off)")
    runs = config.runs()
    if len({run.name for run in runs}) != len(runs):
        raise ConfigError(f"{where}: experiment.designs: a design is listed twice")
    for run in runs:
        config.train_config(run)
