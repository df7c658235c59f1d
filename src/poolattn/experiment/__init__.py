"""The design-comparison experiment: a grid of designs trained and evaluated alike, then compared.

This package re-exports for users; modules inside poolattn import from the defining module.
"""

from ..design import parse_design
from .plan import PAPER_DESIGNS, ExperimentConfig, Run, load_experiment_config
from .report import ExperimentReport, write_experiment_report
from .runner import describe_plan, run_experiment

__all__ = [
    "PAPER_DESIGNS",
    "ExperimentConfig",
    "ExperimentReport",
    "Run",
    "describe_plan",
    "load_experiment_config",
    "parse_design",
    "run_experiment",
    "write_experiment_report",
]
