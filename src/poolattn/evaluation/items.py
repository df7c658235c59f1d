"""Per-item results of one mteb evaluation (``poolattn.stats.items``), from mteb's own prediction
files and the gold labels of the still loaded task data, so nothing is re-encoded. ``build_items``
checks that the main score recomputed from the items reproduces mteb's.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from ..eval_results import task_main_score
from ..io import atomic_file
from ..stats.items import CLASSIFICATION_METRICS, DatasetItems, Entry, ItemsError, items_path

log = logging.getLogger(__name__)

TOLERANCE = 1e-6
TOP_IDS = 10  # retrieval: ranked ids kept per query
TREC_KEYS = {  # mteb's retrieval metric name (before "_at_k") -> pytrec_eval measure prefix
    "ndcg": "ndcg_cut_",
    "map": "map_cut_",
    "recall": "recall_",
    "precision": "P_",
    "hit_rate": "success_",
}


def _split_data(task: Any, subset: str, split: str) -> Any:
    """The data mteb evaluated for (subset, split), looked up as ``AbsTask.evaluate`` does."""
    dataset = task.dataset
    return (dataset if subset not in dataset and subset == "default" else dataset[subset])[split]


def _numbered(n: int) -> list[str]:
    """Item ids of data without ids of its own: its rows are ``"0"`` to ``"n-1"``, in order."""
    return [str(i) for i in range(n)]


# --------------------------------------------------------------------------- per family
STS_COLUMNS = {  # mteb's STS main-score prefix -> prediction key ("": the model's similarity)
    "cosine": "cosine_scores",
    "manhattan": "manhattan_distances",
    "euclidean": "euclidean_distances",
    "": "similarity_scores",
}


def _sts(task: Any, pred: dict[str, Any], split: str, subset: str, metric: str) -> Entry:
    data = _split_data(task, subset, split)
    gold = [task._normalize(float(x)) for x in data["score"]]
    prefix, _, method = metric.rpartition("_")
    if method not in ("spearman", "pearson") or prefix not in STS_COLUMNS:
        raise ItemsError(f"STS main score {metric!r} has no item-level implementation")
    values = pred.get(STS_COLUMNS[prefix])
    if values is None:  # no model similarity function: mteb falls back to cosine
        values = pred["cosine_scores"]
    data = {"gold": gold, "pred": [float(v) for v in values]}
    extra = {"similarity": prefix or "model"}
    return Entry("correlation", _numbered(len(gold)), data, split, subset, method, extra=extra)


PAIR_COLUMNS = {  # mteb's name -> (prediction key, higher score = more similar)
    "similarity": ("similarity_scores", True),
    "cosine": ("cosine_scores", True),
    "manhattan": ("manhattan_distances", False),
    "euclidean": ("euclidean_distances", False),
    "dot": ("dot_scores", True),
}


def _pairs(task: Any, pred: dict[str, Any], split: str, subset: str, metric: str) -> Entry:
    data = _split_data(task, subset, split)
    if list(task.metadata.modalities) == ["text"] and len(data) == 1:  # mteb's v1 single-row format
        from datasets import Dataset

        data = Dataset.from_dict(data[0])
    labels = [int(x) for x in data[task.label_column_name]]
    prefix, _, name = metric.partition("_")
    if name != "ap" or (prefix != "max" and prefix not in PAIR_COLUMNS):
        raise ItemsError(f"pair classification main score {metric!r} has no item-level implementation")
    scores = {
        column: [float(v) if higher else -float(v) for v in pred[key]]
        for column, (key, higher) in PAIR_COLUMNS.items()
        if prefix in ("max", column) and pred.get(key) is not None
    }
    return Entry("ap", _numbered(len(labels)), {"labels": labels, "scores": scores}, split, subset, prefix)


def _classification(task: Any, pred: list[list[Any]], split: str, subset: str, metric: str) -> Entry:
    if getattr(task, "is_cross_validation", False):
        raise ItemsError("cross-validated classification has no fixed test items")
    if metric not in CLASSIFICATION_METRICS:
        raise ItemsError(f"classification main score {metric!r} has no item-level implementation")
    data = _split_data(task, subset, split)
    gold = [int(x) if isinstance(x, int | np.integer) else x for x in data[task.label_column_name]]
    data = {"gold": gold, "predictions": [list(p) for p in pred]}
    return Entry("classification", _numbered(len(gold)), data, split, subset, metric)


def _clustering(task: Any, entry_json: dict[str, Any], split: str, subset: str, metric: str) -> Entry:
    """mteb's own per-set v-measures (legacy: a list, one per set; fast: bootstrap levels)."""
    if metric != "v_measure":
        raise ItemsError(f"clustering main score {metric!r} has no item-level implementation")
    by_level = entry_json.get("v_measures") or {}
    if isinstance(by_level, list):  # one-label sets included: mteb scores them 1.0 unclustered
        sizes = [len(labels) for labels in _split_data(task, subset, split)[task.label_column_name]]
        values = [float(v) for v in by_level]
        return Entry(
            "mean", _numbered(len(values)), {"values": values}, split, subset, extra={"set_sizes": sizes}
        )
    return Entry(
        "mean",
        [f"{level}:{i}" for level, vs in by_level.items() for i in range(len(vs))],
        {"values": [float(v) for level in by_level.values() for v in level]},
        split,
        subset,
        extra={"note": "bootstrap subsamples of one clustering (not independent items)"},
    )


