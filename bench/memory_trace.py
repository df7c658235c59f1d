"""Where a GradCache step's memory goes: RSS and glibc heap after every model call.

One poolattn training step (the training bench's SNLI-at-32-tokens setting by default) in this
process, with a sampler thread for the peak RSS and, after every forward, the RSS and glibc's
own heap statistics (``mallinfo2``: bytes in use vs free-but-kept). Switches undo each part of
the fix, so its effect can be measured one at a time:

    python bench/memory_trace.py --batch 512                   # as shipped
    python bench/memory_trace.py --batch 512 --no-budget       # mini-batches capped by texts only
    python bench/memory_trace.py --batch 512 --onednn-cache 1024   # oneDNN's default caches
    python bench/memory_trace.py --batch 512 --trim-every 0    # never hand free heap back

It prints a JSON summary (peak RSS, step time) as its last line; ``--trace`` adds a row per call.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--mini", type=int, default=32)
    parser.add_argument("--scenario", default="snli-32")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--no-budget", action="store_true", help="cap mini-batches by texts only")
    parser.add_argument(
        "--onednn-cache", type=int, default=None, help="oneDNN cache entries (1024 = its default)"
    )
    parser.add_argument("--trim-every", type=int, default=None, help="replays between heap trims; 0 = never")
    parser.add_argument("--trace", action="store_true", help="print a row per model call")
    args = parser.parse_args(argv)
    if args.onednn_cache is not None:  # before poolattn sets its own default
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(args.onednn_cache)
        os.environ["LRU_CACHE_CAPACITY"] = str(max(1, args.onednn_cache))

    import procs  # noqa: F401 - offline environment
    import torch
    from train import make_config

    from poolattn.model import EmbeddingModel
    from poolattn.training import gradcache, train

    if args.trim_every is not None:
        gradcache.TRIM_EVERY = args.trim_every or 10**9
    if args.no_budget:
        gradcache.mean_length_budget = lambda lengths, size: 10**9
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    peak = [0.0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    rows: list[dict] = []
    forward = EmbeddingModel.forward
    began = time.perf_counter()

    def traced(self, features):  # noqa: ANN001, ANN202
        out = forward(self, features)
        info = libc.mallinfo2()
        rows.append(
            {
                "t_s": round(time.perf_counter() - began, 2),
                "graph": torch.is_grad_enabled(),
                "shape": list(features["input_ids"].shape),
                "rss_mb": round(_rss_mb()),
                "heap_in_use_mb": round(info.uordblks / 2**20),
                "heap_free_kept_mb": round(info.fordblks / 2**20),
                "mmapped_mb": round(info.hblkhd / 2**20),
            }
        )
        return out

    EmbeddingModel.forward = traced
    out = Path(tempfile.mkdtemp()) / "run"
    try:
        start = time.perf_counter()
        train(make_config(out, args.scenario, args.batch, args.mini, 1, args.dtype))
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    if args.trace:
        for i, row in enumerate(rows):
            print(i, json.dumps(row))
    graph_rows = [r for r in rows if r["graph"]]
    print(
        json.dumps(
            {
                "batch": args.batch, "mini": args.mini, "scenario": args.scenario, "dtype": args.dtype,
                "token_budget": not args.no_budget, "onednn_cache": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"),
                "trim_every": gradcache.TRIM_EVERY, "calls": len(rows), "peak_rss_mb": round(peak[0]),
                "max_heap_in_use_mb": max(r["heap_in_use_mb"] for r in graph_rows),
                "max_heap_free_kept_mb": max(r["heap_free_kept_mb"] for r in graph_rows),
                "largest_mini_batch_tokens": max(r["shape"][0] * r["shape"][1] for r in rows),
                "load_and_step_s": round(seconds, 1),
            }
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
