"""Acceptance 1, 2 and 4: local families end to end offline, real-task agreement, no stale scores."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from poolattn.evaluation import evaluate
from poolattn.evaluation.encoder import MTEBEncoder
from poolattn.evaluation.instructions import instruction_for
from poolattn.evaluation.local import MAIN_SCORES, LocalDataset, LocalTask, build_task, local_tasks

# one fast dataset per family from the shared data; summarization is synthetic (the shared data has none)
PICKS = (
    "sts/STSBenchmark",
    "retrieval/SciFact",
    "classification/TREC",
    "clustering/Banking77",
    "pair_classification/MSRP",
    "reranking/TRECQA",
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")


def write_summarization(folder: Path) -> None:
    """A tiny synthetic summarization set in SummEval's columns."""
    folder.mkdir(parents=True)
    rows = []
    for i in range(4):
        text = f"Report {i}: the council approved a new park with {i + 2} playgrounds near the river."
        rows.append(
            {
                "text": text,
                "human_summaries": [
                    f"Council approves park with {i + 2} playgrounds.",
                    "A new riverside park is approved.",
                ],
                "machine_summaries": [
                    f"The council approved a park number {i}.",
                    "Weather was sunny.",
                    "Park approved.",
                ],
                "relevance": [4.0, 1.0, 3.5],
            }
        )
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.fixture
def suite(tmp_path: Path, data_dir: Path) -> Path:
    """A user-style data folder: links to shared datasets (never copies) plus a synthetic one."""
    root = tmp_path / "data"
    for pick in PICKS:
        (root / pick).parent.mkdir(parents=True, exist_ok=True)
        (root / pick).symlink_to(data_dir / "eval" / pick)
    write_summarization(root / "summarization" / "ToyNews")
    return root


@pytest.mark.needs_data
def test_every_family_end_to_end(tiny_model, suite: Path, tmp_path: Path) -> None:
    run = evaluate(tiny_model(), tmp_path / "out", local_data=suite, max_items=8, cache_dir_path=None)
    families = {info["family"]: (name, info) for name, info in run["tasks"].items()}
    assert set(families) == set(MAIN_SCORES)
    for family, (name, info) in families.items():
        assert info["main_score_name"] == MAIN_SCORES[family]
        task_json = json.loads((tmp_path / "out" / info["file"]).read_text())
        entry = task_json["scores"]["test"][0]
        assert np.isfinite(entry[MAIN_SCORES[family]]), name
        assert entry["main_score"] == pytest.approx(info["main_score"])
        assert info["sampling"]["max_items"] == 8
    assert families["STS"][1]["real_mteb_task"] and families["Retrieval"][1]["real_mteb_task"]
    assert not families["Reranking"][1]["real_mteb_task"]
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["model"]["fingerprint"] and saved["settings"]["max_items"] == 8


@pytest.mark.needs_data
def test_real_sts_task_agrees_with_scipy(tiny_model, data_dir: Path) -> None:
    import mteb

    item = build_task(
        LocalDataset("sts", "STSBenchmark", data_dir / "eval" / "sts" / "STSBenchmark"), max_items=40
    )
    assert type(item.task).__name__ == "STSBenchmarkSTS"  # the real mteb task, data injected
    encoder = MTEBEncoder(tiny_model(), cache_dir=None)
    result = mteb.evaluate(
        encoder,
        item.task,
        cache=None,
        overwrite_strategy="always",
        co2_tracker=False,
        show_progress_bar=False,
    )
    reported = result.task_results[0].scores["test"][0]["cosine_spearman"]
    data = item.task.dataset["test"]
    instruction = instruction_for("STSBenchmark", "STS")
    e1 = encoder.encode_texts(data["sentence1"], query=True, instruction=instruction)
    e2 = encoder.encode_texts(data["sentence2"], query=True, instruction=instruction)
    cosine = (e1 * e2).sum(1) / (np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1))
    assert reported == pytest.approx(stats.spearmanr(cosine, data["score"]).statistic, abs=1e-6)


@pytest.mark.needs_data
def test_changed_weights_give_new_scores(tiny_model, data_dir: Path, tmp_path: Path) -> None:
    model = tiny_model()
    kwargs = dict(
        local_data=data_dir / "eval",
        tasks=["STSBenchmark", "MSRP"],
        max_items=30,
        cache_dir_path=tmp_path / "emb",
    )
    first = evaluate(model, tmp_path / "out", **kwargs)
    again = evaluate(model, tmp_path / "out", **kwargs)  # unchanged model: all from the embedding cache
    assert again["embedding_cache_stats"]["encoded"] == 0
    assert {k: v["main_score"] for k, v in again["tasks"].items()} == {
        k: v["main_score"] for k, v in first["tasks"].items()
    }
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    changed = evaluate(model, tmp_path / "out", **kwargs)
    assert changed["model"]["fingerprint"] != first["model"]["fingerprint"]
    assert changed["embedding_cache_stats"]["encoded"] > 0
    for name in first["tasks"]:
        assert changed["tasks"][name]["main_score"] != pytest.approx(first["tasks"][name]["main_score"])
    on_disk = json.loads((tmp_path / "out" / "run.json").read_text())
    assert on_disk["model"]["fingerprint"] == changed["model"]["fingerprint"]


