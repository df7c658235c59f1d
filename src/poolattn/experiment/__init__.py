"""The design-comparison experiment: a grid of designs trained and evaluated alike, then compared.

This package re-exports for users; modules inside poolattn import from the defining module.
"""

from typing import Any

# name -> defining module, imported on first use: a reader of one fact (``plan.UNTRAINED_PREFIX``,
# ``state.read_state``, used by ``poolattn.stats``) does not load torch, the trainer and the report.
_EXPORTS = {
    "parse_design": "poolattn.design",
    "PAPER_DESIGNS": "poolattn.experiment.plan",
    "ExperimentConfig": "poolattn.experiment.plan",
    "Run": "poolattn.experiment.plan",
    "load_experiment_config": "poolattn.experiment.plan",
    "ExperimentReport": "poolattn.experiment.report",
    "write_experiment_report": "poolattn.experiment.report",
    "describe_plan": "poolattn.experiment.runner",
    "run_experiment": "poolattn.experiment.runner",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
