"""Statistics across datasets: paired tests between designs, per task family.

``compare(result_dirs, output_dir, min_datasets=5)`` is the library entry point behind
``poolattn compare``.
"""

from __future__ import annotations

from .compare import ModelResults, ResultsError, compare, compare_models, load_results
from .tests import bootstrap_mean_ci, holm, rank_biserial, wilcoxon_paired

__all__ = [
    "ModelResults",
    "ResultsError",
    "bootstrap_mean_ci",
    "compare",
    "compare_models",
    "holm",
    "load_results",
    "rank_biserial",
    "wilcoxon_paired",
]