def _summarization(task: Any, pred: dict[str, Any], split: str, subset: str, metric: str) -> Entry:
    from mteb._evaluators.text.summarization_evaluator import DeprecatedSummarizationEvaluator

    prefix, _, method = metric.rpartition("_")
    column = {"cosine": "cosine_scores", "dot": "dot_scores", "": "similarity_scores"}.get(prefix)
    if method not in ("spearman", "pearson") or column is None:
        raise ItemsError(f"summarization main score {metric!r} has no item-level implementation")
    corr = sps.spearmanr if method == "spearman" else sps.pearsonr
    deprecated = issubclass(task.evaluator, DeprecatedSummarizationEvaluator)
    values = []
    for human, model in zip(pred["human_scores"], pred[column], strict=True):
        res = corr(human, model)
        # mteb's deprecated evaluator (SummEval v1) averages each rho together with its p-value
        values.append((float(res.statistic) + float(res.pvalue)) / 2 if deprecated else float(res.statistic))
    data = _split_data(task, subset, split)
    candidates = [i for i, rel in enumerate(data[task.relevancy_column_name]) if len(set(rel)) > 1]
    ids = [str(i) for i in candidates]
    ids = ids if len(ids) == len(values) else [f"kept{i}" for i in range(len(values))]
    entry = Entry("mean", ids, {"values": values}, split, subset)
    if deprecated:
        entry.extra["note"] = "mteb's deprecated summarization evaluator: each value is (rho + p) / 2"
    return entry


def _retrieval(task: Any, pred: dict[str, dict[str, float]], split: str, subset: str, metric: str) -> Entry:
    from mteb._evaluators.retrieval_metrics import calculate_retrieval_scores, mrr

    data = _split_data(task, subset, split)
    qrels = data["relevant_docs"]
    results = {q: dict(docs) for q, docs in pred.items()}
    if task.ignore_identical_ids:
        results = {q: {d: s for d, s in docs.items() if d != q} for q, docs in results.items()}
    base_metric = metric.removeprefix("max_over_subqueries_")
    if base_metric != metric:  # as mteb.max_over_subqueries: one query per base id, max score per document
        groups: dict[str, list[str]] = defaultdict(list)
        for key in qrels:
            groups["_".join(key.split("_")[:-1])].append(key)
        new_results, new_qrels = {}, {}
        for base, keys in groups.items():
            best: dict[str, float] = {}
            for key in keys:
                for doc, score in results[key].items():
                    best[doc] = score if doc not in best else max(score, best[doc])
            new_results[base], new_qrels[base] = best, qrels[keys[-1]]
        results, qrels = new_results, new_qrels
    elif task.skip_first_result:  # as calculate_retrieval_scores(skip_first_result=True)
        results = {
            q: dict(sorted(docs.items(), key=lambda kv: kv[1], reverse=True)[1:])
            for q, docs in results.items()
        }
    name, _, k = base_metric.rpartition("_at_")
    if base_metric == "accuracy":
        name, k = "recall", "1"
    if name != "mrr" and (name not in TREC_KEYS or not k.isdigit()):
        raise ItemsError(f"retrieval main score {base_metric!r} has no item-level implementation")
    k_values = list(task.k_values)
    per_query = calculate_retrieval_scores(results, qrels, k_values).all_scores
    qids = list(per_query)
    if name == "mrr":
        if int(k) not in k_values:
            raise ItemsError(f"retrieval main score {metric!r}: k={k} not among the task's k values")
        rr = mrr(qrels, results, k_values)[f"MRR@{k}"]
        by_query = dict(zip(results, rr, strict=True))
        values = [by_query[q] for q in qids]
        digits = None
    else:
        values = [float(per_query[q][TREC_KEYS[name] + k]) for q in qids]
        digits = 5  # mteb rounds these averages to 5 decimals
    ndcg = [float(per_query[q].get("ndcg_cut_10", math.nan)) for q in qids]
    ranked = {
        q: sorted(results.get(q, {}).items(), key=lambda kv: (kv[1], kv[0]), reverse=True) for q in qids
    }
    top = [[d for d, _ in ranked[q][:TOP_IDS]] for q in qids]
    return Entry(
        "mean",
        [str(q) for q in qids],
        {"values": values},
        split,
        subset,
        round_digits=digits,
        extra={"ndcg_at_10": ndcg, "top_ids": top},
    )


