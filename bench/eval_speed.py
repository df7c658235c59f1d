"""Evaluation speed, side by side (issue 25): one evaluation of local datasets at the demo's
settings (SmolLM2-135M, eos+causal, max_length 64, 50 items), in a fresh process per run,
sides alternating over rounds.

Sides: ``shared`` (today: a batch's shared prompt prefix runs once, ``EmbeddingModel.shared_prefix``),
``whole`` (today's code with that off: every row run whole), ``float32`` and ``bfloat16``
(today's code with that ``model.dtype`` instead of ``auto``) and, with ``--baseline-src``, the
``src`` folder of another checkout (e.g. ``git worktree add /tmp/base 1509955``) run by the same
Python. The wall time is the evaluation's own (``run.json``'s ``wall_seconds``: tasks, data,
encoding, evaluators; not the model load). The embedding cache is off, so every side encodes.

    python bench/eval_speed.py [--tasks A,B,...] [--rounds 2] [--sides shared,whole] [--dtype auto]
        [--baseline-src /tmp/base/src]

``--dtype float32 --rounds 1 --baseline-src ...`` checks that today's float32 scores equal the
baseline's float32 scores (the numbers kept, apart from the dtype ``auto`` chooses).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import emit, print_side_table, side_by_side, side_by_side_parser

# one local dataset per family (folder names, as configs/tiny.toml names them)
DEFAULT_TASKS = "STSBenchmark,Emotion,MSRP,SciFact,SemEval2016CQA-QQ,SearchSnippets"
DESIGN = {"base": "smollm2-135m", "pooling": "eos", "attention": "causal", "max_length": 64}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the design with the side's code, save it, evaluate it through ``poolattn eval``."""
    if spec.get("src"):
        sys.path.insert(0, spec["src"])
    from poolattn import cli
    from poolattn.config import ModelConfig
    from poolattn.model import EmbeddingModel

    if "share" in spec:
        EmbeddingModel.share_prefix = spec["share"]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        dtype = {"dtype": spec["dtype"]} if spec.get("dtype", "auto") != "auto" else {}
        EmbeddingModel.from_config(ModelConfig(**DESIGN, **dtype)).save(model_dir)
        out = Path(tmp) / "eval"
        began = time.perf_counter()
        argv = ["eval", str(model_dir), "--output", str(out), "--tasks", spec["tasks"]]
        code = cli.main([*argv, "--max-items", str(spec["items"]), "--no-embedding-cache"])
        seconds = time.perf_counter() - began
        if code:
            raise SystemExit(f"poolattn eval failed (exit {code})")
        run = json.loads((out / "run.json").read_text())
    scores = {name: task.get("main_score") for name, task in run["tasks"].items()}
    return {"seconds": float(run.get("wall_seconds", seconds)), "scores": scores}


def main(argv: list[str] | None = None) -> int:
    parser = side_by_side_parser(__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument(
        "--sides", default="shared,whole", help="of shared, whole, float32, bfloat16 (shared first)"
    )
    parser.add_argument(
        "--dtype", default="auto", help="model.dtype of the shared, whole and baseline sides (e.g. float32)"
    )
    args = parser.parse_args(argv)
    if args.worker:
        emit(worker(json.loads(args.worker)))
        return 0
    common = {"tasks": args.tasks, "items": args.items}
    share = {"shared": True, "whole": False, "float32": True, "bfloat16": True}
    sides = args.sides.split(",")
    if sides[0] != "shared" or any(side not in share for side in sides):
        parser.error(f"--sides: start with shared, then any of {', '.join(share)}")
    dtype = {side: side if side in ("float32", "bfloat16") else args.dtype for side in sides}
    specs = [{**common, "side": side, "share": share[side], "dtype": dtype[side]} for side in sides]
    results = side_by_side(Path(__file__), specs, args.rounds, args.baseline_src)
    print_side_table(results, "seconds", "s", "shared")
    base = results["shared"][0]["scores"]
    for side, runs in results.items():
        worst = max(abs((runs[0]["scores"][k] or 0) - (base[k] or 0)) for k in base)
        print(f"{side}: largest main-score difference to shared: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
