"""Local evaluation data (``ROOT/<family folder>/<dataset>/``, formats in
../shared/data/README.md) as mteb task objects.

Where mteb has a real task for a dataset, the local data is injected into that task object
(``task.dataset = ...; task.data_loaded = True``) so its evaluator, settings and main score are
exactly MTEB's; other datasets get a task class of their family with its own ``TaskMetadata``.
A dataset that cannot give a valid sample (``local_sampling``) is not evaluated:
``LocalTask.skip_reason`` says why. Blank texts stay in the dataset and are embedded as an empty
input (``EMPTY_TEXT_TREATMENT``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .instructions import SUFFIXES
from .local_files import LocalDataError as LocalDataError  # re-exported: the error of malformed data
from .local_sampling import SAMPLERS, SEED, SkipDataset

FOLDERS = {
    "sts": "STS",
    "retrieval": "Retrieval",
    "classification": "Classification",
    "clustering": "Clustering",
    "pair_classification": "PairClassification",
    "reranking": "Reranking",
    "summarization": "Summarization",
}
_ONE_FILE = {"eval": "{split}.jsonl"}
# family -> role -> file name under the dataset folder; "{split}" is the evaluated split
LAYOUT: dict[str, dict[str, str]] = {
    **dict.fromkeys(["STS", "PairClassification", "Clustering", "Reranking", "Summarization"], _ONE_FILE),
    "Classification": {"train": "train.jsonl", "eval": "{split}.jsonl"},
    "Retrieval": {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "qrels/{split}.tsv"},
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
EMPTY_TEXT_TREATMENT = (
    "kept in the dataset and embedded as an empty text: a poolattn model encodes the query prompt "
    "(queries) or nothing (documents) followed by EOS, a sentence-transformers model the empty string"
)


class LocalDataset(NamedTuple):
    """One dataset folder found under a data root: ``(folder, name, path)``."""

    folder: str  # the family folder, e.g. "sts"
    name: str
    path: Path

    @property
    def family(self) -> str:
        return FOLDERS[self.folder]

    @property
    def key(self) -> str:
        """``folder/name``: the dataset's name in results and the seed of its sampling."""
        return f"{self.folder}/{self.name}"

    def files(self, split: str = "test") -> dict[str, Path]:
        """Role -> file the family's sampler reads, for ``split`` (train data stays train)."""
        return {role: self.path / name.format(split=split) for role, name in LAYOUT[self.family].items()}

    def has_split(self, split: str) -> bool:
        return all(path.is_file() for path in self.files(split).values())


def discover(root: str | Path) -> list[LocalDataset]:
    """Every dataset under ``root`` (or ``root/eval``), sorted by family folder then name."""
    root = Path(root)
    if (root / "eval").is_dir() and not any((root / f).is_dir() for f in FOLDERS):
        root = root / "eval"
    found = []
    for folder in FOLDERS:
        base = root / folder
        if base.is_dir():
            subs = sorted(p for p in base.iterdir() if p.is_dir())
            found += [LocalDataset(folder, sub.name, sub) for sub in subs]
    if not found:
        raise FileNotFoundError(f"{root}: no datasets found (expected folders {', '.join(FOLDERS)})")
    return found


@dataclass
class LocalTask:
    """A ready-to-evaluate mteb task built from a local dataset, and what was sampled; its data is
    not loaded when ``skip_reason`` is set."""

    task: Any
    family: str
    dataset: str  # "folder/name"
    path: str
    real_mteb_task: bool
    split: str = "test"  # the split read (presented to mteb as its "test" split)
    files: dict[str, str] = field(default_factory=dict)  # role -> file read
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


def build_task(dataset: LocalDataset, max_items: int | None = None, split: str = "test") -> LocalTask:
    """The mteb task for one local dataset, its ``split`` files read, down-sampled and injected as
    mteb's "test" split; ``LocalDataError`` for a malformed file."""
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items: must be >= 1, got {max_items}")
    family = dataset.family
    real = REAL_TASKS.get((dataset.folder, dataset.name))
    if real is None and _is_mteb_task(dataset.name, family):
        real = (dataset.name, "default")
    if real is not None:
        import mteb

        task_name, subset = real
        task = mteb.get_task(task_name, hf_subsets=[subset], eval_splits=["test"])
    else:
        task = _custom_task(family, dataset.name)
        subset = "default"
    files = dataset.files(split)
    read = {role: str(path) for role, path in files.items()}
    item = LocalTask(task, family, dataset.key, str(dataset.path), real is not None, split, read)
    try:
        sample = SAMPLERS[family](files, max_items, dataset.key, task)
    except SkipDataset as skip:
        item.skip_reason = str(skip)
        item.sampling = {"max_items": max_items, "seed": SEED}
        return item
    if real is None and sample.score_range is not None:  # our own task: the scale comes from the data
        task.min_score, task.max_score = sample.score_range
    if family in ("Retrieval", "Reranking"):
        task.dataset = {subset: {"test": sample.data}}
    elif subset != "default":
        task.dataset = {subset: sample.data}
    else:
        task.dataset = sample.data
    task.data_loaded = True
    item.sampling = {"max_items": max_items, "seed": SEED, **sample.info}
    item.empty_texts = sample.blanks
    return item


def local_tasks(
    root: str | Path, max_items: int | None = None, select: list[str] | None = None
) -> list[LocalTask]:
    """Tasks for every dataset under ``root``; ``select`` keeps those named by dataset name,
    ``folder/name`` or mteb task name."""
    wanted = set(select or [])
    return [
        build_task(dataset, max_items)
        for dataset in discover(root)
        if not wanted or wanted & task_names(dataset)
    ]


def task_names(dataset: LocalDataset) -> set[str]:
    """The names a dataset can be selected by: its name, ``folder/name``, its mteb task name."""
    real = REAL_TASKS.get((dataset.folder, dataset.name), (None,))[0]
    names = {dataset.name, dataset.key, _custom_name(dataset.family, dataset.name)}
    return names | ({real} if real else set())


def _is_mteb_task(name: str, family: str) -> bool:
    """A user folder named exactly like an mteb task of the same family uses that task."""
    import mteb

    try:
        task = mteb.get_task(name)
    except Exception:  # noqa: BLE001 - mteb raises KeyError/ValueError for unknown names
        return False
    return str(task.metadata.type) == family and "eng-Latn" in str(task.metadata.eval_langs)


def _custom_name(family: str, name: str) -> str:
    suffix = family if family in SUFFIXES else ""
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
    return type(f"Local{family}Task", (bases[family],), {"metadata": metadata})()
