"""``poolattn encode``: files of texts -> vectors equal to ``EmbeddingModel.encode``, in input
order; bad lines named or skipped and counted; a killed run resumes without re-encoding its
finished chunks and ends byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import save_tiny_backbone
from transformers import PreTrainedTokenizerBase

from poolattn.backends.base import PoolattnBackend
from poolattn.cli import main
from poolattn.encode_file import encode_file, parts_dir, scan_input
from poolattn.model import EmbeddingModel

TEXTS = [
    "A man is playing a guitar.",
    "ok",
    'She said "hello, world" and left; the door, painted blue, closed behind her slowly.',
    "Photosynthesis converts light into chemical energy stored in glucose molecules of the plant.",
    "Ünïcödé text: naïve café, 東京, emoji 🙂",
    "tabs\tinside",
    "The stock market fell today.",
    "x",
] * 5 + [f"text number {i} " + "word " * (i % 7) for i in range(13)]  # 53 texts, varied lengths

INSTRUCTION = "Retrieve passages that answer the question"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> Path:
    """A saved poolattn model (latent pooling, bidirectional) on a tiny random local backbone."""
    backbone = save_tiny_backbone(tmp_path_factory.mktemp("tiny-backbone"), tokenizer)
    model = EmbeddingModel.from_pretrained(
        str(backbone), attention="bidirectional", pooling="latent", dtype="float32", max_length=32
    )
    out = tmp_path_factory.mktemp("models") / "tiny-latent"
    model.save(out)
    return out


@pytest.fixture(scope="module")
def model(model_dir: Path) -> EmbeddingModel:
    return EmbeddingModel.load(model_dir)


def write_inputs(folder: Path, texts: list[str]) -> dict[str, Path]:
    """The same texts as .txt, .jsonl (with ids) and .csv (quoted commas and newlines escaped by csv)."""
    import csv

    paths = {"txt": folder / "texts.txt", "jsonl": folder / "texts.jsonl", "csv": folder / "texts.csv"}
    paths["txt"].write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    paths["jsonl"].write_text(
        "".join(
            json.dumps({"id": f"doc-{i}", "body": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)
        ),
        encoding="utf-8",
    )
    with paths["csv"].open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "body"])
        writer.writerows([[f"doc-{i}", t] for i, t in enumerate(texts)])
    return paths


def run_cli(*args: str) -> int:
    return main(["encode", *args, "--no-progress"])


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv"])
def test_encode_equals_model_encode_in_input_order(
    fmt: str, model_dir: Path, model: EmbeddingModel, tmp_path: Path
) -> None:
    source = write_inputs(tmp_path, TEXTS)[fmt]
    out = tmp_path / "vectors.npy"
    field = [] if fmt == "txt" else ["--field", "body"]
    assert run_cli(str(model_dir), "--input", str(source), "--output", str(out), "--batch-size", "4",
                   "--chunk-size", "16", *field) == 0  # fmt: skip
    vectors = np.load(out)
    expected = model.encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape == (len(TEXTS), 32)
    assert np.abs(vectors - expected).max() <= 1e-6
    assert not parts_dir(out).exists()  # the chunks are removed once the output is complete


def test_query_prompt_and_outputs_with_ids(model_dir: Path, model: EmbeddingModel, tmp_path: Path) -> None:
    source = write_inputs(tmp_path, TEXTS)["jsonl"]
    common = ["--input", str(source), "--field", "body", "--id-field", "id", "--prompt-type", "query",
              "--instruction", INSTRUCTION, "--chunk-size", "20"]  # fmt: skip
    for suffix in ("jsonl", "parquet", "npy"):
        assert run_cli(str(model_dir), *common, "--output", str(tmp_path / f"q.{suffix}")) == 0
    expected = model.encode(TEXTS, prompt_type="query", instruction=INSTRUCTION)
    assert np.abs(expected - model.encode(TEXTS)).max() > 1e-3  # the prompt matters here
    vectors = np.load(tmp_path / "q.npy")
    assert np.abs(vectors - expected).max() <= 1e-6
    rows = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"doc-{i}" for i in range(len(TEXTS))]
    assert np.array_equal(np.array([r["embedding"] for r in rows], dtype=np.float32), vectors)  # exact floats

    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "q.parquet")
    assert table.column("id").to_pylist() == [f"doc-{i}" for i in range(len(TEXTS))]
    assert np.array_equal(np.array(table.column("embedding").to_pylist(), dtype=np.float32), vectors)


BAD_CASES = {  # file name, content, line of the first bad record, words in the message
    "empty-line.txt": (b"first\nsecond\n   \nfourth\n", 3, "empty text"),
    "bad-bytes.txt": (b"first\nsecond\nthird\nfo\xffurth\nfifth\n", 4, "undecodable bytes"),
    "missing-field.jsonl": (b'{"text": "a"}\n{"body": "b"}\n{"text": "c"}\n', 2, "no field 'text'"),
    "bad-json.jsonl": (b'{"text": "a"}\n{"text": "b"}\n{"text": \n', 3, "invalid JSON"),
    "empty-cell.csv": (b'id,text\n1,hello\n2,"multi\nline text"\n3,\n4,bye\n', 5, "empty text"),
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_line_is_an_error_naming_its_line(
    name: str, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, line, words = BAD_CASES[name]
    source = tmp_path / name
    source.write_bytes(content)
    out = tmp_path / "out.npy"
    assert run_cli(str(model_dir), "--input", str(source), "--output", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{source}:{line}:" in err and words in err and "--skip-invalid" in err
    assert not out.exists() and not parts_dir(out).exists()


def test_skip_invalid_skips_and_counts(
    model_dir: Path, model: EmbeddingModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(
        b'{"text": "alpha"}\n'
        b"\n"  # 2: empty line
        b'{"text": "beta"}\n'
        b'{"text": ""}\n'  # 4: empty text
        b'{"title": "no text"}\n'  # 5: missing field
        b'{"text": "g\xe9mma"}\n'  # 6: Latin-1 byte, not UTF-8
        b'{"text": "delta"}\n'
    )
    out = tmp_path / "out.jsonl"
    assert run_cli(str(model_dir), "--input", str(source), "--output", str(out), "--skip-invalid") == 0
    err = capsys.readouterr().err
    assert "skipped 4 invalid lines" in err and "line 6 (undecodable bytes" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 3, 7]  # ids default to line numbers
    expected = model.encode(["alpha", "beta", "delta"])
    assert np.abs(np.array([r["embedding"] for r in rows], dtype=np.float32) - expected).max() <= 1e-6
    scan = scan_input(source, skip_invalid=True)
    assert [line for line, _ in scan.skipped] == [2, 4, 5, 6]


KILL_SCRIPT = """
import sys, time
import poolattn.encode_file as ef

