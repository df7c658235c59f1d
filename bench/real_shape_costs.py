"""Costs invisible at 135M and large at 7B, measured on a random model of Qwen2-0.5B's shape.

A random ``Qwen2Model`` with the published architecture of Qwen/Qwen2-0.5B (24 layers, hidden
896, 14 heads, 2 KV heads, intermediate 4864, tied embeddings, vocabulary 151936, bf16 weights)
and the default model's tokenizer, as an eos+causal ``EmbeddingModel``. Each measurement runs
in a fresh process (``procs.run_worker``) and reports:

- ``fingerprint_s``: ``model.fingerprint()`` (cold, then warm), and the RSS it adds;
- ``encode_peak_mb``: peak RSS while encoding one batch of ``--batch`` texts of ``--tokens``
  tokens with eos pooling, above the RSS before it (the process peak is reset through
  ``/proc/self/clear_refs``), and the seconds it took.

``--rev REV`` measures the code of commit REV too (``git archive REV src`` extracted under /tmp,
put first on ``PYTHONPATH``), alternating the order over ``--rounds``:

    .venv/bin/python bench/real_shape_costs.py --rev HEAD --batch 16 --tokens 256 --rounds 1

``--layers N`` shrinks the model for a smoke run. The last line is the JSON summary.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import procs

sys.path.insert(0, str(Path(__file__).resolve().parent / "rehearsal"))
from build_cache import QWEN2_05B  # noqa: E402 - the published shape, one home (the rehearsal's)

VOCAB = 151936  # Qwen2-0.5B's vocabulary (the rehearsal keeps the tokenizer's)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak() -> None:
    """Reset the kernel's peak RSS (VmHWM) of this process to its current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement with whatever ``poolattn`` is first on the path."""
    import torch
    from transformers import AutoModel, AutoTokenizer, Qwen2Config

    import poolattn
    from poolattn.backbone import resolve_source
    from poolattn.design import model_config
    from poolattn.model import EmbeddingModel

    torch.manual_seed(0)
    shape = {**QWEN2_05B, "vocab_size": VOCAB, "num_hidden_layers": spec["layers"]}
    backbone = AutoModel.from_config(Qwen2Config(**shape), dtype=torch.bfloat16, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(resolve_source("smollm2-135m"))
    config = model_config(
        base="Qwen/Qwen2-0.5B", pooling="eos", attention="causal", dtype="bfloat16", max_length=spec["tokens"]
    )
    model = EmbeddingModel(backbone, tokenizer, config)
    model.eval()
    result: dict[str, Any] = {"code": str(Path(poolattn.__file__).parent), "rev": spec["rev"]}
    result["parameters_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)

    before = _rss_mb()
    _reset_peak()
    start = time.perf_counter()
    first = model.fingerprint()
    result["fingerprint_s"] = time.perf_counter() - start
    result["fingerprint_added_mb"] = _peak_mb() - before
    start = time.perf_counter()
    assert model.fingerprint() == first
    result["fingerprint_warm_s"] = time.perf_counter() - start

    texts = [" ".join(f"word{i}x{j}" for j in range(spec["tokens"])) for i in range(spec["batch"])]
    before = _rss_mb()
    _reset_peak()
    start = time.perf_counter()
    model.encode(texts, batch_size=spec["batch"], show_progress_bar=False)
    result["encode_s"] = time.perf_counter() - start
    result["encode_peak_mb"] = _peak_mb() - before
    result["rss_before_encode_mb"] = before
    return result


def extract(rev: str) -> Path:
    """``git archive REV src`` extracted under /tmp (once per commit); returns its ``src``."""
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    target = Path(tempfile.gettempdir()) / f"poolattn-{commit}"
    if not (target / "src" / "poolattn").is_dir():
        archive = subprocess.run(["git", "archive", commit, "src"], cwd=root, capture_output=True, check=True)
        staging = Path(tempfile.mkdtemp(prefix=f"poolattn-{commit}-"))
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(staging, filter="data")
        staging.rename(target)
    return target / "src"


def measure(spec: dict[str, Any], paths: dict[str, Path | None]) -> dict[str, Any]:
    """Run ``spec`` in a fresh process with its revision's code first on PYTHONPATH."""
    saved = os.environ.get("PYTHONPATH")
    src = paths[spec["rev"]]
    try:
        if src is not None:
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), saved]))
        return procs.run_worker(__file__, spec)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=16, help="texts in the encoded batch")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per text (max_length)")
    parser.add_argument(
        "--layers", type=int, default=QWEN2_05B["num_hidden_layers"], help="smoke runs: fewer"
    )
    parser.add_argument("--rev", help="also measure this commit's code (e.g. HEAD)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    if args.worker:
        procs.emit(worker(json.loads(args.worker)))
        return 0
    paths: dict[str, Path | None] = {"working tree": None}
    if args.rev:
        paths[args.rev] = extract(args.rev)
    base = {"batch": args.batch, "tokens": args.tokens, "layers": args.layers}
    specs = [{**base, "rev": rev} for rev in paths]
    print(procs.machine(), flush=True)
    results = procs.alternating(specs, args.rounds, lambda s: measure(s, paths), lambda s: s["rev"])
    keys = ("fingerprint_s", "fingerprint_warm_s", "fingerprint_added_mb", "encode_s", "encode_peak_mb")
    summary = {
        "setting": base,
        **{
            rev: {k: round(procs.median(r[k] for r in rows), 2) for k in keys}
            for rev, rows in results.items()
        },
    }
    for rev, rows in results.items():
        summary[rev]["code"] = rows[0]["code"]
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
