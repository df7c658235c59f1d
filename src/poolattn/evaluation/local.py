"""Local evaluation data (the formats of ../shared/data/README.md) as mteb task objects.

Where mteb has a real task for a dataset, the local data is injected into that task
object (``task.dataset = ...; task.data_loaded = True``) so its evaluator, settings and
main score are exactly MTEB's. Other datasets get a task class of their family (a
subclass of mteb's ``AbsTask*`` with its own ``TaskMetadata``). A user's folder in the
same layout works the same way.

``max_items`` down-samples deterministically (seeded by dataset name); what was kept is
returned in ``LocalTask.sampling`` and recorded in every result:

- STS, pair classification, summarization: N rows (pairs / source texts);
- classification: N test texts; train keeps max(N, samples_per_label x labels) texts,
  stratified, so every label keeps the examples MTEB's classifier is fitted on;
- clustering: N sentences per clustering set, sets kept (in file order) while the total
  stays <= 2N;
- retrieval: up to N queries, taken in a seeded order while the union of their judged
  documents stays <= N (a query whose own judgements exceed the budget is skipped),
  plus N unjudged corpus documents as distractors: at most 2N documents;
- reranking: up to N queries with all of their candidates, taken in a seeded order while
  the candidates stay <= 2N (a query that does not fit is skipped).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

FOLDERS = {
    "sts": "STS",
    "retrieval": "Retrieval",
    "classification": "Classification",
    "clustering": "Clustering",
    "pair_classification": "PairClassification",
    "reranking": "Reranking",
    "summarization": "Summarization",
}
MAIN_SCORES = {
    "STS": "cosine_spearman",
    "Retrieval": "ndcg_at_10",
    "Classification": "accuracy",
    "Clustering": "v_measure",
    "PairClassification": "max_ap",
    "Reranking": "map_at_1000",
    "Summarization": "cosine_spearman",
}
# (folder, dataset) -> (mteb task name, hf_subset the local data stands for)
REAL_TASKS: dict[tuple[str, str], tuple[str, str]] = {
    ("sts", "STSBenchmark"): ("STSBenchmark", "default"),
    ("sts", "SICK-R"): ("SICK-R", "default"),
    ("retrieval", "SciFact"): ("SciFact", "default"),
    ("retrieval", "NFCorpus"): ("NFCorpus", "default"),
    ("classification", "Banking77"): ("Banking77Classification", "default"),
    ("classification", "AmazonCounterfactual"): ("AmazonCounterfactualClassification", "en"),
    ("clustering", "TwentyNewsgroups"): ("TwentyNewsgroupsClustering", "default"),
    ("summarization", "SummEval"): ("SummEval", "default"),
}
SUFFIX = {"Classification": "Classification", "Clustering": "Clustering", "Reranking": "Reranking"}
SEED = 42


@dataclass
class LocalTask:
    """A ready-to-evaluate mteb task built from a local folder, and what was sampled."""

    task: Any
    family: str
    dataset: str  # "folder/name"
    path: str
    real_mteb_task: bool
    sampling: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.task.metadata.name)


# --------------------------------------------------------------------------- reading
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a bad line is an error naming file and line."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _require(rows: list[dict[str, Any]], keys: tuple[str, ...], path: Path) -> None:
    missing = [k for k in keys if k not in rows[0]]
    if missing:
        raise ValueError(f"{path}: rows lack {missing} (found {sorted(rows[0])})")


def _rng(dataset: str) -> random.Random:
    return random.Random(f"{SEED}:{dataset}")


def _sample(n_total: int, max_items: int | None, dataset: str) -> list[int]:
    """Sorted indices of a seeded sample of ``max_items`` out of ``n_total`` (all if None)."""
    if max_items is None or max_items >= n_total:
        return list(range(n_total))
    return sorted(_rng(dataset).sample(range(n_total), max_items))


# --------------------------------------------------------------------------- discovery
def discover(root: str | Path) -> list[tuple[str, str, Path]]:
    """(folder, dataset, path) of every dataset under ``root`` (or ``root/eval``), sorted."""
    root = Path(root)
    if (root / "eval").is_dir() and not any((root / f).is_dir() for f in FOLDERS):
        root = root / "eval"
    found = []
    for folder in FOLDERS:
        base = root / folder
        if base.is_dir():
            for sub in sorted(p for p in base.iterdir() if p.is_dir()):
                found.append((folder, sub.name, sub))
    if not found:
        raise FileNotFoundError(f"{root}: no datasets found (expected folders {', '.join(FOLDERS)})")
    return found


def build_task(folder: str, name: str, path: Path, max_items: int | None = None) -> LocalTask:
    """The mteb task for one local dataset, data injected, down-sampled if asked."""
    family = FOLDERS[folder]
    dataset_key = f"{folder}/{name}"
    real = REAL_TASKS.get((folder, name))
    if real is None and _is_mteb_task(name, family):
        real = (name, "default")
    if real is not None:
        import mteb

        task_name, subset = real
        task = mteb.get_task(task_name, hf_subsets=[subset], eval_splits=["test"])
    else:
        task = _custom_task(family, name)
        subset = "default"
    split_data, sampling = LOADERS[family](path, max_items, dataset_key, task)
    if family in ("Retrieval", "Reranking"):
        task.dataset = {subset: {"test": split_data}}
    elif subset != "default":
        task.dataset = {subset: split_data}
    else:
        task.dataset = split_data
    task.data_loaded = True
    sampling = {"max_items": max_items, "seed": SEED, **sampling}
    return LocalTask(task, family, dataset_key, str(path), real is not None, sampling)


def local_tasks(
    root: str | Path, max_items: int | None = None, select: list[str] | None = None
) -> list[LocalTask]:
    """Tasks for every dataset under ``root``; ``select`` keeps those named by dataset name,
    ``folder/name`` or mteb task name."""
    wanted = set(select or [])
    tasks = []
    for folder, name, path in discover(root):
        real = REAL_TASKS.get((folder, name), (None,))[0]
        keys = {name, f"{folder}/{name}", real, _custom_name(FOLDERS[folder], name)}
        if wanted and not (wanted & keys):
            continue
        tasks.append(build_task(folder, name, path, max_items))
    return tasks


def _is_mteb_task(name: str, family: str) -> bool:
    """A user folder named exactly like an mteb task of the same family uses that task."""
    import mteb

    try:
        task = mteb.get_task(name)
    except Exception:  # noqa: BLE001 - mteb raises KeyError/ValueError for unknown names
        return False
    return str(task.metadata.type) == family and "eng-Latn" in str(task.metadata.eval_langs)


def _custom_name(family: str, name: str) -> str:
    suffix = SUFFIX.get(family, "")
    return name if name.endswith(suffix) else f"{name}{suffix}"


def _custom_task(family: str, name: str) -> Any:
    """An instance of a fresh mteb task class of ``family`` for a dataset mteb does not have."""
    from mteb.abstasks.classification import AbsTaskClassification
    from mteb.abstasks.clustering_legacy import AbsTaskClusteringLegacy
    from mteb.abstasks.pair_classification import AbsTaskPairClassification
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.abstasks.text.summarization import AbsTaskSummarization

    bases = {
        "STS": AbsTaskSTS,
        "Retrieval": AbsTaskRetrieval,
        "Reranking": AbsTaskRetrieval,
        "Classification": AbsTaskClassification,
        "Clustering": AbsTaskClusteringLegacy,
        "PairClassification": AbsTaskPairClassification,
        "Summarization": AbsTaskSummarization,
    }
    task_name = _custom_name(family, name)
    metadata = TaskMetadata(
        name=task_name,
        dataset={"path": f"local/{task_name}", "revision": "local"},
        description=f"Local dataset {name} ({family}), evaluated with mteb's {family} evaluator.",
        type=family,
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=MAIN_SCORES[family],
    )
    cls = type(f"Local{family}Task", (bases[family],), {"metadata": metadata})
    return cls()


# --------------------------------------------------------------------------- loaders
def _load_sts(path: Path, max_items: int | None, key: str, task: Any) -> tuple[DatasetDict, dict[str, Any]]:
    file = path / "test.jsonl"
    rows = read_jsonl(file)
    _require(rows, ("sentence1", "sentence2", "score"), file)
    keep = _sample(len(rows), max_items, key)
    scores = [float(r["score"]) for r in rows]
    if type(task).__name__.startswith("Local"):  # our own task: the score range comes from the data
        task.min_score, task.max_score = min(scores), max(scores)
    data = {c: [rows[i][c] for i in keep] for c in ("sentence1", "sentence2")}
    data["score"] = [scores[i] for i in keep]
    return DatasetDict(test=Dataset.from_dict(data)), {"unit": "pairs", "kept": len(keep), "total": len(rows)}


def _load_pairs(path: Path, max_items: int | None, key: str, task: Any) -> tuple[DatasetDict, dict[str, Any]]:
    file = path / "test.jsonl"
    rows = read_jsonl(file)
    _require(rows, ("sentence1", "sentence2", "label"), file)
    keep = _sample(len(rows), max_items, key)
    data = {c: [rows[i][c] for i in keep] for c in ("sentence1", "sentence2")}
    data["labels"] = [int(rows[i]["label"]) for i in keep]
    return DatasetDict(test=Dataset.from_dict(data)), {"unit": "pairs", "kept": len(keep), "total": len(rows)}


def _load_classification(
    path: Path, max_items: int | None, key: str, task: Any
) -> tuple[DatasetDict, dict[str, Any]]:
    train_rows, test_rows = read_jsonl(path / "train.jsonl"), read_jsonl(path / "test.jsonl")
    _require(train_rows, ("text", "label"), path / "train.jsonl")
    _require(test_rows, ("text", "label"), path / "test.jsonl")
    labels = sorted({str(r["label"]) for r in train_rows + test_rows})
    index = {label: i for i, label in enumerate(labels)}
    test_keep = _sample(len(test_rows), max_items, key + ":test")
    train_keep = list(range(len(train_rows)))
    if max_items is not None:
        per_label = int(getattr(task, "samples_per_label", 8))
        budget = max(max_items, per_label * len(labels))
        if budget < len(train_rows):
            by_label: dict[str, list[int]] = defaultdict(list)
            for i, row in enumerate(train_rows):
                by_label[str(row["label"])].append(i)
            rng = _rng(key + ":train")
            queues = [rng.sample(ids, len(ids)) for _, ids in sorted(by_label.items())]
            picked: list[int] = []
            while len(picked) < budget:  # round-robin over labels keeps them balanced
                for queue in queues:
                    if queue and len(picked) < budget:
                        picked.append(queue.pop())
            train_keep = sorted(picked)

    def make(rows: list[dict[str, Any]], keep: list[int]) -> Dataset:
        return Dataset.from_dict(
            {"text": [rows[i]["text"] for i in keep], "label": [index[str(rows[i]["label"])] for i in keep]}
        )

    data = DatasetDict(train=make(train_rows, train_keep), test=make(test_rows, test_keep))
    info = {
        "unit": "texts",
        "kept": len(test_keep),
        "total": len(test_rows),
        "train_kept": len(train_keep),
        "train_total": len(train_rows),
        "labels": len(labels),
    }
    return data, info


def _load_clustering(
    path: Path, max_items: int | None, key: str, task: Any
) -> tuple[DatasetDict, dict[str, Any]]:
    file = path / "test.jsonl"
    rows = read_jsonl(file)
    _require(rows, ("sentences", "labels"), file)
    n_sets = len(rows)
    if max_items is not None:  # N sentences per set, sets kept while the total stays <= 2N
        per_set = min(max_items, max(len(r["sentences"]) for r in rows))
        n_sets = max(1, min(len(rows), (2 * max_items) // per_set))
    sets = []
    for n, row in enumerate(rows[:n_sets]):
        keep = _sample(len(row["sentences"]), max_items, f"{key}:{n}")
        sets.append(
            {
                "sentences": [row["sentences"][i] for i in keep],
                "labels": [str(row["labels"][i]) for i in keep],
            }
        )
    info = {
        "unit": "sentences",
        "sets": n_sets,
        "sets_total": len(rows),
        "kept": sum(len(s["sentences"]) for s in sets),
        "total": sum(len(r["sentences"]) for r in rows),
    }
    return DatasetDict(test=Dataset.from_list(sets)), info


def _load_retrieval(
    path: Path, max_items: int | None, key: str, task: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    corpus = read_jsonl(path / "corpus.jsonl")
    queries = read_jsonl(path / "queries.jsonl")
    _require(corpus, ("_id", "text"), path / "corpus.jsonl")
    _require(queries, ("_id", "text"), path / "queries.jsonl")
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    qrels_file = path / "qrels" / "test.tsv"
    with qrels_file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            parts = line.rstrip("\n").split("\t")
            if number == 0 and not parts[-1].lstrip("-").isdigit():
                continue  # header line
            if len(parts) < 3:
                raise ValueError(f"{qrels_file}:{number + 1}: expected query-id, corpus-id, score")
            qrels[parts[0]][parts[1]] = int(parts[2])
    doc_ids = {str(d["_id"]) for d in corpus}
    query_ids = [str(q["_id"]) for q in queries if str(q["_id"]) in qrels]
    keep_queries, keep_docs = query_ids, doc_ids
    if max_items is not None:
        rng = _rng(key)
        judged: set[str] = set()
        keep_queries = []
        for qid in rng.sample(query_ids, len(query_ids)):
            docs = {d for d in qrels[qid] if d in doc_ids}
            if len(keep_queries) >= max_items:
                break
            if len(judged | docs) <= max_items:
                keep_queries.append(qid)
                judged |= docs
        unjudged = sorted(doc_ids - judged)
        keep_docs = judged | set(rng.sample(unjudged, min(max_items, len(unjudged))))
    kq = set(keep_queries)
    split = {
        "corpus": Dataset.from_list(
            [
                {"id": str(d["_id"]), "title": d.get("title") or "", "text": d["text"]}
                for d in corpus
                if str(d["_id"]) in keep_docs
            ]
        ),
        "queries": Dataset.from_list(
            [{"id": str(q["_id"]), "text": q["text"]} for q in queries if str(q["_id"]) in kq]
        ),
        "relevant_docs": {q: {d: s for d, s in qrels[q].items() if d in keep_docs} for q in keep_queries},
        "top_ranked": None,
    }
    info = {
        "unit": "queries",
        "kept": len(keep_queries),
        "total": len(query_ids),
        "corpus_kept": len(keep_docs),
        "corpus_total": len(doc_ids),
    }
    return split, info


def _load_reranking(
    path: Path, max_items: int | None, key: str, task: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    file = path / "test.jsonl"
    rows = read_jsonl(file)
    _require(rows, ("query", "positive", "negative"), file)
    usable = [i for i, r in enumerate(rows) if r["positive"] and r["negative"]]  # as mteb's reranking loader
    keep = usable
    if max_items is not None:  # queries in a seeded order while all their candidates fit in 2N
        keep, budget = [], 2 * max_items
        for i in _rng(key).sample(usable, len(usable)):
            size = len(rows[i]["positive"]) + len(rows[i]["negative"])
            if len(keep) < max_items and size <= budget:
                keep.append(i)
                budget -= size
        keep.sort()
    corpus, queries, relevant, top = [], [], {}, {}
    for i in keep:
        qid = f"q{i}"
        queries.append({"id": qid, "text": rows[i]["query"]})
        relevant[qid], top[qid] = {}, []
        for kind, label in (("positive", 1), ("negative", 0)):
            for j, text in enumerate(rows[i][kind]):
                did = f"{qid}_{kind[:3]}{j}"
                corpus.append({"id": did, "title": "", "text": text})
                relevant[qid][did] = label
                top[qid].append(did)
    split = {
        "corpus": Dataset.from_list(corpus),
        "queries": Dataset.from_list(queries),
        "relevant_docs": relevant,
        "top_ranked": top,
    }
    info = {"unit": "queries", "kept": len(keep), "total": len(rows), "candidates": len(corpus)}
    return split, info


def _load_summarization(
    path: Path, max_items: int | None, key: str, task: Any
) -> tuple[DatasetDict, dict[str, Any]]:
    file = path / "test.jsonl"
    rows = read_jsonl(file)
    columns = ("text", "human_summaries", "machine_summaries", "relevance")
    _require(rows, columns, file)
    keep = _sample(len(rows), max_items, key)
    if type(task).__name__.startswith("Local"):
        scores = [float(s) for r in rows for s in r["relevance"]]
        task.min_score, task.max_score = min(scores), max(scores)
    data = {c: [rows[i][c] for i in keep] for c in columns}
    return DatasetDict(test=Dataset.from_dict(data)), {"unit": "texts", "kept": len(keep), "total": len(rows)}


LOADERS = {
    "STS": _load_sts,
    "PairClassification": _load_pairs,
    "Classification": _load_classification,
    "Clustering": _load_clustering,
    "Retrieval": _load_retrieval,
    "Reranking": _load_reranking,
    "Summarization": _load_summarization,
}