save = ef._save_npy

def slow_save(path, array):  # a slow model: time to kill the process between chunks
    save(path, array)
    time.sleep(1.5)

ef._save_npy = slow_save
from poolattn.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Counter:
    """Counts the texts that reach the model."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts = 0
        original = PoolattnBackend.encode

        def counting(backend: PoolattnBackend, texts: list[str], **kwargs: object) -> np.ndarray:
            self.texts += len(texts)
            return original(backend, texts, **kwargs)

        monkeypatch.setattr(PoolattnBackend, "encode", counting)


def test_killed_run_resumes_from_finished_chunks(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_inputs(tmp_path, TEXTS)["txt"]
    args = ["--input", str(source), "--chunk-size", "8", "--batch-size", "4", "--no-progress"]
    reference = tmp_path / "reference.npy"
    assert main(["encode", str(model_dir), *args, "--output", str(reference)]) == 0

    out = tmp_path / "vectors.npy"
    script = tmp_path / "slow_encode.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), "encode", str(model_dir), *args, "--output", str(out)],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    parts = parts_dir(out)
    deadline = time.monotonic() + 180
    while len(list(parts.glob("chunk-*.npy"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the encode subprocess wrote no chunks in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    finished = len(list(parts.glob("chunk-*.npy")))
    total_chunks = -(-len(TEXTS) // 8)
    assert 2 <= finished < total_chunks
    assert not list(parts.glob("*.tmp"))  # chunk writes are atomic

    counter = Counter(monkeypatch)
    assert main(["encode", str(model_dir), *args, "--output", str(out)]) == 0
    assert counter.texts == len(TEXTS) - finished * 8  # finished chunks are not encoded again
    assert out.read_bytes() == reference.read_bytes()
    assert not parts.exists()


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_interrupted_library_run_resumes_byte_identical(
    suffix: str, model: EmbeddingModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_inputs(tmp_path, TEXTS)["jsonl"]
    opts = {"field": "body", "id_field": "id", "chunk_size": 10, "batch_size": 8, "progress": False}
    reference = encode_file(model, source, tmp_path / f"reference.{suffix}", **opts)
    assert (reference.encoded, reference.reused, reference.chunks) == (len(TEXTS), 0, 6)

    import poolattn.encode_file as ef

    save, calls = ef._save_npy, []

    def failing_save(path: Path, array: np.ndarray) -> None:
        if len(calls) == 3:
            raise Interrupt
        calls.append(path)
        save(path, array)

    monkeypatch.setattr(ef, "_save_npy", failing_save)
    out = tmp_path / f"vectors.{suffix}"
    with pytest.raises(Interrupt):
        encode_file(model, source, out, **opts)
    monkeypatch.setattr(ef, "_save_npy", save)
    counter = Counter(monkeypatch)
    summary = encode_file(model, source, out, **opts)
    assert (summary.reused, summary.encoded, counter.texts) == (30, len(TEXTS) - 30, len(TEXTS) - 30)
    assert out.read_bytes() == (tmp_path / f"reference.{suffix}").read_bytes()


def test_changed_settings_do_not_reuse_chunks(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_inputs(tmp_path, TEXTS)["txt"]
    out = tmp_path / "v.npy"
    import poolattn.encode_file as ef

    save = ef._save_npy

    def interrupt_after_first(path: Path, array: np.ndarray) -> None:
        save(path, array)
        raise KeyboardInterrupt

    monkeypatch.setattr(ef, "_save_npy", interrupt_after_first)
    args = [str(model_dir), "--input", str(source), "--output", str(out), "--chunk-size", "8"]
    assert run_cli(*args) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    monkeypatch.setattr(ef, "_save_npy", save)
    assert run_cli(*args, "--prompt-type", "query") == 2
    assert "different settings" in capsys.readouterr().err
    assert run_cli(*args, "--prompt-type", "query", "--restart") == 0
    assert run_cli(*args) == 2  # the output exists now
    assert "--overwrite" in capsys.readouterr().err


def test_library_options_leave_a_callers_model_as_it_was(model: EmbeddingModel, tmp_path: Path) -> None:
    source = tmp_path / "t.txt"
    source.write_text("a fairly long sentence that will be cut short by the token limit\nshort\n")
    summary = encode_file(model, source, tmp_path / "v.npy", max_length=6, progress=False)
    assert summary.texts == 2 and model.config.max_length == 32
    model.config.max_length = 6
    try:
        expected = model.encode(["a fairly long sentence that will be cut short by the token limit", "short"])
    finally:
        model.config.max_length = 32
    assert np.abs(np.load(tmp_path / "v.npy") - expected).max() <= 1e-6
    with pytest.raises(ValueError, match="dtype: applies to a model named by a string"):
        encode_file(model, source, tmp_path / "w.npy", dtype="bfloat16", progress=False)


@pytest.mark.needs_model("all-MiniLM-L6-v2")
def test_packaged_minilm_matches_sentence_transformers(tmp_path: Path) -> None:
    from poolattn.backends.base import load_sentence_transformer

    source = tmp_path / "t.csv"
    source.write_text('text\nA man is playing a guitar.\n"Someone, on stage, plays music."\nStocks fell.\n')
    assert run_cli("all-MiniLM-L6-v2", "--input", str(source), "--output", str(tmp_path / "v.npy")) == 0
    st = load_sentence_transformer("all-MiniLM-L6-v2")
    texts = ["A man is playing a guitar.", "Someone, on stage, plays music.", "Stocks fell."]
    expected = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(np.load(tmp_path / "v.npy") - expected).max() <= 1e-6
