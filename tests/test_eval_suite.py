"""Issue 9, acceptance 1 (needs the shared data folder): every dataset of the shared suite evaluates end to end at --max-items
1, 4 and 8, and every sample is valid for its family's metric (never empty or degenerate)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_backbone
from transformers import PreTrainedTokenizerBase

from poolattn.design import model_config
from poolattn.evaluation import evaluate
from poolattn.evaluation.local import EMPTY_TEXT_TREATMENT, MAIN_SCORES, discover, local_tasks
from poolattn.model import EmbeddingModel

SIZES = (1, 4, 8)
pytestmark = pytest.mark.needs_data


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")


@pytest.fixture(scope="module")
def model(tokenizer: PreTrainedTokenizerBase) -> EmbeddingModel:
    """One tiny random Llama for the module (building it per test costs more than evaluating)."""
    backbone = tiny_backbone(tokenizer, "llama", seed=0)
    return EmbeddingModel(backbone, tokenizer, model_config(pooling="eos", base="tiny-llama", max_length=32))


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedding cache shared by the three sizes (their samples overlap)."""
    return tmp_path_factory.mktemp("embeddings")


@pytest.mark.parametrize("max_items", SIZES)
def test_every_dataset_evaluates(
    model: EmbeddingModel, data_dir: Path, embeddings: Path, tmp_path: Path, max_items: int
) -> None:
    suite = data_dir / "eval"
    expected = {f"{folder}/{name}" for folder, name, _ in discover(suite)}
    assert len(expected) >= 39
    run = evaluate(
        model,
        tmp_path / "out",
        local_data=suite,
        max_items=max_items,
        batch_size=64,
        cache_dir_path=embeddings,
    )
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["tasks"] == json.loads(json.dumps(run["tasks"]))
    evaluated = {info["dataset"]: info for info in saved["tasks"].values()}
    skipped = {info["dataset"]: info for info in saved["skipped"].values()}
    assert set(evaluated) | set(skipped) == expected and not set(evaluated) & set(skipped)
    for info in skipped.values():  # a skip always says why
        assert info["skipped"] is True and info["reason"]
    assert not skipped, f"the shared suite always gives a valid sample: {skipped}"
    assert min(Counter(info["family"] for info in evaluated.values()).values()) >= 6
    for dataset, info in evaluated.items():
        metric = MAIN_SCORES[info["family"]]
        assert info["main_score_name"] == metric, dataset
        entry = json.loads((tmp_path / "out" / info["file"]).read_text())["scores"]["test"][0]
        assert np.isfinite(entry[metric]) and entry["main_score"] == pytest.approx(info["main_score"]), (
            dataset
        )
        assert info["sampling"]["max_items"] == max_items and info["sampling"]["kept"] >= 1
        assert info["empty_texts"] == {"count": 0, "by_field": {}, "treatment": EMPTY_TEXT_TREATMENT}


@pytest.mark.parametrize("max_items", (*SIZES, 50))
def test_samples_are_valid_for_their_metric(data_dir: Path, max_items: int) -> None:
    """What each family's metric needs, checked on the injected data of every dataset."""
    items = local_tasks(data_dir / "eval", max_items=max_items)
    assert [i.sampling for i in items] == [i.sampling for i in local_tasks(data_dir / "eval", max_items)]
    for item in items:
        assert not item.skipped, item.dataset
        data = item.task.dataset
        data = data.get("eng", data.get("en", data)) if isinstance(data, dict) else data
        if item.family == "STS":
            scores = data["test"]["score"]
            assert len(set(scores)) >= 2 and len(scores) <= max(max_items, 2) + 1, item.dataset
        elif item.family == "PairClassification":
            labels = data["test"]["labels"]
            assert set(labels) == {0, 1} and len(labels) <= max(max_items, 2) + 1, item.dataset
        elif item.family == "Classification":
            test, train = data["test"]["label"], data["train"]["label"]
            assert len(set(test)) >= min(3, item.sampling["labels"]), item.dataset
            if len(set(test)) == 2:  # mteb scores two labels as binary 0/1
                assert set(test) == {0, 1}, item.dataset
            assert set(test) <= set(train) and len(set(train)) >= 2, item.dataset
            assert len(test) <= max(max_items, 2) + 2, item.dataset
        elif item.family == "Clustering":
            for labels in data["test"]["labels"]:
                sizes = Counter(labels).values()
                assert 2 <= len(sizes) <= len(labels) / 2, item.dataset  # >= 2 sentences per cluster
            assert item.sampling["kept"] <= 2 * max(max_items, 4), item.dataset
        else:  # Retrieval, Reranking
            split = data["default"]["test"]
            corpus = set(split["corpus"]["id"])
            assert 1 <= len(split["queries"]) <= max_items, item.dataset
            for docs in split["relevant_docs"].values():
                assert any(s > 0 for s in docs.values()) and set(docs) <= corpus, item.dataset
                if item.family == "Reranking":
                    assert 0 in docs.values(), item.dataset  # a negative to rank below
            if "note" not in item.sampling:  # judged + N distractors, or all candidates within 2N
                assert len(corpus) <= 2 * max_items, item.dataset


def test_real_mteb_tasks_for_the_new_datasets(data_dir: Path) -> None:
    """Datasets mteb has are evaluated by mteb's own task (SemRel24: the English subset, 0-1)."""
    items = {i.dataset: i for i in local_tasks(data_dir / "eval", max_items=8)}
    expected = {
        "sts/BIOSSES": "BIOSSES",
        "sts/SemRel24": "SemRel24STS",
        "classification/Emotion": "EmotionClassification",
        "classification/TweetSentimentExtraction": "TweetSentimentExtractionClassification",
    }
    for dataset, task in expected.items():
        assert items[dataset].real_mteb_task and items[dataset].name == task
    semrel = items["sts/SemRel24"].task
    assert semrel.hf_subsets == ["eng"] and max(semrel.dataset["eng"]["test"]["score"]) <= 1.0
