"""The design-comparison experiment: a grid of designs trained and evaluated alike, then compared.

This package re-exports for users; modules inside poolattn import from the defining module.
"""

from .._lazy import lazy_exports

# imported on first use: a reader of one fact (``plan.UNTRAINED_PREFIX``, ``state.read_state``,
# used by ``poolattn.stats``) does not load torch, the trainer and the report.
__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "..design": ("parse_design",),
        ".plan": ("PAPER_DESIGNS", "ExperimentConfig", "Run", "load_experiment_config"),
        ".report": ("ExperimentReport", "write_experiment_report"),
        ".runner": ("describe_plan", "run_experiment"),
    },
)
