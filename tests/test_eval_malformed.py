"""Issue 9, acceptance 2: a user's folder in the local formats. Malformed files give errors naming
file, line and field; empty texts are evaluated with a recorded treatment; a dataset with no
valid sample is a recorded skip that every reader of the results survives."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import save_tiny_backbone

from poolattn.cli import main
from poolattn.config import ConfigError
from poolattn.evaluation import evaluate
from poolattn.evaluation.local import EMPTY_TEXT_TREATMENT, LocalDataError, local_tasks

WORDS = "red green blue cat dog bird river stone cloud tree".split()


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")


def text(i: int) -> str:
    return f"the {WORDS[i % 10]} {WORDS[(i * 3 + 1) % 10]} number {i}"


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_suite(root: Path) -> Path:
    """One small valid dataset per family, in the layout of ../shared/data/eval."""
    jsonl(
        root / "sts/ToySTS/test.jsonl",
        [{"sentence1": text(i), "sentence2": text(i + 1), "score": i % 5} for i in range(8)],
    )
    jsonl(
        root / "pair_classification/ToyPairs/test.jsonl",
        [{"sentence1": text(i), "sentence2": text(i + 2), "label": i % 2} for i in range(8)],
    )
    for split, n in (("train", 24), ("test", 9)):
        jsonl(
            root / f"classification/ToyTopics/{split}.jsonl",
            [{"text": text(i), "label": WORDS[i % 3]} for i in range(n)],
        )
    jsonl(
        root / "clustering/ToyClusters/test.jsonl",
        [{"sentences": [text(i) for i in range(12)], "labels": [i % 3 for i in range(12)]}],
    )
    jsonl(
        root / "reranking/ToyRerank/test.jsonl",
        [
            {"query": text(i), "positive": [text(i + 1)], "negative": [text(i + 5), text(i + 6)]}
            for i in range(4)
        ],
    )
    beir = root / "retrieval/ToyBEIR"
    jsonl(beir / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": text(i)} for i in range(10)])
    jsonl(beir / "queries.jsonl", [{"_id": f"q{i}", "text": text(i + 20)} for i in range(3)])
    (beir / "qrels").mkdir()
    (beir / "qrels/test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\nq{i}\td{i + 3}\t1\n" for i in range(3))
    )
    return root


def replace_line(path: Path, line: int, new: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = new
    path.write_text("\n".join(lines) + "\n")


def edit_json(path: Path, line: int, change: Callable[[dict], None]) -> None:
    record = json.loads(path.read_text().splitlines()[line - 1])
    change(record)
    replace_line(path, line, json.dumps(record))


# (file, line, field or message part, how to break it)
MALFORMED = {
    "sts-bad-json": (
        "sts/ToySTS/test.jsonl",
        3,
        "not valid JSON",
        lambda p: replace_line(p, 3, '{"sentence1": "a",'),
    ),
    "sts-score-not-a-number": (
        "sts/ToySTS/test.jsonl",
        2,
        "'score'",
        lambda p: edit_json(p, 2, lambda r: r.update(score="high")),
    ),
    "sts-missing-field": (
        "sts/ToySTS/test.jsonl",
        4,
        "'sentence2'",
        lambda p: edit_json(p, 4, lambda r: r.pop("sentence2")),
    ),
    "pairs-label-not-binary": (
        "pair_classification/ToyPairs/test.jsonl",
        5,
        "'label'",
        lambda p: edit_json(p, 5, lambda r: r.update(label=2)),
    ),
    "classification-missing-label": (
        "classification/ToyTopics/train.jsonl",
        7,
        "'label'",
        lambda p: edit_json(p, 7, lambda r: r.pop("label")),
    ),
    "clustering-label-count": (
        "clustering/ToyClusters/test.jsonl",
        1,
        "'labels'",
        lambda p: edit_json(p, 1, lambda r: r["labels"].pop()),
    ),
    "reranking-positive-not-a-list": (
        "reranking/ToyRerank/test.jsonl",
        2,
        "'positive'",
        lambda p: edit_json(p, 2, lambda r: r.update(positive="just one")),
    ),
    "corpus-text-not-a-string": (
        "retrieval/ToyBEIR/corpus.jsonl",
        6,
        "'text'",
        lambda p: edit_json(p, 6, lambda r: r.update(text=None)),
    ),
    "corpus-duplicate-id": (
        "retrieval/ToyBEIR/corpus.jsonl",
        9,
        "'_id'",
        lambda p: edit_json(p, 9, lambda r: r.update(_id="d0")),
    ),
    "qrels-unknown-corpus-id": (
        "retrieval/ToyBEIR/qrels/test.tsv",
        3,
        "'corpus-id'",
        lambda p: replace_line(p, 3, "q0\tnope\t1"),
    ),
    "qrels-unknown-query-id": (
        "retrieval/ToyBEIR/qrels/test.tsv",
        5,
        "'query-id'",
        lambda p: replace_line(p, 5, "q9\td1\t1"),
    ),
    "qrels-score-not-a-number": (
        "retrieval/ToyBEIR/qrels/test.tsv",
        4,
        "'score'",
        lambda p: replace_line(p, 4, "q1\td1\trelevant"),
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_names_file_line_and_field(tmp_path: Path, case: str) -> None:
    relative, line, field, breaks = MALFORMED[case]
    root = make_suite(tmp_path / "data")
    assert len(local_tasks(root, max_items=4)) == 6  # the intact copy loads
    breaks(root / relative)
    with pytest.raises(LocalDataError) as caught:
        local_tasks(root, max_items=4)
    message = str(caught.value)
    assert f"{root / relative}:{line}: " in message and field in message, message
    assert isinstance(caught.value, ConfigError)  # the CLI reports it as a clear error (exit 2)


def test_malformed_file_is_a_clean_cli_error(
    tmp_path: Path, tokenizer, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_suite(tmp_path / "data")
    replace_line(root / "sts/ToySTS/test.jsonl", 2, '{"sentence1": "a", "sentence2": "b", "score": []}')
    out = ["--output", str(tmp_path / "out"), "--local-data", str(root), "--no-embedding-cache"]
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)  # any model: the data is what fails
    assert main(["eval", f"{base}:eos+causal", *out]) == 2
    err = capsys.readouterr().err
    assert "ToySTS/test.jsonl:2: field 'score' must be a number" in err and "Traceback" not in err


def test_empty_texts_are_evaluated_with_their_treatment_recorded(tiny_model, tmp_path: Path) -> None:
    root = make_suite(tmp_path / "data")
    corpus = root / "retrieval/ToyBEIR/corpus.jsonl"
    edit_json(corpus, 4, lambda r: r.update(title="", text=""))  # d3: judged relevant for q0
    edit_json(corpus, 8, lambda r: (r.pop("title"), r.update(text="  \n ")))  # d7: a distractor
    edit_json(root / "reranking/ToyRerank/test.jsonl", 1, lambda r: r["negative"].__setitem__(0, ""))
    run = evaluate(tiny_model(), tmp_path / "out", local_data=root, cache_dir_path=None)
    by_dataset = {info["dataset"]: info for info in run["tasks"].values()}
    retrieval, reranking = by_dataset["retrieval/ToyBEIR"], by_dataset["reranking/ToyRerank"]
    assert retrieval["empty_texts"] == {
        "count": 2,
        "by_field": {"corpus": 2},
        "treatment": EMPTY_TEXT_TREATMENT,
    }
    assert reranking["empty_texts"] == {
        "count": 1,
        "by_field": {"candidates": 1},
        "treatment": EMPTY_TEXT_TREATMENT,
    }
    assert retrieval["sampling"]["corpus_kept"] == 10  # the empty documents stay in the corpus
    for info in (retrieval, reranking):
        assert np.isfinite(info["main_score"])
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["tasks"]["ToyBEIR"]["empty_texts"]["count"] == 2


def test_encode_rejects_empty_unless_allowed(tiny_model) -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match=r"texts\[1\]: empty text"):
        model.encode(["a", ""])
    docs = model.encode(["", "   ", "a cat"], prompt_type="document", allow_empty=True)
    assert np.isfinite(docs).all() and np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(docs[0], docs[1], atol=1e-6)  # blank is the empty input
    assert not np.allclose(docs[0], docs[2], atol=1e-3)
    query = model.encode([""], prompt_type="query", instruction="Find it", allow_empty=True)
    assert not np.allclose(query[0], docs[0], atol=1e-3)  # a query keeps its prompt
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        model.encode([None], allow_empty=True)
    # no EOS appended and the instruction excluded from pooling: still a real vector, never zeros
    bare = tiny_model(pooling="mean", append_eos=False, exclude_instruction=True)
    out = bare.encode(["", " "], prompt_type="query", instruction="Find it", allow_empty=True)
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_dataset_without_a_valid_sample_is_a_recorded_skip(tiny_model, tmp_path: Path) -> None:
    root = make_suite(tmp_path / "data")
    jsonl(  # scores all equal: no correlation can be computed
        root / "sts/FlatSTS/test.jsonl",
        [{"sentence1": text(i), "sentence2": text(i + 1), "score": 3} for i in range(5)],
    )
    jsonl(  # one label only: no average precision
        root / "pair_classification/OneLabel/test.jsonl",
        [{"sentence1": text(i), "sentence2": text(i + 1), "label": 1} for i in range(5)],
    )
    outs = []
    for seed in (0, 1):
        out = tmp_path / f"out{seed}"
        run = evaluate(tiny_model(seed=seed), out, local_data=root, max_items=1, cache_dir_path=None)
        outs.append(out)
        skipped = {info["dataset"]: info for info in run["skipped"].values()}
        assert set(skipped) == {"sts/FlatSTS", "pair_classification/OneLabel"}
        assert "two different scores" in skipped["sts/FlatSTS"]["reason"]
        assert "both labels" in skipped["pair_classification/OneLabel"]["reason"]
        assert all(info["skipped"] is True for info in skipped.values())
        assert {info["dataset"] for info in run["tasks"].values()} == {
            "sts/ToySTS", "pair_classification/ToyPairs", "classification/ToyTopics",
            "clustering/ToyClusters", "reranking/ToyRerank", "retrieval/ToyBEIR",
        }  # fmt: skip
        saved = json.loads((out / "run.json").read_text())
        assert saved["skipped"] == json.loads(json.dumps(run["skipped"]))
    from poolattn.stats.report import format_run_table

    assert "ToySTS" in format_run_table(run)
    assert main(["compare", str(outs[0]), str(outs[1]), "--output", str(tmp_path / "cmp")]) == 0
