"""What every bench needs: one fresh process per measurement, alternating order, medians.

A measurement runs as ``python <script> --worker '<json spec>'`` and prints one JSON line
(its last line of output). A fresh process per measurement keeps one loop's heap, oneDNN
kernel caches and peak RSS out of the next one; alternating the order across rounds keeps
a slow drift of the machine (other jobs, thermal state) from favouring whoever runs first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "POOLATTN_DATA_DIR": str(ROOT.parent / "shared" / "data"),  # as the Makefile
}
for _key, _value in ENV.items():
    os.environ.setdefault(_key, _value)


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(script: str | Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh process and return its JSON result."""
    cmd = [sys.executable, str(script), "--worker", json.dumps(spec)]
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"worker {spec} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"worker {spec} printed no JSON result:\n{done.stdout[-2000:]}")
    result = json.loads(lines[-1])
    result.setdefault("process_s", time.perf_counter() - began)
    return result


def emit(result: dict[str, Any]) -> None:
    """A worker's result: one JSON line, with the process's peak RSS."""
    result.setdefault("peak_rss_mb", peak_rss_mb())
    print(json.dumps(result), flush=True)


def alternating(
    specs: Sequence[dict[str, Any]],
    rounds: int,
    run: Callable[[dict[str, Any]], dict[str, Any]],
    label: Callable[[dict[str, Any]], str],
    first_reversed: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Run every spec once per round, in forward order on even rounds and reverse on odd ones.

    Returns the results per label, in round order.
    """
    results: dict[str, list[dict[str, Any]]] = {label(s): [] for s in specs}
    for r in range(rounds):
        order = list(specs) if (r % 2 == 0) != first_reversed else list(reversed(specs))
        for spec in order:
            result = run(spec)
            results[label(spec)].append(result)
            print(f"  round {r + 1}/{rounds} {label(spec)}: {_short(result)}", flush=True)
    return results


def side_by_side_parser(description: str) -> argparse.ArgumentParser:
    """The options every side-by-side bench takes: ``--rounds``, ``--baseline-src`` (another
    checkout's ``src``, a third side) and the hidden ``--worker`` of ``run_worker``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-src", help="src folder of another checkout, run as a third side")
    return parser


def side_by_side(
    script: str | Path, specs: list[dict[str, Any]], rounds: int, baseline_src: str | None
) -> dict[str, list[dict[str, Any]]]:
    """Run ``specs`` (each with a ``side``) plus, when ``baseline_src`` is given, a ``baseline``
    side (the first spec's counts, run with another checkout's ``src`` first on ``sys.path``),
    alternating over ``rounds``; results per side."""
    specs = list(specs)
    if baseline_src:
        counts = {k: v for k, v in specs[0].items() if k not in ("side", "share")}
        specs.append({**counts, "side": "baseline", "src": str(Path(baseline_src).resolve())})
    print(f"machine: {machine()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    return alternating(specs, rounds, lambda s: run_worker(script, s), lambda s: s["side"])


def print_side_table(results: dict[str, list[dict[str, Any]]], key: str, unit: str, reference: str) -> None:
    """A Markdown table of ``side_by_side`` results: each run's ``key``, their median, and the
    ratio of that median to the ``reference`` side's."""
    medians = {side: median(r[key] for r in runs) for side, runs in results.items()}
    print(f"| side | runs ({unit}) | median ({unit}) | ratio to {reference} |\n|---|---|---:|---:|")
    for side, runs in results.items():
        each = ", ".join(f"{r[key]:.1f}" for r in runs)
        print(f"| {side} | {each} | {medians[side]:.1f} | {medians[side] / medians[reference]:.2f}x |")


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def machine() -> str:
    """One line about the machine and its load, for every table."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    flags = ""
    try:
        from poolattn.dtypes import cpu_bf16_features, cpu_name, resolve_dtype

        flags = ", ".join(sorted(cpu_bf16_features())) or "no native bf16"
        flags = f"{cpu_name()}; {flags}; dtype auto: {resolve_dtype('auto', 'cpu').name}"
    except Exception:  # noqa: BLE001 - informational only
        flags = "?"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs ({flags}), load average {load:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )


def versions(*packages: str) -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in packages)


def _short(result: dict[str, Any]) -> str:
    keys = [
        k for k in ("seconds", "step_s_median", "texts_per_s", "examples_per_s", "peak_rss_mb") if k in result
    ]
    return ", ".join(
        f"{k} {result[k]:.2f}" if isinstance(result[k], float) else f"{k} {result[k]}" for k in keys
    )
