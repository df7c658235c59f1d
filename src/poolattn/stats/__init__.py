"""Statistics across designs: paired tests over items, seeds and datasets, and verdicts in words.

Re-exports for users (``compare`` is behind ``poolattn compare``); poolattn imports from the defining module.
"""

from __future__ import annotations

from .bayes import bayesian_signed_rank
from .compare import ModelResults, ResultsError, compare, compare_models, design_groups, load_results
from .items import DatasetItems, Entry, ItemsError, read_items
from .ranks import friedman, nemenyi, nemenyi_cd
from .tests import holm, holm_by, rank_biserial, sign_flip_test, wilcoxon_floor, wilcoxon_paired

__all__ = [
    "DatasetItems",
    "Entry",
    "ItemsError",
    "ModelResults",
    "ResultsError",
    "bayesian_signed_rank",
    "compare",
    "compare_models",
    "design_groups",
    "friedman",
    "holm",
    "holm_by",
    "load_results",
    "nemenyi",
    "nemenyi_cd",
    "rank_biserial",
    "read_items",
    "sign_flip_test",
    "wilcoxon_floor",
    "wilcoxon_paired",
]
