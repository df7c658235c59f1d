"""File I/O every module shares: atomic writes (a crash or a kill never leaves a half-written file
or model directory), safe weights loading and the one JSONL reader (errors name file and line)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file holding one object (a record); ValueError naming the file when it does not."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not {what} (expected a JSON object)")
    return data


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON through a temp file and one rename."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_directory(target: str | Path, *, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside ``target`` that replaces it when the block succeeds (on an error
    ``target`` is left as it was). ``keep_existing`` (a cache filled by racing processes): a
    ``target`` that exists when the block ends is kept, the new folder discarded."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        share_like_umask(tmp)
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        if target.exists() and not keep_existing:
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:  # keep_existing: another process finished first (a non-empty target): keep theirs
            if not (keep_existing and target.exists()):
                raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@functools.cache
def _umask() -> int:
    """The process umask, read once (reading it means setting it and setting it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def share_like_umask(root: str | Path) -> None:
    """Give ``root`` and everything under it the modes ``open``/``mkdir`` would have given:
    ``mkdtemp`` (0700) and safetensors (0600) would leave a saved model unreadable to others."""
    mask = _umask()
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                executable = os.stat(path).st_mode & 0o100
                os.chmod(path, (0o777 if executable else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (for writers that need a file name: ``np.save``, parquet);
    when the block succeeds it replaces ``path`` in one rename, else ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; open() would not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file through a temp file and one rename (newlines written as given)."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


class CorruptFileError(ValueError):
    """A file poolattn wrote (weights, a checkpoint) cannot be read back; the message names it."""


def load_safetensors(path: str | Path) -> dict[str, Any]:
    """``safetensors.torch.load_file`` (never unpickles), a corrupt file reported by its path."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CorruptFileError(
            f"{path}: corrupt or truncated weights file ({exc}); restore it or save it again"
        ) from exc


def check_output_path(path: str | Path, what: str = "output") -> Path:
    """Refuse, before any work, an output path that can never be created: one of its parents is a
    regular file (missing folders are fine: writers create them)."""
    path = Path(path)
    parent = next((p for p in path.parents if p.exists()), None)  # the nearest existing parent
    if parent is not None and not parent.is_dir():
        raise NotADirectoryError(f"{what} {path}: {parent} is a file, not a folder; choose another path")
    return path


def bad_line_message(where: str, reason: str, skip_hint: str, more: int = 0) -> str:
    """The one wording of a bad input line (``file:line: reason; ...``) for every reader that
    can skip them: training data names ``data.skip_invalid = true``, encode ``--skip-invalid``."""
    extra = f" ({more} more bad lines)" if more else ""
    return f"{where}: {reason}{extra}; fix it or {skip_hint} to skip bad lines"


class JsonlError(ValueError):
    """A JSONL line is not valid JSON; ``where`` is ``path:line`` and ``reason`` the decoder's words."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path, self.line, self.reason, self.where = path, line, reason, f"{path}:{line}"
        super().__init__(f"{self.where}: invalid JSON ({reason})")


@dataclass(frozen=True)
class JsonlRecord:
    """One decoded JSONL line (any JSON value) with the file and 1-based line it came from."""

    path: Path
    line: int
    value: Any

    @property
    def where(self) -> str:
        """``path:line``, the prefix of every error about this record."""
        return f"{self.path}:{self.line}"


def read_jsonl(
    path: str | Path, *, on_bad_line: Callable[[JsonlError], None] | None = None
) -> Iterator[JsonlRecord]:
    """Every non-blank line of a UTF-8 JSONL file, decoded, with its line number. A line that is
    not valid JSON raises ``JsonlError``, or with ``on_bad_line`` is handed to it and skipped."""
    path = Path(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8")
                if not text.strip():
                    continue
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                error, cause = JsonlError(path, number, f"{exc.msg} at column {exc.colno}"), exc
            except UnicodeDecodeError as exc:
                error, cause = JsonlError(path, number, f"not UTF-8 ({exc.reason} at byte {exc.start})"), exc
            else:
                yield JsonlRecord(path, number, value)
                continue
            if on_bad_line is None:
                raise error from cause
            on_bad_line(error)
