"""Issue 11, acceptance 1: per family, the main score recomputed from the stored items equals
the main score in the results JSON; the vectorised statistics equal scipy/sklearn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_backbone
from scipy import stats
from sklearn.metrics import average_precision_score

from poolattn.evaluation import evaluate
from poolattn.stats.items import Entry, ItemsError, read_items

PICKS = (
    "sts/STSBenchmark",
    "sts/BIOSSES",
    "retrieval/SciFact",
    "classification/TREC",
    "classification/AmazonCounterfactual",
    "clustering/Banking77",
    "pair_classification/MSRP",
    "reranking/TRECQA",
)
KINDS = {
    "STS": "correlation",
    "PairClassification": "ap",
    "Classification": "classification",
    "Clustering": "mean",
    "Retrieval": "mean",
    "Reranking": "mean",
    "Summarization": "mean",
}


def write_summarization(folder: Path, n: int = 5) -> None:
    """A tiny summarization set in SummEval's columns (SummEval's name -> mteb's real task)."""
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        rows.append(
            {
                "text": f"Report {i}: the council approved a new park with {i + 2} playgrounds near the river.",
                "human_summaries": [f"Council approves park with {i + 2} playgrounds.", "A riverside park."],
                "machine_summaries": [
                    f"The council approved park {i}.",
                    "Weather was sunny.",
                    "Park approved.",
                ],
                "relevance": [4.0, 1.0 + i / 10, 3.5],
            }
        )
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, tokenizer) -> tuple[Path, dict]:
    """One evaluation of a tiny random model on one or two datasets of every family."""
    from poolattn.design import model_config
    from poolattn.model import EmbeddingModel

    root = tmp_path_factory.mktemp("items")
    data = root / "data"
    for pick in PICKS:
        (data / pick).parent.mkdir(parents=True, exist_ok=True)
        (data / pick).symlink_to(data_dir / "eval" / pick)
    write_summarization(data / "summarization" / "ToyNews")
    write_summarization(data / "summarization" / "SummEval")  # mteb's deprecated evaluator
    backbone = tiny_backbone(tokenizer, "llama", seed=0)
    model = EmbeddingModel(backbone, tokenizer, model_config(pooling="mean", attention="causal", base="tiny"))
    run = evaluate(model, root / "out", local_data=data, max_items=24, cache_dir_path=None)
    return root / "out", run


@pytest.mark.needs_data
def test_recomputed_main_score_equals_results_json_per_family(evaluated) -> None:
    out, run = evaluated
    seen = set()
    for name, info in run["tasks"].items():
        assert info["items"] == f"{name}.items.json", (name, info.get("items_problem"))
        items = read_items(out / info["items"])
        task_json = json.loads((out / info["file"]).read_text())
        reported = np.mean([e["main_score"] for e in task_json["scores"]["test"]])
        assert items.recomputed_main_score() == pytest.approx(reported, abs=1e-6), name
        assert items.family == info["family"] and items.main_score_name == info["main_score_name"]
        assert {e.kind for e in items.entries} == {KINDS[info["family"]]}, name
        seen.add(info["family"])
    assert seen == set(KINDS)
    assert not list(out.glob(".predictions*")), "mteb's prediction files are cleaned up"


@pytest.mark.needs_data
def test_items_hold_what_a_statistic_needs(evaluated, data_dir: Path) -> None:
    out, run = evaluated
    by_family = {info["family"]: read_items(out / info["items"]) for info in run["tasks"].values()}
    sts = by_family["STS"].entries[0]
    assert sts.method == "spearman" and sts.n == 24
    assert np.isfinite(sts.data["pred"]).all() and len(set(sts.data["gold"])) > 1
    classification = by_family["Classification"].entries[0]
    assert len(classification.data["predictions"]) == 10  # mteb's classifier experiments
    per_experiment = [
        np.mean(np.equal(p, classification.data["gold"])) for p in classification.data["predictions"]
    ]
    assert classification.score() == pytest.approx(np.mean(per_experiment))
    retrieval = by_family["Retrieval"].entries[0]
    assert retrieval.round_digits == 5 and len(retrieval.extra["top_ids"][0]) == 10
    assert retrieval.extra["ndcg_at_10"] == retrieval.data["values"]  # nDCG@10 is SciFact's main score
    reranking = by_family["Reranking"].entries[0]
    assert by_family["Reranking"].main_score_name == "map_at_1000" and reranking.n >= 1
    pairs = by_family["PairClassification"].entries[0]
    assert set(pairs.data["scores"]) == {"similarity", "cosine", "manhattan", "euclidean", "dot"}
    clustering = by_family["Clustering"].entries[0]
    assert clustering.n == run["tasks"]["Banking77Clustering"]["sampling"]["sets"]


@pytest.mark.needs_data
def test_rerunning_removes_old_items_files(tiny_model, data_dir: Path, tmp_path: Path) -> None:
    model = tiny_model()
    kwargs = dict(local_data=data_dir / "eval", max_items=10, cache_dir_path=None)
    evaluate(model, tmp_path / "out", tasks=["STSBenchmark", "MSRP"], **kwargs)
    assert (tmp_path / "out" / "MSRP.items.json").exists()
    evaluate(model, tmp_path / "out", tasks=["STSBenchmark"], **kwargs)
    assert not (tmp_path / "out" / "MSRP.items.json").exists()  # never mixed into a later comparison
    assert (tmp_path / "out" / "STSBenchmark.items.json").exists()


def test_rowwise_statistics_equal_scipy_and_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(30, 40))
    labels[:, 0] = 1
    scores = np.round(rng.normal(size=(30, 40)), 1)  # many ties
    pairs = Entry(
        "ap",
        [str(i) for i in range(40)],
        {"labels": labels[0].tolist(), "scores": {"cosine": scores[0].tolist(), "dot": scores[1].tolist()}},
        method="max",
    )
    resamples = rng.integers(0, 40, size=(25, 40))
    expected_ap = [
        max(
            average_precision_score(labels[0][i], scores[0][i]),
            average_precision_score(labels[0][i], scores[1][i]),
        )
        for i in resamples
    ]
    assert pairs.score(resamples) == pytest.approx(expected_ap, abs=1e-12)  # ties and duplicates
    gold, pred = rng.integers(0, 5, 50).astype(float), rng.normal(size=50)
    entry = Entry(
        "correlation",
        [str(i) for i in range(50)],
        {"gold": gold.tolist(), "pred": pred.tolist()},
        method="spearman",
    )
    idx = rng.integers(0, 50, size=(20, 50))
    expected = [stats.spearmanr(gold[i], pred[i]).statistic for i in idx]
    assert entry.score(idx) == pytest.approx(expected, abs=1e-12)
    assert entry.score() == pytest.approx(stats.spearmanr(gold, pred).statistic)


def test_corrupt_items_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "X.items.json"
    path.write_text("{broken")
    with pytest.raises(ItemsError, match=r"X\.items\.json: corrupt JSON"):
        read_items(path)
    path.write_text(json.dumps({"poolattn_items_version": 99, "entries": []}))
    with pytest.raises(ItemsError, match="items version 99"):
        read_items(path)
