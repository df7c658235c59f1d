"""Embed a file of texts into a file of vectors: the library behind ``poolattn encode``.

``encode_file(model, "texts.jsonl", "vectors.npy")`` reads one text per line of a ``.txt``, a
field of a ``.jsonl`` or a column of a ``.csv``/``.tsv``, and writes float32 vectors in input
order to ``.npy``, or with ids to ``.jsonl``/``.parquet``. The input is checked in full before
any model is loaded: a bad line (empty text, missing field, undecodable bytes) is an error
naming its line, or is skipped and counted with ``skip_invalid``.

Large files survive interruption: vectors are written chunk by chunk, each chunk atomically,
into ``.<output>.parts/`` beside the output, with a manifest of the input digest, the model
fingerprint and the settings. Rerunning the same command reuses the finished chunks and encodes
only the rest; the final output (assembled atomically, then the parts removed) is
byte-identical to an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
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
    skipped: list[tuple[int, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- reading
def input_format(path: Path) -> str:
    """``txt``, ``jsonl``, ``csv`` or ``tsv`` from the file name."""
    fmt = INPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unsupported input type {path.suffix!r}; use {', '.join(INPUT_FORMATS)}")
    return fmt


def _decode(raw: bytes, line: int) -> tuple[str, str | None]:
    """A line without its newline, decoded as UTF-8, and the decoding problem if any."""
    raw = raw.rstrip(b"\n").rstrip(b"\r")
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8"), None
    except UnicodeDecodeError as exc:
        byte = raw[exc.start : exc.start + 1].hex()
        return raw.decode(
            "utf-8", "replace"
        ), f"undecodable bytes (not UTF-8: byte 0x{byte} at offset {exc.start})"


def _check_text(text: Any, what: str | None = None) -> str | None:
    if not isinstance(text, str):
        return f"{what} is {type(text).__name__}, not a string"
    if not text.strip():
        return "empty text" + (f" in {what}" if what else "")
    return None


def _check_id(value: Any, id_field: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return f"id field {id_field!r} is {type(value).__name__}; ids must be strings or integers"
    return None


def _txt_records(path: Path) -> Iterator[Record]:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            text, error = _decode(raw, n)
            yield Record(n, n, text, error or _check_text(text))


def _jsonl_records(path: Path, text_field: str, id_field: str | None) -> Iterator[Record]:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            line, error = _decode(raw, n)
            if error:
                yield Record(n, n, None, error)
                continue
            if not line.strip():
                yield Record(n, n, None, "empty line")
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Record(n, n, None, f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(item, dict):
                yield Record(n, n, None, f"expected a JSON object, got {type(item).__name__}")
                continue
            if text_field not in item:
                yield Record(
                    n, n, None, f"no field {text_field!r} (fields: {', '.join(map(str, item)) or 'none'})"
                )
                continue
            ident: Any = n
            if id_field is not None:
                if id_field not in item:
                    yield Record(n, n, None, f"no id field {id_field!r}")
                    continue
                ident = item[id_field]
                if problem := _check_id(ident, id_field):
                    yield Record(n, n, None, problem)
                    continue
            text = item[text_field]
            yield Record(n, ident, text, _check_text(text, f"field {text_field!r}"))


@contextlib.contextmanager
def _no_csv_field_limit() -> Iterator[None]:
    old = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents are normal input
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _csv_records(path: Path, column: str, id_field: str | None, delimiter: str) -> Iterator[Record]:
    bad_lines: dict[int, str] = {}

    def lines(fh: Any) -> Iterator[str]:
        for n, raw in enumerate(fh, 1):
            text, error = _decode(raw, n)
            if error:
                bad_lines[n] = error
            yield text + "\n"

    with path.open("rb") as fh, _no_csv_field_limit():
        reader = csv.reader(lines(fh), delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: empty file (expected a header row naming the columns)") from None
        except csv.Error as exc:
            raise InputError(f"{path}:1: unreadable header ({exc})") from exc
        if bad_lines:
            raise InputError(f"{path}:1: header has {bad_lines[1]}")
        names = [h.strip() for h in header]
        if column not in names:
            raise InputError(f"{path}: no column {column!r} in the header (columns: {', '.join(names)})")
        if id_field is not None and id_field not in names:
            raise InputError(f"{path}: no id column {id_field!r} in the header (columns: {', '.join(names)})")
        text_at = names.index(column)
        id_at = names.index(id_field) if id_field is not None else None
        last = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(f"{path}:{last + 1}: malformed {path.suffix[1:].upper()} ({exc})") from exc
            start, last = last + 1, reader.line_num
            problem = next((bad_lines[n] for n in range(start, last + 1) if n in bad_lines), None)
            if problem:
                yield Record(start, start, None, problem)
            elif not row:
                yield Record(start, start, None, "empty line")
            elif len(row) <= max(text_at, id_at or 0):
                yield Record(start, start, None, f"row has {len(row)} fields; no value in column {column!r}")
            else:
                text = row[text_at]
                ident = row[id_at] if id_at is not None else start
                yield Record(start, ident, text, _check_text(text, f"column {column!r}"))


def iter_records(path: str | Path, *, field: str = "text", id_field: str | None = None) -> Iterator[Record]:
    """Every line (CSV: row) of an input file as a ``Record``, bad ones carrying their reason.

    ``field`` is the JSONL field or CSV/TSV column holding the text; ``id_field`` the one
    holding an id (default: the line number). A ``.txt`` file has one text per line.
    """
    path = Path(path)
    fmt = input_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such input file")
    if fmt == "txt":
        if id_field is not None:
            raise ConfigError(f"--id-field: a .txt input has no fields ({path}); ids are line numbers")
        return _txt_records(path)
    if fmt == "jsonl":
        return _jsonl_records(path, field, id_field)
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
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return Scan(ids, skipped, digest.hexdigest(), path.stat().st_size)


def _valid_texts(path: Path, field: str, id_field: str | None) -> Iterator[str]:
    for record in iter_records(path, field=field, id_field=id_field):
        if not record.error:
            yield str(record.text)


# --------------------------------------------------------------------------- model
def _resolve(model: Any, max_length: int | None, dtype: str | None) -> tuple[Any, Callable[[], None]]:
    """(backend, restore) for a model string (anything ``poolattn eval`` accepts) or object.

    A caller's model is never changed: ``dtype`` applies only to a model loaded here, which
    loads in it (bf16 weights cast up are not a float32 model); ``max_length`` gives a poolattn
    model a view with its own config (the weights shared); ``restore()`` gives a model back the
    training mode that a sentence-transformers ``encode`` switches off.
    """
    from .encoding.backends import PoolattnBackend, as_backend
    from .encoding.resolve import load_backend

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


# --------------------------------------------------------------------------- writing
def parts_dir(output: str | Path) -> Path:
    """Where the finished chunks of an unfinished run of ``output`` are kept."""
    output = Path(output)
    return output.parent / f".{output.name}.parts"


def _chunk_path(parts: Path, index: int) -> Path:
    return parts / f"chunk-{index:06d}.npy"


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp, tmp.open("wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _finished_chunk(path: Path, rows: int) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable chunk, encoding it again (%s)", path, exc)
        return None
    return array if array.ndim == 2 and array.shape[0] == rows and array.dtype == np.float32 else None


def _open_manifest(parts: Path, manifest: dict[str, Any], restart: bool) -> None:
    """Start a parts folder, or check that an existing one belongs to the same run."""
    path = parts / MANIFEST_FILE
    if parts.exists() and (restart or not path.exists()):
        shutil.rmtree(parts)
    if path.exists():
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
        return
    parts.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, manifest)


def _check_parquet() -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise InputError(
            "writing .parquet needs pyarrow: pip install pyarrow (or write .npy / .jsonl)"
        ) from exc


def _assemble(output: Path, parts: Path, chunks: int, ids: list[Any], dim: int) -> None:
    """Join the chunks into ``output`` (one atomic rename)."""
    suffix = output.suffix.lower()
    with atomic_file(output) as tmp:
        if suffix == ".npy":
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(ids), dim))
            row = 0
            for i in range(chunks):
                array = np.load(_chunk_path(parts, i))
                target[row : row + len(array)] = array
                row += len(array)
            target.flush()
            del target
        elif suffix == ".jsonl":
            with tmp.open("w", encoding="utf-8") as fh:
                row = 0
                for i in range(chunks):
                    for vector in np.load(_chunk_path(parts, i)).tolist():
                        fh.write(json.dumps({"id": ids[row], "embedding": vector}, ensure_ascii=False) + "\n")
                        row += 1
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            id_type = pa.int64() if all(isinstance(i, int) for i in ids) else pa.string()
            schema = pa.schema([("id", id_type), ("embedding", pa.list_(pa.float32(), dim))])
            with pq.ParquetWriter(str(tmp), schema) as writer:
                row = 0
                for i in range(chunks):
                    array = np.load(_chunk_path(parts, i))
                    chunk_ids = ids[row : row + len(array)]
                    column = pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1), pa.float32()), dim)
                    id_values = chunk_ids if id_type == pa.int64() else [str(i) for i in chunk_ids]
                    writer.write_table(pa.table([pa.array(id_values, id_type), column], schema=schema))
                    row += len(array)


# --------------------------------------------------------------------------- main entry
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
    if output.suffix.lower() == ".parquet":
        _check_parquet()
    check_output_path(output, "--output")
    if output.exists() and not overwrite:
        raise InputError(f"{output}: already exists (pass --overwrite to replace it)")
    if output.resolve() == input_path.resolve():
        raise InputError(f"{output}: the output would overwrite the input")


def _start_parts(
    backend: Any, input_path: Path, output: Path, scan: Scan, settings: _Settings, restart: bool
) -> Path:
    """The parts folder of this run: new, or an interrupted one with the same manifest."""
    parts = parts_dir(output)
    manifest = {
        "version": MANIFEST_VERSION,
        "input": {"path": str(input_path.resolve()), "sha256": scan.sha256, "bytes": scan.size},
        "model": {"name": backend.name, "fingerprint": backend.fingerprint()},
        "settings": asdict(settings),
        "texts": len(scan.ids),
    }
    _open_manifest(parts, manifest, restart)
    return parts


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

    Args:
        model: anything ``poolattn eval`` accepts (a saved model dir, ``smollm2-135m:eos+causal``,
            a sentence-transformers dir, ``all-MiniLM-L6-v2``), or a loaded ``EmbeddingModel`` /
            ``SentenceTransformer``.
        field: the JSONL field or CSV/TSV column with the text. ``id_field``: the one with an id
            (default: the line number).
        prompt_type: ``document`` (bare) or ``query`` (``instruction`` in the model's template).
        max_length, dtype: override the model's (``dtype`` only for a model named by a string).
        skip_invalid: skip and count bad lines instead of failing on the first.
        chunk_size: texts per resumable chunk.
        overwrite: replace an existing output. ``restart``: discard an unfinished run's chunks.
    """
    started = time.monotonic()
    input_path, output = Path(input_path), Path(output_path)
    settings = _Settings(field, id_field, prompt_type, instruction, batch_size, chunk_size, skip_invalid)
    _check_request(input_path, output, settings, dtype=dtype, overwrite=overwrite)
    scan = scan_input(input_path, field=field, id_field=id_field, skip_invalid=skip_invalid)
    for line, reason in scan.skipped[:MAX_REPORTED]:
        log.info("%s:%d: skipped: %s", input_path, line, reason)

    backend, restore = _resolve(model, max_length, dtype)
    try:
        if instruction is not None and not backend.uses_instructions:
            log.warning("%s takes no instructions; --instruction is ignored", backend.name)
        parts = _start_parts(backend, input_path, output, scan, settings, restart)
        tick = time.monotonic()
        encoded, reused, dim = _encode_chunks(backend, input_path, parts, scan, settings, progress)
        encode_seconds = time.monotonic() - tick
    finally:
        restore()
    chunks = len(_chunk_sizes(len(scan.ids), chunk_size))
    _assemble(output, parts, chunks, scan.ids, dim)
    shutil.rmtree(parts, ignore_errors=True)
    return EncodeSummary(
        output=output,
        texts=len(scan.ids),
        dim=dim,
        encoded=encoded,
        reused=reused,
        chunks=chunks,
        seconds=time.monotonic() - started,
        encode_seconds=encode_seconds,
        skipped=scan.skipped,
    )


