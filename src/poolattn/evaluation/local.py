"""Local evaluation data (the formats of ../shared/data/README.md) as mteb task objects.

Where mteb has a real task for a dataset, the local data is injected into that task
object (``task.dataset = ...; task.data_loaded = True``) so its evaluator, settings and
main score are exactly MTEB's. Other datasets get a task class of their family (a
subclass of mteb's ``AbsTask*`` with its own ``TaskMetadata``). A user's folder in the
same layout works the same way; a malformed file is a ``LocalDataError`` naming file,
line and field (``poolattn.evaluation.local_files``).

``max_items`` down-samples deterministically (seeded by dataset name); what was kept is
returned in ``LocalTask.sampling`` and recorded in every result. A sample is never empty
or degenerate: where ``max_items`` is below what the family's metric needs, the sample
grows to that minimum (``sampling["note"]`` says so):

- STS, pair classification, summarization: N rows (pairs / source texts); STS keeps at
  least 2 pairs with different scores (a correlation needs them), pair classification at
  least one pair of each label (average precision needs both);
- classification: N test texts (at least 2, of two labels when the data has two); train
  keeps max(N, samples_per_label x labels) texts, stratified, so every label keeps the
  examples MTEB's classifier is fitted on;
- clustering: N sentences per clustering set, sets kept (in file order) while the total
  stays <= 2N. A random sample is used when it averages >= 2 sentences per cluster;
  otherwise (many clusters, few sentences) it is drawn cluster-first: max(2, N // 2)
  clusters in a seeded order, two sentences each, the rest at random from those clusters
  (so at least 4 sentences). Sets with fewer than two clusters of two are not used;
- retrieval: up to N queries that have a relevant document, taken in a seeded order while
  the union of their judged documents stays <= N (a query whose own judgements exceed the
  budget is passed over), plus N unjudged corpus documents as distractors. When no query
  fits, the query with the fewest judged documents is kept and the corpus grows to hold
  them;
- reranking: up to N queries with a positive and a negative candidate, with all of their
  candidates, taken in a seeded order while the candidates stay <= 2N; when none fits,
  the query with the fewest candidates.

A dataset that cannot give a valid sample at all (an STS file whose scores are all equal,
pair classification with one label, no query with a relevant document, ...) is not
evaluated: ``LocalTask.skip_reason`` says why and the results record the skip.

Empty or blank texts (a corpus document with neither title nor text, an empty reranking
candidate, ...) stay in the dataset and are embedded as an empty input
(``EMPTY_TEXT_TREATMENT``); ``LocalTask.empty_texts`` counts them per field.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from .local_files import (
    LocalDataError,
    is_blank,
    read_classification,
    read_clustering,
    read_corpus,
    read_pairs,
    read_qrels,
    read_queries,
    read_reranking,
    read_sts,
    read_summarization,
)

__all__ = ["EMPTY_TEXT_TREATMENT", "FOLDERS", "MAIN_SCORES", "LocalDataError", "LocalTask", "local_tasks"]

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
# (folder, dataset) -> (mteb task name, hf_subset the local data stands for). Each was
# checked against mteb's task: same data, eval split "test", same label / score scale.
REAL_TASKS: dict[tuple[str, str], tuple[str, str]] = {
    ("sts", "STSBenchmark"): ("STSBenchmark", "default"),
    ("sts", "SICK-R"): ("SICK-R", "default"),
    ("sts", "BIOSSES"): ("BIOSSES", "default"),
    ("sts", "SemRel24"): ("SemRel24STS", "eng"),  # Track A English test, relatedness 0-1
    ("retrieval", "SciFact"): ("SciFact", "default"),
    ("retrieval", "NFCorpus"): ("NFCorpus", "default"),
    ("classification", "Banking77"): ("Banking77Classification", "default"),
    ("classification", "AmazonCounterfactual"): ("AmazonCounterfactualClassification", "en"),
    ("classification", "Emotion"): ("EmotionClassification", "default"),
    ("classification", "TweetSentimentExtraction"): ("TweetSentimentExtractionClassification", "default"),
    ("clustering", "TwentyNewsgroups"): ("TwentyNewsgroupsClustering", "default"),
    ("summarization", "SummEval"): ("SummEval", "default"),
}
SUFFIX = {"Classification": "Classification", "Clustering": "Clustering", "Reranking": "Reranking"}
SEED = 42
EMPTY_TEXT_TREATMENT = (
    "kept in the dataset and embedded as an empty text: a poolattn model encodes the query prompt "
    "(queries) or nothing (documents) followed by EOS, a sentence-transformers model the empty string"
)


class SkipDataset(Exception):
    """Raised by a loader when the data cannot give a valid sample; the message is the reason."""


@dataclass
class LocalTask:
    """A ready-to-evaluate mteb task built from a local folder, and what was sampled.

    ``skip_reason`` is set (and the task's data not loaded) when the dataset cannot be
    evaluated; ``empty_texts`` counts blank texts per field in the evaluated sample.
    """

    task: Any
    family: str
    dataset: str  # "folder/name"
    path: str
    real_mteb_task: bool
    sampling: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None
    empty_texts: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.task.metadata.name)

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None

    def empty_text_record(self) -> dict[str, Any]:
        """What results store about blank texts: how many, where, and how they were embedded."""
        return {
            "count": sum(self.empty_texts.values()),
            "by_field": dict(self.empty_texts),
            "treatment": EMPTY_TEXT_TREATMENT,
        }


Loaded = tuple[Any, dict[str, Any], dict[str, int]]  # split data, sampling info, blank texts per field


# --------------------------------------------------------------------------- sampling helpers
def _rng(dataset: str) -> random.Random:
    return random.Random(f"{SEED}:{dataset}")


def _sample(n_total: int, max_items: int | None, dataset: str) -> list[int]:
    """Sorted indices of a seeded sample of ``max_items`` out of ``n_total`` (all if None)."""
    if max_items is None or max_items >= n_total:
        return list(range(n_total))
    return sorted(_rng(dataset).sample(range(n_total), max_items))


def _order(n_total: int, dataset: str) -> list[int]:
    """A seeded permutation of ``range(n_total)``."""
    return _rng(dataset).sample(range(n_total), n_total)


def _complete(keep: list[int], values: list[Any], key: str, distinct: int = 2) -> list[int]:
    """``keep`` plus, while it has fewer than ``distinct`` different values, the first index
    (seeded order) with a value it lacks."""
    seen = {values[i] for i in keep}
    extra = []
    for i in _order(len(values), key + ":complete"):
        if len(seen) >= distinct:
            break
        if values[i] not in seen:
            seen.add(values[i])
            extra.append(i)
    return sorted(keep + extra)


def _count_blank(**fields: list[str]) -> dict[str, int]:
    counts = {name: sum(1 for t in texts if is_blank(t)) for name, texts in fields.items()}
    return {name: n for name, n in counts.items() if n}


def _grown(kept: int, max_items: int | None, why: str) -> dict[str, str]:
    return {"note": why} if max_items is not None and kept > max_items else {}


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
    """The mteb task for one local dataset, data injected, down-sampled if asked.

    Raises ``LocalDataError`` for a malformed file; a dataset with no valid sample comes back
    with ``skip_reason`` set.
    """
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items: must be >= 1, got {max_items}")
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
    item = LocalTask(task, family, dataset_key, str(path), real is not None)
    try:
        split_data, sampling, blanks = LOADERS[family](path, max_items, dataset_key, task)
    except SkipDataset as skip:
        item.skip_reason = str(skip)
        item.sampling = {"max_items": max_items, "seed": SEED}
        return item
    if family in ("Retrieval", "Reranking"):
        task.dataset = {subset: {"test": split_data}}
    elif subset != "default":
        task.dataset = {subset: split_data}
    else:
        task.dataset = split_data
    task.data_loaded = True
    item.sampling = {"max_items": max_items, "seed": SEED, **sampling}
    item.empty_texts = blanks
    return item


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


def _is_local(task: Any) -> bool:
    return type(task).__name__.startswith("Local")


# --------------------------------------------------------------------------- loaders
def _load_sts(path: Path, max_items: int | None, key: str, task: Any) -> Loaded:
    rows = read_sts(path / "test.jsonl")
    scores = [r.score for r in rows]
    if len(set(scores)) < 2:
        raise SkipDataset(
            f"{len(rows)} pair(s), all with score {scores[0]:g}: a correlation needs two different scores"
        )
    if _is_local(task):  # our own task: the score range comes from the data
        task.min_score, task.max_score = min(scores), max(scores)
    keep = _complete(_sample(len(rows), None if max_items is None else max(max_items, 2), key), scores, key)
    data = {
        "sentence1": [rows[i].sentence1 for i in keep],
        "sentence2": [rows[i].sentence2 for i in keep],
        "score": [scores[i] for i in keep],
    }
    why = "grown past max_items: a correlation needs two pairs with different scores"
    return _pair_split(data, len(rows), max_items, why)


def _load_pairs(path: Path, max_items: int | None, key: str, task: Any) -> Loaded:
    rows = read_pairs(path / "test.jsonl")
    labels = [label for _, _, label in rows]
    if len(set(labels)) < 2:
        raise SkipDataset(f"every pair has label {labels[0]}: average precision needs both labels")
    keep = _complete(_sample(len(rows), None if max_items is None else max(max_items, 2), key), labels, key)
    data = {
        "sentence1": [rows[i][0] for i in keep],
        "sentence2": [rows[i][1] for i in keep],
        "labels": [labels[i] for i in keep],
    }
    why = "grown past max_items: average precision needs a pair of each label"
    return _pair_split(data, len(rows), max_items, why)


def _pair_split(data: dict[str, list[Any]], total: int, max_items: int | None, why: str) -> Loaded:
    """The test split of a sentence-pair dataset (STS, pair classification) from its sampled
    columns, with the sampling record (``why`` notes a sample grown past ``max_items``) and the
    blank sentences counted."""
    kept = len(data["sentence1"])
    return (
        DatasetDict(test=Dataset.from_dict(data)),
        {"unit": "pairs", "kept": kept, "total": total} | _grown(kept, max_items, why),
        _count_blank(sentences=data["sentence1"] + data["sentence2"]),
    )


def _load_classification(path: Path, max_items: int | None, key: str, task: Any) -> Loaded:
    train_rows = read_classification(path / "train.jsonl")
    test_rows = read_classification(path / "test.jsonl")
    train_labels = sorted({label for _, label in train_rows})
    if len(train_labels) < 2:
        raise SkipDataset(f"train.jsonl has the single label {train_labels[0]!r}: a classifier needs two")
    labels = sorted(set(train_labels) | {label for _, label in test_rows})
    test_label = [label for _, label in test_rows]
    test_keep = _sample(len(test_rows), None if max_items is None else max(max_items, 2), key + ":test")
    # mteb scores a test set with exactly two labels as binary with labels 0 and 1: a sample of a
    # multi-class set keeps three labels, and a two-label test set gets indices 0 and 1
    test_keep = _complete(test_keep, test_label, key + ":test", 3 if len(labels) > 2 else 2)
    present = sorted({test_label[i] for i in test_keep})
    if len(present) == 2:
        labels = present + [label for label in labels if label not in present]
    index = {label: i for i, label in enumerate(labels)}
    train_keep = list(range(len(train_rows)))
    if max_items is not None:
        per_label = int(getattr(task, "samples_per_label", 8))
        budget = max(max_items, per_label * len(train_labels))
        if budget < len(train_rows):
            by_label: dict[str, list[int]] = defaultdict(list)
            for i, (_, label) in enumerate(train_rows):
                by_label[label].append(i)
            rng = _rng(key + ":train")
            queues = [rng.sample(ids, len(ids)) for _, ids in sorted(by_label.items())]
            picked: list[int] = []
            while len(picked) < budget:  # round-robin over labels keeps them balanced
                for queue in queues:
                    if queue and len(picked) < budget:
                        picked.append(queue.pop())
            train_keep = sorted(picked)

    def make(rows: list[tuple[str, str]], keep: list[int]) -> Dataset:
        return Dataset.from_dict(
            {"text": [rows[i][0] for i in keep], "label": [index[rows[i][1]] for i in keep]}
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
    info |= _grown(
        len(test_keep),
        max_items,
        "test grown past max_items: texts of three labels (two for binary data)",
    )
    blanks = _count_blank(
        train=[train_rows[i][0] for i in train_keep], test=[test_rows[i][0] for i in test_keep]
    )
    return data, info, blanks


def _clusterable(labels: list[str]) -> bool:
    """At least two clusters, and fewer clusters than sentences (else v-measure is trivially 1)."""
    return 2 <= len(set(labels)) < len(labels)


def _clusters_of_two(labels: list[str]) -> int:
    counts: dict[str, int] = defaultdict(int)
    for label in labels:
        counts[label] += 1
    return sum(1 for n in counts.values() if n >= 2)


def _cluster_first(labels: list[str], n: int, key: str) -> list[int]:
    """max(2, n // 2) clusters of >= 2 sentences in a seeded order, two sentences each, the rest
    (up to n in all) at random from those clusters."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        members[label].append(i)
    eligible = sorted(label for label, ids in members.items() if len(ids) >= 2)
    rng = _rng(key + ":clusters")
    chosen = rng.sample(eligible, min(len(eligible), max(2, n // 2)))
    keep: list[int] = []
    rest: list[int] = []
    for label in chosen:
        ids = rng.sample(members[label], len(members[label]))
        keep += ids[:2]
        rest += ids[2:]
    keep += rng.sample(rest, max(0, min(len(rest), n - len(keep))))
    return sorted(keep)


def _load_clustering(path: Path, max_items: int | None, key: str, task: Any) -> Loaded:
    rows = read_clustering(path / "test.jsonl")
    # a set is used when it has two clusters of two sentences (else v-measure is trivially 1)
    usable = [n for n, (_, labels) in enumerate(rows) if _clusters_of_two(labels) >= 2]
    if not usable:
        raise SkipDataset("no clustering set has two clusters with two sentences each")
    n_sets = len(usable)
    if max_items is not None:  # N sentences per set, sets kept while the total stays <= 2N
        per_set = min(max(max_items, 4), max(len(rows[n][0]) for n in usable))
        n_sets = max(1, min(len(usable), (2 * max_items) // per_set))
    sets, cluster_first = [], 0
    for n in usable[:n_sets]:
        sentences, labels = rows[n]
        keep = _sample(len(sentences), max_items, f"{key}:{n}")
        picked = [labels[i] for i in keep]
        if max_items is not None and not (_clusterable(picked) and 2 * len(set(picked)) <= len(picked)):
            keep = _cluster_first(labels, max_items, f"{key}:{n}")
            cluster_first += 1
        sets.append({"sentences": [sentences[i] for i in keep], "labels": [labels[i] for i in keep]})
    info = {
        "unit": "sentences",
        "sets": len(sets),
        "sets_total": len(rows),
        "kept": sum(len(s["sentences"]) for s in sets),
        "total": sum(len(s) for s, _ in rows),
        "clusters": [len(set(s["labels"])) for s in sets],
    }
    if cluster_first:
        info["note"] = (
            f"{cluster_first} set(s) drawn cluster-first (a random sample had under two sentences per cluster)"
        )
    blanks = _count_blank(sentences=[t for s in sets for t in s["sentences"]])
    return DatasetDict(test=Dataset.from_list(sets)), info, blanks


def _load_retrieval(path: Path, max_items: int | None, key: str, task: Any) -> Loaded:
    corpus = read_corpus(path / "corpus.jsonl")
    queries = read_queries(path / "queries.jsonl")
    qrels = read_qrels(path / "qrels" / "test.tsv", queries, corpus)
    # queries mteb can score: at least one relevant (grade > 0) judged document
    query_ids = [q for q in queries if any(s > 0 for s in qrels.get(q, {}).values())]
    if not query_ids:
        raise SkipDataset("no query has a relevant document (a judgement with score > 0)")
    keep_queries, keep_docs, note = query_ids, set(corpus), ""
    if max_items is not None:
        rng = _rng(key)
        order = rng.sample(query_ids, len(query_ids))
        judged: set[str] = set()
        keep_queries = []
        for qid in order:
            if len(keep_queries) >= max_items:
                break
            if len(judged | set(qrels[qid])) <= max_items:
                keep_queries.append(qid)
                judged |= set(qrels[qid])
        if not keep_queries:  # every query judges more than N documents: take the smallest
            smallest = min(order, key=lambda q: len(qrels[q]))
            keep_queries, judged = [smallest], set(qrels[smallest])
            note = (
                f"no query's judged documents fit in {max_items}: kept the query with the fewest "
                f"({len(judged)}), the corpus grown to hold them"
            )
        unjudged = sorted(set(corpus) - judged)
        keep_docs = judged | set(rng.sample(unjudged, min(max_items, len(unjudged))))
    kq = set(keep_queries)
    docs = [(d, corpus[d]) for d in corpus if d in keep_docs]
    query_rows = [(q, queries[q]) for q in queries if q in kq]
    split = {
        "corpus": Dataset.from_list([{"id": d, "title": title, "text": text} for d, (title, text) in docs]),
        "queries": Dataset.from_list([{"id": q, "text": text} for q, text in query_rows]),
        "relevant_docs": {q: {d: s for d, s in qrels[q].items() if d in keep_docs} for q in keep_queries},
        "top_ranked": None,
    }
    info: dict[str, Any] = {
        "unit": "queries",
        "kept": len(keep_queries),
        "total": len(query_ids),
        "corpus_kept": len(docs),
        "corpus_total": len(corpus),
    }
    if note:
        info["note"] = note
    blanks = _count_blank(
        corpus=[title + text for _, (title, text) in docs], queries=[text for _, text in query_rows]
    )
    return split, info, blanks


def _load_reranking(path: Path, max_items: int | None, key: str, task: Any) -> Loaded:
    rows = read_reranking(path / "test.jsonl")
    usable = [i for i, (_, pos, neg) in enumerate(rows) if pos and neg]  # as mteb's reranking loader
    if not usable:
        raise SkipDataset("no query has both a positive and a negative candidate")
    keep, note = usable, ""
    if max_items is not None:  # queries in a seeded order while all their candidates fit in 2N
        order = _rng(key).sample(usable, len(usable))
        keep, budget = [], 2 * max_items
        for i in order:
            size = len(rows[i][1]) + len(rows[i][2])
            if len(keep) < max_items and size <= budget:
                keep.append(i)
                budget -= size
        if not keep:
            keep = [min(order, key=lambda i: len(rows[i][1]) + len(rows[i][2]))]
            note = f"no query's candidates fit in {2 * max_items}: kept the query with the fewest"
        keep.sort()
    corpus, queries, relevant, top = [], [], {}, {}
    for i in keep:
        qid = f"q{i}"
        query, positives, negatives = rows[i]
        queries.append({"id": qid, "text": query})
        relevant[qid], top[qid] = {}, []
        for kind, label, texts in (("pos", 1, positives), ("neg", 0, negatives)):
            for j, text in enumerate(texts):
                did = f"{qid}_{kind}{j}"
                corpus.append({"id": did, "title": "", "text": text})
                relevant[qid][did] = label
                top[qid].append(did)
    split = {
        "corpus": Dataset.from_list(corpus),
        "queries": Dataset.from_list(queries),
        "relevant_docs": relevant,
        "top_ranked": top,
    }
    info: dict[str, Any] = {
        "unit": "queries",
        "kept": len(keep),
        "total": len(rows),
        "candidates": len(corpus),
    }
    if note:
        info["note"] = note
    blanks = _count_blank(candidates=[c["text"] for c in corpus], queries=[q["text"] for q in queries])
    return split, info, blanks


def _load_summarization(path: Path, max_items: int | None, key: str, task: Any) -> Loaded:
    rows = read_summarization(path / "test.jsonl")
    scores = [s for r in rows for s in r["relevance"]]
    if len(set(scores)) < 2:
        raise SkipDataset("every machine summary has the same relevance: a correlation needs two values")
    if _is_local(task):
        task.min_score, task.max_score = min(scores), max(scores)
    keep = _sample(len(rows), max_items, key)
    columns = ("text", "human_summaries", "machine_summaries", "relevance")
    data = {c: [rows[i][c] for i in keep] for c in columns}
    blanks = _count_blank(
        texts=data["text"],
        summaries=[s for i in keep for s in rows[i]["human_summaries"] + rows[i]["machine_summaries"]],
    )
    return (
        DatasetDict(test=Dataset.from_dict(data)),
        {"unit": "texts", "kept": len(keep), "total": len(rows)},
        blanks,
    )


LOADERS: dict[str, Callable[[Path, int | None, str, Any], Loaded]] = {
    "STS": _load_sts,
    "PairClassification": _load_pairs,
    "Classification": _load_classification,
    "Clustering": _load_clustering,
    "Retrieval": _load_retrieval,
    "Reranking": _load_reranking,
    "Summarization": _load_summarization,
}
