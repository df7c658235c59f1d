"""The design-comparison experiment: a grid of designs trained and evaluated alike, then compared."""

from .plan import PAPER_DESIGNS, ExperimentConfig, Run, load_experiment_config, parse_design
from .report import write_report
from .runner import describe_plan, run_experiment

__all__ = [
    "PAPER_DESIGNS",
    "ExperimentConfig",
    "Run",
    "describe_plan",
    "load_experiment_config",
    "parse_design",
    "run_experiment",
    "write_report",
]