# --------------------------------------------------------------------------- encoding
def _chunk_sizes(total: int, chunk_size: int) -> list[int]:
    """Texts in each chunk: ``chunk_size`` each, the last one holding the rest."""
    return [min(chunk_size, total - start) for start in range(0, total, chunk_size)]


def _finished_chunks(parts: Path, sizes: list[int]) -> tuple[set[int], int]:
    """The chunks an interrupted run finished (complete, readable), and their dimension (0: none)."""
    done = {i for i, rows in enumerate(sizes) if _finished_chunk(_chunk_path(parts, i), rows) is not None}
    dim = int(np.load(_chunk_path(parts, min(done)), mmap_mode="r").shape[1]) if done else 0
    return done, dim


def _encode_chunks(
    backend: Any, input_path: Path, parts: Path, scan: Scan, settings: _Settings, progress: bool
) -> tuple[int, int, int]:
    """Encode the chunks not finished yet; returns (texts encoded, texts reused, dimension)."""
    from tqdm.auto import tqdm

    total = len(scan.ids)
    sizes = _chunk_sizes(total, settings.chunk_size)
    done, dim = _finished_chunks(parts, sizes)
    reused = sum(sizes[i] for i in done)
    if done:
        log.info("resuming: %d of %d texts already encoded in %s", reused, total, parts)
    encoded = 0
    bar = tqdm(
        total=total, initial=reused, desc="encode", unit="text", disable=not progress, dynamic_ncols=True
    )
    texts = _valid_texts(input_path, settings.field, settings.id_field)
    batch = settings.batch_size
    try:
        for index, rows in enumerate(sizes):
            chunk = [next(texts) for _ in range(rows)]
            if index in done:
                continue
            query = settings.prompt_type == "query"  # the backend orders and batches the chunk
            out = backend.encode(chunk, query=query, instruction=settings.instruction, batch_size=batch)
            _save_npy(_chunk_path(parts, index), np.asarray(out, dtype=np.float32))
            bar.update(len(chunk))
            encoded += len(chunk)
            dim = int(out.shape[1])
    finally:
        bar.close()
    return encoded, reused, dim
