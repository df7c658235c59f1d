"""Down-sampling a local dataset for ``max_items`` (N): one seeded policy per mteb task family.

A sample is never degenerate: where N is below what the family's metric needs, it grows to that
minimum and ``info["note"]`` says so. STS, pair classification, summarization: N rows (STS keeps
two different scores, pair classification both labels). Classification: N test texts of three
labels (two for binary data); train keeps max(N, samples_per_label x labels) texts, stratified,
so MTEB's classifier keeps its examples per label. Clustering: N sentences per set, sets kept
while the total stays <= 2N, drawn cluster-first when a random sample averages under two
sentences per cluster. Retrieval: queries in a seeded order while their judged documents stay
<= N, plus N unjudged distractors. Reranking: queries with all their candidates while those stay
<= 2N. When nothing fits, the smallest query is kept. A dataset with no valid sample at all
raises ``SkipDataset`` with the reason.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from .local_files import (
    binary_field,
    number_field,
    read_classification,
    read_clustering,
    read_corpus,
    read_qrels,
    read_queries,
    read_reranking,
    read_sentence_pairs,
    read_summarization,
)

__all__ = ["SAMPLERS", "SEED", "Sample", "SkipDataset"]

SEED = 42
Files = Mapping[str, Path]  # role -> file (see local.LAYOUT)


class SkipDataset(Exception):
    """Raised by a sampler when the data cannot give a valid sample; the message is the reason."""


@dataclass
class Sample:
    """The sampled data, what was kept (``info``), blank texts per field, and the range of
    the data's gold scores (STS, summarization: a task of our own takes its scale from it)."""

    data: Any  # what mteb reads as the "test" split
    info: dict[str, Any]
    blanks: dict[str, int] = field(default_factory=dict)
    score_range: tuple[float, float] | None = None


# --------------------------------------------------------------------------- sampling helpers
def _rng(dataset: str) -> random.Random:
    return random.Random(f"{SEED}:{dataset}")


def _sample(n_total: int, max_items: int | None, dataset: str) -> list[int]:
    """Sorted indices of a seeded sample of ``max_items`` out of ``n_total`` (all if None)."""
    if max_items is None or max_items >= n_total:
        return list(range(n_total))
    return sorted(_rng(dataset).sample(range(n_total), max_items))


def _complete(keep: list[int], values: list[Any], key: str, distinct: int = 2) -> list[int]:
    """``keep`` plus, while it has fewer than ``distinct`` different values, the first index
    (seeded order) with a value it lacks."""
    seen = {values[i] for i in keep}
    extra = []
    for i in _rng(key + ":complete").sample(range(len(values)), len(values)):
        if len(seen) >= distinct:
            break
        if values[i] not in seen:
            seen.add(values[i])
            extra.append(i)
    return sorted(keep + extra)


def _count_blank(**fields: list[str]) -> dict[str, int]:
    counts = {name: sum(1 for t in texts if not t.strip()) for name, texts in fields.items()}
    return {name: n for name, n in counts.items() if n}


def _grown(kept: int, max_items: int | None, why: str) -> dict[str, str]:
    return {"note": why} if max_items is not None and kept > max_items else {}


def _retrieval_sample(
    corpus: list[dict], queries: list[dict], relevant: dict, top: Any, info: dict, documents: str
) -> Sample:
    """mteb's retrieval split of these rows; blank texts counted (``documents``: the corpus's name)."""
    split = {"corpus": Dataset.from_list(corpus), "queries": Dataset.from_list(queries)}
    texts = {documents: [c["title"] + c["text"] for c in corpus], "queries": [q["text"] for q in queries]}
    return Sample(split | {"relevant_docs": relevant, "top_ranked": top}, info, _count_blank(**texts))


# --------------------------------------------------------------------------- samplers
def _sentence_pairs(
    rows: list[Any], values: list[Any], column: str, max_items: int | None, key: str, why: str
) -> Sample:
    """The test split of a sentence-pair dataset (STS, pair classification): a sample of at least
    two pairs with two different ``values`` (``why`` notes a sample grown past ``max_items``)."""
    keep = _complete(_sample(len(rows), None if max_items is None else max(max_items, 2), key), values, key)
    data = {
        "sentence1": [rows[i][0] for i in keep],
        "sentence2": [rows[i][1] for i in keep],
        column: [values[i] for i in keep],
    }
    return Sample(
        DatasetDict(test=Dataset.from_dict(data)),
        {"unit": "pairs", "kept": len(keep), "total": len(rows)} | _grown(len(keep), max_items, why),
        _count_blank(sentences=data["sentence1"] + data["sentence2"]),
    )


def sample_sts(files: Files, max_items: int | None, key: str, task: Any) -> Sample:
    rows = read_sentence_pairs(files["eval"], "score", number_field)
    scores = [score for _, _, score in rows]
    if len(set(scores)) < 2:
        raise SkipDataset(
            f"{len(rows)} pair(s), all with score {scores[0]:g}: a correlation needs two different scores"
        )
    why = "grown past max_items: a correlation needs two pairs with different scores"
    sample = _sentence_pairs(rows, scores, "score", max_items, key, why)
    sample.score_range = (min(scores), max(scores))
    return sample


def sample_pairs(files: Files, max_items: int | None, key: str, task: Any) -> Sample:
    rows = read_sentence_pairs(files["eval"], "label", binary_field)
    labels = [label for _, _, label in rows]
    if len(set(labels)) < 2:
        raise SkipDataset(f"every pair has label {labels[0]}: average precision needs both labels")
    why = "grown past max_items: average precision needs a pair of each label"
    return _sentence_pairs(rows, labels, "labels", max_items, key, why)


