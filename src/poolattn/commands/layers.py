"""``poolattn layers MODEL_DIR --output DIR``: layer ablation of a multilayer pooling head."""

from __future__ import annotations

import argparse

from ..config import ConfigError
from . import comma_list, set_epilog, user_errors

HELP = "layer ablation of a multilayer model: score change per removed layer, per block, per layer alone"

EPILOG = """Writes layer_ablation.json and layer_ablation.png into DIR. The backbone runs once per
text (its per-layer vectors are cached); each condition of the grid then costs one pooler pass
and one run of each task's mteb evaluator. Defaults (from
poolattn.layer_ablation): tasks STSBenchmark (dev split), TREC, SciFact; --max-items 100,
down-sampled as in `poolattn eval`; --blocks 4 (quarters)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    set_epilog(parser, EPILOG)
    parser.add_argument("model_dir", help="a saved poolattn model directory with a multilayer head")
    parser.add_argument("--output", "-o", required=True, help="directory for the JSON and PNG")
    parser.add_argument("--tasks", help="comma-separated local dataset names")
    parser.add_argument("--local-data", help="local data folder (default: $POOLATTN_DATA_DIR)")
    parser.add_argument("--max-items", type=int, help="deterministic down-sampling per dataset")
    parser.add_argument("--blocks", type=int, help="number of contiguous layer blocks removed together")
    parser.add_argument("--batch-size", type=int, default=32)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..layer_ablation import JSON_FILE, PNG_FILE, layer_ablation
    from ..model import EmbeddingModel

    options: dict = {"local_data": args.local_data, "batch_size": args.batch_size}
    if args.tasks is not None:
        options["tasks"] = comma_list(args.tasks)
        if not options["tasks"]:
            raise ConfigError("--tasks: name at least one local dataset")
    for name in ("max_items", "blocks"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {value}")
            options[name] = value
    model = EmbeddingModel.load(args.model_dir)
    with user_errors(ValueError):  # e.g. the model has no multilayer head
        result = layer_ablation(model, args.output, **options)
    tasks = ", ".join(t["name"] for t in result["tasks"])
    print(f"all layers: {result['all']['mean']:.4f} (mean main score over {tasks})")
    print("layer  importance  only-this-layer  attention-mass")
    for row in result["per_layer"]:
        print(
            f"{row['layer']:>5}  {row['importance']:>+10.4f}  {row['only']['mean']:>15.4f}  "
            f"{row['attention_mass']:>14.3f}"
        )
    for block in result["blocks"]:
        span = f"{block['layers'][0]}-{block['layers'][-1]}"
        print(f"without layers {span}: {block['importance']:+.4f}")
    out = Path(args.output)
    print(f"\nwrote {out / JSON_FILE} and {out / PNG_FILE} ({result['seconds']} s)")
    return 0
