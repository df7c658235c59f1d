"""Verdicts of two experiment reports side by side: counts per family and kind, and every change.

Reads the verdict tables (``| family | datasets | A vs B | verdict | text |``) that
``poolattn experiment`` writes into ``report.md`` (and BENCHMARKS.md copies), so a report from an
older commit compares with a new one without re-running either:

    .venv/bin/python bench/verdict_diff.py BEFORE.md AFTER.md [--before-section TITLE]

``--before-section``/``--after-section`` take only the rows under that Markdown heading (e.g.
``"Verdicts per family"`` in BENCHMARKS.md, which holds more than one table).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

ROW = re.compile(
    r"^\| (?P<family>[A-Za-z]+) \| (?P<n>\d+) \| (?P<a>[^|]+?) vs (?P<b>[^|]+?) \| (?P<kind>[^|]+?) \|"
)


def read_verdicts(path: Path, section: str | None = None) -> dict[tuple[str, str], str]:
    """(family, "A vs B") -> verdict kind, from the first verdict table (under ``section``)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if section is not None:
        starts = [i for i, line in enumerate(lines) if line.startswith("#") and section in line]
        if not starts:
            raise SystemExit(f"{path}: no heading containing {section!r}")
        lines = lines[starts[0] + 1 :]
    verdicts: dict[tuple[str, str], str] = {}
    for line in lines:
        if section is not None and line.startswith("#"):
            break
        m = ROW.match(line)
        if m:
            key = (m["family"], f"{m['a'].strip()} vs {m['b'].strip()}")
            verdicts.setdefault(key, m["kind"].strip().strip("*"))
    if not verdicts:
        raise SystemExit(f"{path}: no verdict table found")
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--before-section")
    parser.add_argument("--after-section")
    args = parser.parse_args()
    before = read_verdicts(args.before, args.before_section)
    after = read_verdicts(args.after, args.after_section)
    kinds = sorted({*before.values(), *after.values()})
    families = sorted({f for f, _ in before} | {f for f, _ in after})
    print("| family | " + " | ".join(f"{k} before → after" for k in kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for family in families:
        b = Counter(v for (f, _), v in before.items() if f == family)
        a = Counter(v for (f, _), v in after.items() if f == family)
        print(f"| {family} | " + " | ".join(f"{b[k]} → {a[k]}" for k in kinds) + " |")
    print()
    changed = [
        (key, before.get(key, "—"), after.get(key, "—")) for key in sorted(before.keys() | after.keys())
    ]
    changed = [c for c in changed if c[1] != c[2]]
    print(f"{len(changed)} verdict(s) changed:")
    for (family, pair), old, new in changed:
        print(f"- {family}: {pair}: {old} → {new}")


if __name__ == "__main__":
    main()