def sample_classification(files: Files, max_items: int | None, key: str, task: Any) -> Sample:
    train_rows = read_classification(files["train"])
    test_rows = read_classification(files["eval"])
    train_labels = sorted({label for _, label in train_rows})
    if len(train_labels) < 2:
        raise SkipDataset(
            f"{files['train'].name} has the single label {train_labels[0]!r}: a classifier needs two"
        )
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
            rng = _rng(key + ":train")
            by_label = [
                [i for i, (_, lab) in enumerate(train_rows) if lab == label] for label in train_labels
            ]
            queues = [rng.sample(ids, len(ids))[::-1] for ids in by_label]
            rounds = zip_longest(*queues)  # round-robin over labels keeps them balanced
            train_keep = sorted([i for row in rounds for i in row if i is not None][:budget])

    def make(rows: list[tuple[str, str]], keep: list[int]) -> Dataset:
        return Dataset.from_dict(
            {"text": [rows[i][0] for i in keep], "label": [index[rows[i][1]] for i in keep]}
        )

    data = DatasetDict(train=make(train_rows, train_keep), test=make(test_rows, test_keep))
    why = "test grown past max_items: texts of three labels (two for binary data)"
    info = {
        "unit": "texts",
        "kept": len(test_keep),
        "total": len(test_rows),
        "train_kept": len(train_keep),
        "train_total": len(train_rows),
        "labels": len(labels),
    } | _grown(len(test_keep), max_items, why)
    blanks = _count_blank(
        train=[train_rows[i][0] for i in train_keep], test=[test_rows[i][0] for i in test_keep]
    )
    return Sample(data, info, blanks)


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


def sample_clustering(files: Files, max_items: int | None, key: str, task: Any) -> Sample:
    rows = read_clustering(files["eval"])
    # a set is used when it has two clusters of two sentences (else v-measure is trivially 1)
    usable = [n for n, (_, labels) in enumerate(rows) if sum(c >= 2 for c in Counter(labels).values()) >= 2]
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
        clusters = len({labels[i] for i in keep})  # at least two, averaging two sentences or more
        if max_items is not None and not 2 <= clusters <= len(keep) / 2:
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
    return Sample(DatasetDict(test=Dataset.from_list(sets)), info, blanks)


def sample_retrieval(files: Files, max_items: int | None, key: str, task: Any) -> Sample:
    corpus = read_corpus(files["corpus"])
    queries = read_queries(files["queries"])
    qrels = read_qrels(files["qrels"], queries, corpus)
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
    docs = [{"id": d, "title": title, "text": text} for d, (title, text) in corpus.items() if d in keep_docs]
    kept = set(keep_queries)
    query_rows = [{"id": q, "text": text} for q, text in queries.items() if q in kept]
    relevant = {q: {d: s for d, s in qrels[q].items() if d in keep_docs} for q in keep_queries}
    info = _queries_info(
        len(keep_queries), len(query_ids), note, corpus_kept=len(docs), corpus_total=len(corpus)
    )
    return _retrieval_sample(docs, query_rows, relevant, None, info, "corpus")


def sample_reranking(files: Files, max_items: int | None, key: str, task: Any) -> Sample:
    rows = read_reranking(files["eval"])
    usable = [i for i, (_, pos, neg) in enumerate(rows) if pos and neg]  # as mteb's reranking loader
    if not usable:
        raise SkipDataset("no query has both a positive and a negative candidate")
    keep, note = usable, ""
    if max_items is not None:  # queries in a seeded order while all their candidates fit in 2N
        order = _rng(key).sample(usable, len(usable))
        size = {i: len(rows[i][1]) + len(rows[i][2]) for i in usable}
        keep, budget = [], 2 * max_items
        for i in order:
            if len(keep) < max_items and size[i] <= budget:
                keep.append(i)
                budget -= size[i]
        if not keep:
            keep = [min(order, key=size.__getitem__)]
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
    info = _queries_info(len(keep), len(rows), note, candidates=len(corpus))
    return _retrieval_sample(corpus, queries, relevant, top, info, "candidates")


def _queries_info(kept: int, total: int, note: str, **counts: int) -> dict[str, Any]:
    """The sampling record of a query-based task (retrieval, reranking): queries kept of total,
    its corpus or candidate counts, and the note when the sampling had to bend its rule."""
    return {"unit": "queries", "kept": kept, "total": total, **counts, **({"note": note} if note else {})}


def sample_summarization(files: Files, max_items: int | None, key: str, task: Any) -> Sample:
    rows = read_summarization(files["eval"])
    scores = [s for r in rows for s in r["relevance"]]
    if len(set(scores)) < 2:
        raise SkipDataset("every machine summary has the same relevance: a correlation needs two values")
    keep = _sample(len(rows), max_items, key)
    columns = ("text", "human_summaries", "machine_summaries", "relevance")
    data = {c: [rows[i][c] for i in keep] for c in columns}
    blanks = _count_blank(
        texts=data["text"],
        summaries=[s for i in keep for s in rows[i]["human_summaries"] + rows[i]["machine_summaries"]],
    )
    return Sample(
        DatasetDict(test=Dataset.from_dict(data)),
        {"unit": "texts", "kept": len(keep), "total": len(rows)},
        blanks,
        (min(scores), max(scores)),
    )


SAMPLERS: dict[str, Callable[[Files, int | None, str, Any], Sample]] = {
    "STS": sample_sts,
    "PairClassification": sample_pairs,
    "Classification": sample_classification,
    "Clustering": sample_clustering,
    "Retrieval": sample_retrieval,
    "Reranking": sample_reranking,
    "Summarization": sample_summarization,
}
