"""BENCHMARKS.md is shared by every bench script: each one rewrites only its own section."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, section: str, body: str) -> None:
    """Replace (or append) the ``section`` heading and its text; other sections are kept."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{section}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", flags=re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text)
