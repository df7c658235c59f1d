"""Reading local evaluation files (formats: ../shared/data/README.md). A malformed file stops with
a ``LocalDataError`` naming file, line and field, not later inside mteb; blank texts are allowed
(real corpora have empty documents)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..io import JsonlError, read_jsonl


class LocalDataError(ConfigError):
    """A local evaluation file is missing or malformed; the message names file, line and field."""


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``path:line``, object) for every non-blank line; a line that is not a JSON object is an error."""
    if not path.is_file():
        raise LocalDataError(f"{path}: missing (see the formats in ../shared/data/README.md)")
    found = False
    try:
        for record in read_jsonl(path):
            if not isinstance(record.value, dict):
                raise LocalDataError(
                    f"{record.where}: expected a JSON object, got {type(record.value).__name__}"
                )
            found = True
            yield record.where, record.value
    except JsonlError as exc:
        raise LocalDataError(f"{exc.where}: not valid JSON ({exc.reason})") from exc
    if not found:
        raise LocalDataError(f"{path}: no records")


def _field(record: dict[str, Any], name: str, where: str) -> Any:
    if name not in record:
        raise LocalDataError(f"{where}: field {name!r} is missing (found {sorted(record)})")
    return record[name]


def _bad(where: str, name: str, expected: str, value: Any) -> LocalDataError:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return LocalDataError(
        f"{where}: field {name!r} must be {expected}, got {type(value).__name__} {text[:60]}"
    )


def text_field(record: dict[str, Any], name: str, where: str, *, optional: bool = False) -> str:
    """A string field; blank is allowed. ``optional`` fields may be absent or null (read as "")."""
    if optional and record.get(name) is None:
        return ""
    value = _field(record, name, where)
    if not isinstance(value, str):
        raise _bad(where, name, "a string", value)
    return value


def _number(value: Any) -> float | None:
    """A finite number, or a string holding one (``"3.5"``); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def number_field(record: dict[str, Any], name: str, where: str) -> float:
    """A finite number (a numeric string such as ``"3.5"`` is accepted)."""
    value = _field(record, name, where)
    number = _number(value)
    if number is None:
        raise _bad(where, name, "a number", value)
    return number


def binary_field(record: dict[str, Any], name: str, where: str) -> int:
    """A 0/1 label (``true``/``false`` and ``"0"``/``"1"`` accepted)."""
    value = _field(record, name, where)
    if value in (0, 1, "0", "1"):  # True and False too
        return int(value)
    raise _bad(where, name, "0 or 1", value)


def label_field(value: Any, name: str, where: str) -> str:
    """A class or cluster label: a string or an integer, read as a string."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad(where, name, "a string or an integer label", value)
    return str(value)


def text_list_field(record: dict[str, Any], name: str, where: str) -> list[str]:
    value = _field(record, name, where)
    if not isinstance(value, list):
        raise _bad(where, name, "a list of strings", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _bad(where, f"{name}[{i}]", "a string", item)
    return value


def read_sentence_pairs(path: Path, column: str, read: Any) -> list[tuple[str, str, Any]]:
    """``{sentence1, sentence2, <column>}`` lines (STS: ``score``, pair classification: ``label``)."""
    return [
        (text_field(r, "sentence1", w), text_field(r, "sentence2", w), read(r, column, w))
        for w, r in _records(path)
    ]


def read_classification(path: Path) -> list[tuple[str, str]]:
    """``{text, label}`` lines; labels read as strings."""
    return [
        (text_field(r, "text", w), label_field(_field(r, "label", w), "label", w)) for w, r in _records(path)
    ]


def read_clustering(path: Path) -> list[tuple[list[str], list[str]]]:
    """One clustering set per line: ``{sentences: [...], labels: [...]}`` of equal length."""
    sets = []
    for where, record in _records(path):
        sentences = text_list_field(record, "sentences", where)
        raw = _field(record, "labels", where)
        if not isinstance(raw, list):
            raise _bad(where, "labels", "a list", raw)
        if len(raw) != len(sentences):
            raise LocalDataError(
                f"{where}: field 'labels' has {len(raw)} labels for {len(sentences)} sentences"
            )
        sets.append((sentences, [label_field(v, f"labels[{i}]", where) for i, v in enumerate(raw)]))
    return sets


def read_reranking(path: Path) -> list[tuple[str, list[str], list[str]]]:
    """``{query, positive: [...], negative: [...]}`` lines."""
    return [
        (text_field(r, "query", w), text_list_field(r, "positive", w), text_list_field(r, "negative", w))
        for w, r in _records(path)
    ]


def read_summarization(path: Path) -> list[dict[str, Any]]:
    """SummEval's columns: ``{text, human_summaries, machine_summaries, relevance}``."""
    rows = []
    for where, record in _records(path):
        machine = text_list_field(record, "machine_summaries", where)
        relevance = _field(record, "relevance", where)
        if not isinstance(relevance, list) or len(relevance) != len(machine):
            raise LocalDataError(
                f"{where}: field 'relevance' must be a list with one number per machine summary"
            )
        scores = [number_field({"relevance": v}, "relevance", where) for v in relevance]
        rows.append(
            {
                "text": text_field(record, "text", where),
                "human_summaries": text_list_field(record, "human_summaries", where),
                "machine_summaries": machine,
                "relevance": scores,
            }
        )
    return rows


def _read_ids(path: Path, read: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for where, record in _records(path):
        raw = _field(record, "_id", where)
        if isinstance(raw, bool) or not isinstance(raw, str | int) or not str(raw).strip():
            raise _bad(where, "_id", "a non-empty string or integer", raw)
        key = str(raw)
        if key in out:
            raise LocalDataError(f"{where}: field '_id': {key!r} appears twice in {path.name}")
        out[key] = read(record, where)
    return out


def read_corpus(path: Path) -> dict[str, tuple[str, str]]:
    """BEIR ``corpus.jsonl``: ``{_id, title?, text}`` -> id: (title, text)."""
    return _read_ids(path, lambda r, w: (text_field(r, "title", w, optional=True), text_field(r, "text", w)))


def read_queries(path: Path) -> dict[str, str]:
    """BEIR ``queries.jsonl``: ``{_id, text}`` -> id: text."""
    return _read_ids(path, lambda r, w: text_field(r, "text", w))


def read_qrels(path: Path, queries: dict[str, Any], corpus: dict[str, Any]) -> dict[str, dict[str, int]]:
    """BEIR ``qrels/<split>.tsv``: ``query-id<TAB>corpus-id<TAB>score`` (an optional header line);
    ids must exist in ``queries.jsonl`` / ``corpus.jsonl``, the score is an integer grade."""
    if not path.is_file():
        raise LocalDataError(f"{path}: missing (BEIR layout: qrels/<split>.tsv)")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 3:
                raise LocalDataError(f"{where}: expected query-id, corpus-id, score separated by tabs")
            qid, did, raw = parts[0].strip(), parts[1].strip(), parts[2].strip()
            score = _number(raw)
            if number == 1 and score is None:
                continue  # the header line
            if score is None or score != int(score):
                raise LocalDataError(f"{where}: field 'score' must be an integer grade, got {raw!r}")
            if qid not in queries:
                raise LocalDataError(f"{where}: field 'query-id': {qid!r} is not an _id of queries.jsonl")
            if did not in corpus:
                raise LocalDataError(f"{where}: field 'corpus-id': {did!r} is not an _id of corpus.jsonl")
            qrels.setdefault(qid, {})[did] = int(score)
    if not qrels:
        raise LocalDataError(f"{path}: no judgements")
    return qrels
