"""Training step time on the demo's recipe, side by side (issue 25): configs/quick.toml's
training (SmolLM2-135M, eos+causal, LoRA r16 on all projections with dropout 0.1, 16 queries a
step with their positives and SNLI hard negatives, mini-batch 48, max_length 64), a few steps
from the same seed, in a fresh process per run, sides alternating over rounds.

Sides: ``today`` (a step whose texts fit one mini-batch runs the plain step, no replayed
forward; LoRA dropout draws its masks with ``UniformDropout``), ``nn_dropout`` (today's code with
peft's ``nn.Dropout``), ``cached`` (today's code, every step through GradCache, as before),
``float32`` and ``bfloat16`` (today's code with that ``model.dtype`` instead of ``auto``) and, with
``--baseline-src``, the ``src`` folder of another checkout (``git worktree add /tmp/base 1509955``).
The step time is the median of the steps after the first; the losses of every step are printed
so a changed compute path shows if it changed the numbers.

    python bench/train_step.py [--steps 4] [--rounds 2] [--sides today,nn_dropout] [--baseline-src /tmp/base/src]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from procs import ROOT, emit, median, print_side_table, side_by_side, side_by_side_parser

CONFIG = ROOT / "configs" / "quick.toml"


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("src"):
        sys.path.insert(0, spec["src"])
    from poolattn.config import load_toml
    from poolattn.training import trainer
    from poolattn.training.config import train_config_from_dict

    if spec["side"] == "cached":
        from poolattn.training.gradcache import cached_step

        trainer._step_fn = lambda t, texts: cached_step  # noqa: SLF001 - the previous choice
    if spec["side"] == "nn_dropout":
        from poolattn.model import EmbeddingModel

        EmbeddingModel.uniform_dropout = False  # peft's own nn.Dropout, as before
    with tempfile.TemporaryDirectory() as tmp:
        sets = [f"training.steps={spec['steps']}", f"training.output_dir={json.dumps(tmp)}"]
        raw = load_toml(CONFIG, [*sets, "training.save_every=1000"])
        raw = {k: v for k, v in raw.items() if k in ("model", "data", "training", "lora")}
        raw["model"] = {**raw.get("model", {}), "pooling": "eos", "attention": "causal"}
        if spec["side"] in ("float32", "bfloat16"):
            raw["model"]["dtype"] = spec["side"]  # today's code in that dtype, not dtype auto
        trainer.train(train_config_from_dict(raw, base_dir=CONFIG.parent))
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_s"] for r in records]
    return {
        "step_s_median": median(times[1:] or times),
        "step_s": times,
        "losses": [r["loss"] for r in records],
    }


def main(argv: list[str] | None = None) -> int:
    parser = side_by_side_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument(
        "--sides", default="today,nn_dropout", help="of today, nn_dropout, cached, float32, bfloat16"
    )
    args = parser.parse_args(argv)
    if args.worker:
        emit(worker(json.loads(args.worker)))
        return 0
    specs = [{"side": side, "steps": args.steps} for side in args.sides.split(",")]
    results = side_by_side(Path(__file__), specs, args.rounds, args.baseline_src)
    print_side_table(results, "step_s_median", "s per step", "today")
    for side, runs in results.items():
        print(f"{side} losses: {', '.join(f'{x:.5f}' for x in runs[0]['losses'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