@pytest.mark.needs_data
def test_max_items_is_deterministic_and_bounded(data_dir: Path) -> None:
    select = ["SciFact", "NFCorpus", "Banking77Classification", "TRECQA", "TwentyNewsgroupsClustering"]
    a = local_tasks(data_dir / "eval", max_items=25, select=select)
    b = local_tasks(data_dir / "eval", max_items=25, select=select)
    assert [t.sampling for t in a] == [t.sampling for t in b] and len(a) == 5
    for item in a:
        if item.family == "Reranking":
            assert 0 < item.sampling["candidates"] <= 50
        elif item.family == "Clustering":
            assert item.sampling["kept"] == 50 and item.sampling["sets"] == 2
        elif item.family == "Retrieval":
            split = item.task.dataset["default"]["test"]
            corpus = set(split["corpus"]["id"])
            assert len(corpus) <= 50 and 1 <= len(split["queries"]) <= 25
            for docs in split["relevant_docs"].values():
                assert docs and set(docs) <= corpus
        else:
            assert item.sampling["train_kept"] == max(25, item.task.samples_per_label * 77)


# sha256 (first 16 hex digits) of each task's injected data and sampling record at max_items=8,
# recorded with the single-module evaluation/local.py before it was split by job (the dev split
# then read through a staging folder that linked dev.jsonl as test.jsonl)
RECORDED = {
    "sts/SICK-R": "9b6adf4c31ae23c9",
    "sts/STSBenchmark": "7f0ae6ba22295cf8",
    "retrieval/SciFact": "d18e3ac4d4c00076",
    "classification/Banking77": "8604cc3307733c80",
    "classification/TREC": "3491d56f936a2ec6",
    "clustering/Banking77": "cdbc1a181f2762ba",
    "pair_classification/MSRP": "1f26aad9166286b9",
    "reranking/TRECQA": "195dc47fff9ab6b9",
}


def data_digest(item: LocalTask) -> str:
    """A digest of what mteb evaluates: the injected split data and the sampling record."""

    def plain(value: object) -> object:
        if hasattr(value, "column_names") and hasattr(value, "to_dict"):  # a datasets.Dataset
            return value.to_dict()
        return {str(k): plain(v) for k, v in value.items()} if isinstance(value, dict) else value

    blob = json.dumps([plain(item.task.dataset), item.sampling], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@pytest.mark.needs_data
def test_sampled_data_is_what_the_single_module_gave(data_dir: Path) -> None:
    """Same files, same sample: the data mteb scores (hence every score) is unchanged by the split,
    and the dev split read through its own file equals the old staged copy."""
    items = local_tasks(data_dir / "eval", max_items=8, select=list(RECORDED))
    assert {item.dataset: data_digest(item) for item in items} == RECORDED
    sts = LocalDataset("sts", "STSBenchmark", data_dir / "eval" / "sts" / "STSBenchmark")
    dev = build_task(sts, 8, "dev")
    assert dev.split == "dev" and dev.files["eval"].endswith("dev.jsonl")
    assert data_digest(dev) == "b797c89f8e6cc999"
    assert (
        dev.sampling["total"] != items[[i.dataset for i in items].index("sts/STSBenchmark")].sampling["total"]
    )


def test_loaders_read_the_files_they_are_given(tmp_path: Path) -> None:
    """A dataset's split names its files; the sampler reads exactly those (no fixed file names)."""
    folder = tmp_path / "retrieval" / "Toy"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "a cat"}\n{"_id": "d2", "text": "a dog"}\n')
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "cat"}\n{"_id": "q2", "text": "dog"}\n')
    (folder / "qrels" / "dev.tsv").write_text("q1\td1\t1\n")
    (folder / "qrels" / "test.tsv").write_text("q1\td1\t1\nq2\td2\t1\n")
    dataset = LocalDataset("retrieval", "Toy", folder)
    assert dataset.files("dev")["qrels"] == folder / "qrels" / "dev.tsv"
    assert dataset.has_split("dev") and not dataset.has_split("validation")
    test, dev = build_task(dataset), build_task(dataset, split="dev")
    assert (test.sampling["kept"], dev.sampling["kept"]) == (2, 1)
    assert dev.task.dataset["default"]["test"]["relevant_docs"] == {"q1": {"d1": 1}}
