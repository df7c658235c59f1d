"""Embed a file of texts (.txt, .jsonl, .csv, .tsv) into vectors (.npy, .jsonl, .parquet).

The library behind ``poolattn encode``. The input is checked in full before a model loads. Chunks
are written atomically into ``.<output>.parts/`` beside a manifest of input, model and settings,
so a rerun resumes an interrupted run and ends byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .config import DTYPES, ConfigError, check_choice
from .io import atomic_file, bad_line_message, check_output_path, write_json_atomic

log = logging.getLogger(__name__)

INPUT_FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv"}
OUTPUT_FORMATS = (".npy", ".jsonl", ".parquet")
PROMPT_TYPES = ("query", "document")
DEFAULT_CHUNK_SIZE = 1024
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
MAX_REPORTED = 5  # bad lines named in an error message / summary


class InputError(ValueError):
    """The input file, one of its lines, or the output path is unusable; the message names it."""


@dataclass
class Record:
    """One input line (or CSV row): its 1-based line number, id, and text or the reason it is bad."""

    line: int
    id: Any
    text: str | None
    error: str | None = None


@dataclass
class EncodeSummary:
    """What ``encode_file`` did: ``encoded`` texts ran through the model in this call, ``reused``
    came from chunks an interrupted run had finished; ``encode_seconds`` excludes loading."""

    output: Path
    texts: int
    dim: int
    encoded: int
    reused: int
    chunks: int
    seconds: float
    encode_seconds: float
    skipped: list[tuple[int, str]]


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        yield from enumerate(fh, 1)


def _decode(raw: bytes, line: int) -> tuple[str, str | None]:
    """A line without its newline, decoded as UTF-8, and the decoding problem if any."""
    raw = raw.rstrip(b"\n").rstrip(b"\r")
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8"), None
    except UnicodeDecodeError as exc:
        byte = raw[exc.start : exc.start + 1].hex()
        problem = f"undecodable bytes (not UTF-8: byte 0x{byte} at offset {exc.start})"
        return raw.decode("utf-8", "replace"), problem


def _check_text(text: Any, what: str | None = None) -> str | None:
    if not isinstance(text, str):
        return f"{what} is {type(text).__name__}, not a string"
    if not text.strip():
        return "empty text" + (f" in {what}" if what else "")
    return None


def _txt_record(n: int, raw: bytes) -> Record:
    text, error = _decode(raw, n)
    return Record(n, n, text, error or _check_text(text))


def _jsonl_record(n: int, raw: bytes, text_field: str, id_field: str | None) -> Record:
    line, error = _decode(raw, n)
    if error or not line.strip():
        return Record(n, n, None, error or "empty line")
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return Record(n, n, None, f"invalid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(item, dict):
        return Record(n, n, None, f"expected a JSON object, got {type(item).__name__}")
    if text_field not in item:
        return Record(n, n, None, f"no field {text_field!r} (fields: {', '.join(map(str, item)) or 'none'})")
    ident: Any = n
    if id_field is not None:
        if id_field not in item:
            return Record(n, n, None, f"no id field {id_field!r}")
        ident = item[id_field]
        if isinstance(ident, bool) or not isinstance(ident, str | int):
            kind = type(ident).__name__
            return Record(n, n, None, f"id field {id_field!r} is {kind}; ids must be strings or integers")
    return Record(n, ident, item[text_field], _check_text(item[text_field], f"field {text_field!r}"))


def _csv_records(path: Path, column: str, id_field: str | None, delimiter: str) -> Iterator[Record]:
    bad_lines: dict[int, str] = {}  # line -> decoding problem (csv reads the replaced text)

    def lines() -> Iterator[str]:
        for n, raw in _lines(path):
            text, error = _decode(raw, n)
            if error:
                bad_lines[n] = error
            yield text + "\n"

    old_limit = csv.field_size_limit(2**31 - 1)  # long documents are normal input
    try:
        reader = csv.reader(lines(), delimiter=delimiter)
        try:
            names = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InputError(f"{path}: empty file (expected a header row naming the columns)") from None
        except csv.Error as exc:
            raise InputError(f"{path}:1: unreadable header ({exc})") from exc
        if bad_lines:
            raise InputError(f"{path}:{min(bad_lines)}: header has {bad_lines[min(bad_lines)]}")
        for name, what in ((column, "column"), (id_field, "id column")):
            if name is not None and name not in names:
                raise InputError(f"{path}: no {what} {name!r} in the header (columns: {', '.join(names)})")
        text_at = names.index(column)
        id_at = names.index(id_field) if id_field is not None else None
        start = reader.line_num + 1  # a quoted field may span lines: a row is named by its first
        try:
            for row in reader:
                first, start = start, reader.line_num + 1
                problem = next((bad_lines[n] for n in range(first, start) if n in bad_lines), None)
                if problem or not row:
                    yield Record(first, first, None, problem or "empty line")
                elif len(row) <= max(text_at, id_at or 0):
                    yield Record(
                        first, first, None, f"row has {len(row)} fields; no value in column {column!r}"
                    )
                else:
                    ident = row[id_at] if id_at is not None else first
                    yield Record(first, ident, row[text_at], _check_text(row[text_at], f"column {column!r}"))
        except csv.Error as exc:
            raise InputError(f"{path}:{start}: malformed {path.suffix[1:].upper()} ({exc})") from exc
    finally:
        csv.field_size_limit(old_limit)


def iter_records(path: str | Path, *, field: str = "text", id_field: str | None = None) -> Iterator[Record]:
    """Every line (CSV: row) of an input file as a ``Record``, bad ones carrying their reason;
    ``field``/``id_field``: the JSONL field or CSV/TSV column of the text / an id (default: line number)."""
    path = Path(path)
    fmt = INPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unsupported input type {path.suffix!r}; use {', '.join(INPUT_FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such input file")
    if fmt == "txt":
        if id_field is not None:
            raise ConfigError(f"--id-field: a .txt input has no fields ({path}); ids are line numbers")
        return (_txt_record(n, raw) for n, raw in _lines(path))
    if fmt == "jsonl":
        return (_jsonl_record(n, raw, field, id_field) for n, raw in _lines(path))
    return _csv_records(path, field, id_field, "," if fmt == "csv" else "\t")


@dataclass
class Scan:
    """The checked input: ids of the valid texts, and the skipped lines with their reasons."""

    ids: list[Any]
    skipped: list[tuple[int, str]]
    sha256: str
    size: int


def scan_input(
    path: str | Path, *, field: str = "text", id_field: str | None = None, skip_invalid: bool = False
) -> Scan:
    """Check every line before any encoding; raise ``InputError`` naming the first bad line
    unless ``skip_invalid``."""
    path = Path(path)
    ids: list[Any] = []
    skipped: list[tuple[int, str]] = []
    for record in iter_records(path, field=field, id_field=id_field):
        if record.error:
            skipped.append((record.line, record.error))
        else:
            ids.append(record.id)
    if skipped and not skip_invalid:
        line, reason = skipped[0]
        raise InputError(bad_line_message(f"{path}:{line}", reason, "pass --skip-invalid", len(skipped) - 1))
    if not ids:
        raise InputError(
            f"{path}: no texts to encode" + (f" ({len(skipped)} bad lines skipped)" if skipped else "")
        )
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return Scan(ids, skipped, digest, path.stat().st_size)


def _resolve(model: Any, max_length: int | None, dtype: str | None) -> tuple[Any, Callable[[], None]]:
    """(backend, restore) for a model string (anything ``poolattn eval`` accepts) or object.

    A caller's model is never changed: ``dtype`` only loads a named model, ``max_length`` gets a
    config view, and ``restore()`` gives back the training mode that ST's ``encode`` switches off.
    """
    from .backends.base import PoolattnBackend, as_backend
    from .backends.resolve import load_backend

    loaded_here = isinstance(model, str | Path)
    if dtype is not None and not loaded_here:
        raise ConfigError("dtype: applies to a model named by a string; set the dtype of your model yourself")
    if max_length is not None and max_length < 4:
        raise ConfigError(f"max_length: must be >= 4, got {max_length}")
    backend = load_backend(str(model), dtype=dtype) if loaded_here else as_backend(model)
    inner = getattr(backend, "model", None)
    if max_length is not None and isinstance(backend, PoolattnBackend):
        view = copy.copy(inner)  # shares every weight and submodule; only the config is its own
        view.config = replace(inner.config, max_length=max_length)
        backend = PoolattnBackend(view)
    elif max_length is not None and loaded_here:
        inner.max_seq_length = max_length
    elif max_length is not None:
        raise ConfigError("max_length: set max_seq_length on a sentence-transformers model you pass")
    training = bool(getattr(inner, "training", False))
    return backend, lambda: inner.train(True) if training else None


def parts_dir(output: str | Path) -> Path:
    """Where the finished chunks of an unfinished run of ``output`` are kept."""
    output = Path(output)
    return output.parent / f".{output.name}.parts"


def _chunk_path(parts: Path, index: int) -> Path:
    return parts / f"chunk-{index:06d}.npy"


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp, tmp.open("wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _finished_chunks(parts: Path, sizes: list[int]) -> tuple[set[int], int]:
    """The chunks an interrupted run finished (complete, readable), and their dimension (0: none)."""
    done: set[int] = set()
    dim = 0
    for index, rows in enumerate(sizes):
        path = _chunk_path(parts, index)
        if not path.exists():
            continue
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable chunk, encoding it again (%s)", path, exc)
            continue
        if array.ndim == 2 and array.shape[0] == rows and array.dtype == np.float32:
            done.add(index)
            dim = dim or int(array.shape[1])
    return done, dim


def _open_parts(parts: Path, manifest: dict[str, Any], restart: bool) -> None:
    """Start a parts folder, or check that an existing one belongs to the same run."""
    path = parts / MANIFEST_FILE
    if parts.exists() and (restart or not path.exists()):
        shutil.rmtree(parts)
    if not path.exists():
        parts.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, manifest)
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        old = {}
    if old != manifest:
        differs = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
        raise InputError(
            f"{parts} holds an unfinished run with different {', '.join(differs)}; rerun with the "
            "same settings to resume it, or pass --restart to discard it"
        )


def _assemble(output: Path, parts: Path, ids: list[Any], chunk_size: int, dim: int) -> None:
    """Join the chunks into ``output`` (one atomic rename)."""
    suffix = output.suffix.lower()
    starts = range(0, len(ids), chunk_size)
    chunks = ((start, np.load(_chunk_path(parts, i))) for i, start in enumerate(starts))
    with atomic_file(output) as tmp:
        if suffix == ".npy":
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(ids), dim))
            for start, array in chunks:
                target[start : start + len(array)] = array
            target.flush()
            del target
        elif suffix == ".jsonl":
            with tmp.open("w", encoding="utf-8") as fh:
                for start, array in chunks:
                    for ident, vector in zip(ids[start : start + len(array)], array.tolist(), strict=True):
                        fh.write(json.dumps({"id": ident, "embedding": vector}, ensure_ascii=False) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            id_type = pa.int64() if all(isinstance(i, int) for i in ids) else pa.string()
            id_values = ids if id_type == pa.int64() else [str(i) for i in ids]
            schema = pa.schema([("id", id_type), ("embedding", pa.list_(pa.float32(), dim))])
            with pq.ParquetWriter(str(tmp), schema) as writer:
                for start, array in chunks:
                    column = pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1), pa.float32()), dim)
                    chunk_ids = pa.array(id_values[start : start + len(array)], id_type)
                    writer.write_table(pa.table([chunk_ids, column], schema=schema))


@dataclass(frozen=True)
class _Settings:
    """The options that decide the vectors, as the manifest records them: a run resumes only
    chunks written with the same ones."""

    field: str
    id_field: str | None
    prompt_type: str
    instruction: str | None
    batch_size: int
    chunk_size: int
    skip_invalid: bool


def _check_request(
    input_path: Path, output: Path, settings: _Settings, *, dtype: str | None, overwrite: bool
) -> None:
    """Refuse bad options and an unusable output before the input is read or a model loaded."""
    check_choice("prompt_type", settings.prompt_type, PROMPT_TYPES)
    if dtype is not None:
        check_choice("dtype", dtype, DTYPES)
    if settings.instruction is not None and settings.prompt_type != "query":
        raise ConfigError("instruction: applies to queries only; add --prompt-type query")
    if settings.batch_size < 1 or settings.chunk_size < 1:
        raise ConfigError(
            f"batch_size and chunk_size must be >= 1, got {settings.batch_size} and {settings.chunk_size}"
        )
    if output.suffix.lower() not in OUTPUT_FORMATS:
        raise InputError(
            f"{output}: unsupported output type {output.suffix!r}; use {', '.join(OUTPUT_FORMATS)}"
        )
    check_output_path(output, "--output")
    if output.exists() and not overwrite:
        raise InputError(f"{output}: already exists (pass --overwrite to replace it)")
    if output.resolve() == input_path.resolve():
        raise InputError(f"{output}: the output would overwrite the input")


def encode_file(
    model: Any,
    input_path: str | Path,
    output_path: str | Path,
    *,
    field: str = "text",
    id_field: str | None = None,
    prompt_type: str = "document",
    instruction: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    dtype: str | None = None,
    skip_invalid: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    overwrite: bool = False,
    restart: bool = False,
    progress: bool = True,
) -> EncodeSummary:
    """Embed every text of ``input_path`` into ``output_path``; resumes an interrupted run.

    ``model``: anything ``poolattn eval`` accepts, or a loaded ``EmbeddingModel`` /
    ``SentenceTransformer``. ``field`` / ``id_field``: the JSONL field or CSV/TSV column with the
    text / an id (default: the line number). ``prompt_type``: ``document`` (bare) or ``query``
    (``instruction`` in the model's template). ``max_length``, ``dtype``: override the model's
    (``dtype`` only for a model named by a string). ``skip_invalid``: skip and count bad lines.
    ``chunk_size``: texts per resumable chunk. ``restart``: discard an unfinished run's chunks.
    """
    started = time.monotonic()
    input_path, output = Path(input_path), Path(output_path)
    settings = _Settings(field, id_field, prompt_type, instruction, batch_size, chunk_size, skip_invalid)
    _check_request(input_path, output, settings, dtype=dtype, overwrite=overwrite)
    scan = scan_input(input_path, field=field, id_field=id_field, skip_invalid=skip_invalid)
    for line, reason in scan.skipped[:MAX_REPORTED]:
        log.info("%s:%d: skipped: %s", input_path, line, reason)

    backend, restore = _resolve(model, max_length, dtype)
    parts = parts_dir(output)
    try:
        if instruction is not None and not backend.uses_instructions:
            log.warning("%s takes no instructions; --instruction is ignored", backend.name)
        manifest = {
            "version": MANIFEST_VERSION,
            "input": {"path": str(input_path.resolve()), "sha256": scan.sha256, "bytes": scan.size},
            "model": {"name": backend.name, "fingerprint": backend.fingerprint()},
            "settings": asdict(settings),
            "texts": len(scan.ids),
        }
        _open_parts(parts, manifest, restart)
        tick = time.monotonic()
        encoded, reused, dim = _encode_chunks(backend, input_path, parts, scan, settings, progress)
        encode_seconds = time.monotonic() - tick
    finally:
        restore()
    _assemble(output, parts, scan.ids, chunk_size, dim)
    shutil.rmtree(parts, ignore_errors=True)
    return EncodeSummary(
        output=output,
        texts=len(scan.ids),
        dim=dim,
        encoded=encoded,
        reused=reused,
        chunks=len(range(0, len(scan.ids), chunk_size)),
        seconds=time.monotonic() - started,
        encode_seconds=encode_seconds,
        skipped=scan.skipped,
    )


def _encode_chunks(
    backend: Any, input_path: Path, parts: Path, scan: Scan, settings: _Settings, progress: bool
) -> tuple[int, int, int]:
    """Encode the chunks not finished yet; returns (texts encoded, texts reused, dimension)."""
    from tqdm.auto import tqdm

    total = len(scan.ids)
    sizes = [min(settings.chunk_size, total - start) for start in range(0, total, settings.chunk_size)]
    done, dim = _finished_chunks(parts, sizes)
    reused = sum(sizes[i] for i in done)
    if done:
        log.info("resuming: %d of %d texts already encoded in %s", reused, total, parts)
    encoded = 0
    records = iter_records(input_path, field=settings.field, id_field=settings.id_field)
    texts = (str(record.text) for record in records if not record.error)
    query = settings.prompt_type == "query"
    with tqdm(
        total=total, initial=reused, desc="encode", unit="text", disable=not progress, dynamic_ncols=True
    ) as bar:
        for index, rows in enumerate(sizes):
            chunk = [next(texts) for _ in range(rows)]
            if index in done:
                continue
            out = backend.encode(  # the backend orders and batches the chunk
                chunk, query=query, instruction=settings.instruction, batch_size=settings.batch_size
            )
            _save_npy(_chunk_path(parts, index), np.asarray(out, dtype=np.float32))
            bar.update(len(chunk))
            encoded += len(chunk)
            dim = int(out.shape[1])
    return encoded, reused, dim
