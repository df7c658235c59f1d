"""CPU throughput of an ONNX export beside poolattn's own ``encode``, same design, same texts.

The design is multilayer + bidirectional on the real SmolLM2-135M (a trainable head: the case
the ONNX export exists for), max_length 128, batch size 32. One process: build the design,
export it with ``poolattn.onnx_export.export_onnx`` (float32 graph), then alternate
``--passes`` timed passes of poolattn ``encode`` (float32 and the auto dtype) and of
onnxruntime (``OnnxEncoder``, intra-op threads = all cores), after one warm-up pass each;
the median pass is the figure. Also reports the cosine between the two sides' vectors.

    python bench/onnx_throughput.py             # 512 real texts, 3 passes per side
    python bench/onnx_throughput.py --quick     # 64 texts, 1 pass: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def real_texts(count: int) -> list[str]:
    """A deterministic mix of short and long real texts from the shared data."""
    data = Path(os.environ.get("POOLATTN_DATA_DIR", ROOT.parent / "shared" / "data"))
    texts: list[str] = []
    for name in ("snli_triples.jsonl", "quora_duplicate_pairs.jsonl", "scifact_train_pairs.jsonl"):
        with open(data / "train" / name) as fh:
            for i, line in enumerate(fh):
                if i >= count:
                    break
                rec = json.loads(line)
                texts += [rec["query"], rec["positive"]]
    return texts[::3][:count] if len(texts) >= 3 * count else texts[:count]


def timed(fn, passes: int) -> tuple[float, list[float]]:  # noqa: ANN001 - a callable
    fn()  # warm-up: meets every sequence length once
    times = []
    for _ in range(passes):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times), times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.passes = 64, 1

    import torch

    from poolattn.model import EmbeddingModel
    from poolattn.onnx_export import OnnxEncoder, export_onnx

    texts = real_texts(args.texts)
    results: dict[str, object] = {
        "texts": len(texts),
        "passes": args.passes,
        "threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "onnx"
        model = EmbeddingModel.from_pretrained(
            "smollm2-135m", pooling="multilayer", attention="bidirectional", dtype="float32"
        ).eval()
        tick = time.perf_counter()
        export_onnx(model, out)
        results["export_seconds"] = round(time.perf_counter() - tick, 1)
        onnx = OnnxEncoder(out, threads=torch.get_num_threads())
        sides = {
            "poolattn float32": lambda: model.encode(texts, batch_size=32),
            "onnxruntime float32": lambda: onnx.encode(texts, batch_size=32),
        }
        auto = EmbeddingModel.from_pretrained(
            "smollm2-135m", pooling="multilayer", attention="bidirectional", dtype="auto"
        ).eval()
        auto.pooler.load_state_dict(model.pooler.state_dict())
        sides[f"poolattn auto ({str(auto.compute_dtype).removeprefix('torch.')})"] = lambda: auto.encode(
            texts, batch_size=32
        )
        for side, fn in sides.items():
            median, times = timed(fn, args.passes)
            results[side] = {
                "texts_per_s": round(len(texts) / median, 2),
                "pass_seconds": [round(t, 2) for t in times],
            }
        ours, theirs = model.encode(texts), onnx.encode(texts)
        cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
        results["min_cosine_onnx_vs_poolattn"] = float(cos.min())
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