# --------------------------------------------------------------------------- entry point
def build_items(
    task: Any, predictions: dict[str, Any], task_json: dict[str, Any], family: str
) -> DatasetItems:
    """Items of every (split, subset) mteb scored; ``ItemsError`` for a task type or main score
    without an item-level implementation, or a recomputed score off mteb's by more than 1e-6."""
    from mteb.abstasks.classification import AbsTaskClassification
    from mteb.abstasks.clustering import AbsTaskClustering
    from mteb.abstasks.clustering_legacy import AbsTaskClusteringLegacy
    from mteb.abstasks.pair_classification import AbsTaskPairClassification
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.text.summarization import AbsTaskSummarization

    metric = str(task.metadata.main_score)
    name = str(task.metadata.name)
    entries: list[Entry] = []
    for split, scored in task_json["scores"].items():
        for entry_json in scored:
            subset = entry_json["hf_subset"]
            try:
                pred = predictions[subset][split]
            except KeyError:
                raise ItemsError(
                    f"{name}: mteb saved no predictions for subset {subset!r}, split {split!r}"
                ) from None
            if isinstance(task, AbsTaskSTS):
                entry = _sts(task, pred, split, subset, metric)
            elif isinstance(task, AbsTaskPairClassification):
                entry = _pairs(task, pred, split, subset, metric)
            elif isinstance(task, AbsTaskClassification):
                entry = _classification(task, pred, split, subset, metric)
            elif isinstance(task, AbsTaskClusteringLegacy | AbsTaskClustering):
                entry = _clustering(task, entry_json, split, subset, metric)
            elif isinstance(task, AbsTaskRetrieval):
                entry = _retrieval(task, pred, split, subset, metric)
            elif isinstance(task, AbsTaskSummarization):
                entry = _summarization(task, pred, split, subset, metric)
            else:
                raise ItemsError(f"{name}: task type {type(task).__name__} has no item-level implementation")
            entry.main_score = float(entry_json["main_score"])
            recomputed = entry.reported()
            if not abs(recomputed - entry.main_score) <= TOLERANCE:
                raise ItemsError(
                    f"{name} ({split}/{subset}): {metric} recomputed from items {recomputed:.8f} "
                    f"differs from mteb's {entry.main_score:.8f}"
                )
            entries.append(entry)
    main = task_main_score(task_json)  # every entry above is one of its scores
    return DatasetItems(name, family, metric, entries, main_score=main)


def collect_items(
    task: Any, prediction_folder: Path, task_json: dict[str, Any], family: str, output: Path
) -> tuple[str | None, str | None]:
    """Build and write ``<Task>.items.json`` from mteb's prediction file; (file name, problem).
    A problem is recorded, not raised: the comparison falls back to dataset-level statistics."""
    source = Path(task._predictions_path(prediction_folder))  # the file mteb wrote for the task
    name = str(task.metadata.name)
    try:
        if not source.exists():
            raise ItemsError(f"{name}: mteb wrote no prediction file")
        predictions = json.loads(source.read_text(encoding="utf-8"))
        items = build_items(task, predictions, task_json, family)
    except ItemsError as exc:
        log.warning("no item-level results for %s: %s", name, exc)
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - an items problem must never cost the evaluation itself
        log.warning("no item-level results for %s: %s: %s", name, type(exc).__name__, exc)
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        source.unlink(missing_ok=True)
    target = items_path(output, name)
    with atomic_file(target) as tmp:  # compact JSON
        tmp.write_text(json.dumps(items.to_dict(), separators=(",", ":")), encoding="utf-8")
    return target.name, None
