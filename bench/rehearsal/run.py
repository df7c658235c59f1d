"""Rehearse ``configs/paper-qwen2-0.5b.toml`` as a GPU user runs it, on two CPU processes here.

``accelerate launch`` (2 processes, gloo) runs ``poolattn experiment`` on the paper config,
unchanged except counts given with ``--set``, with ``HF_HUB_OFFLINE=1`` and no local data folder,
against the cache ``build_cache.py`` makes: a real-shaped random ``Qwen/Qwen2-0.5B``, the
``yixuantt/ir_data`` schema, and one ``MTEB(eng, v1)`` task per family at its pinned revision.
Then it checks what a finished study must hold: every run ``done`` on the cache's model, every
task scored by mteb from the hub copy, the multilayer runs' layer attention, the report.

    python bench/rehearsal/run.py [--small] [--out build/rehearsal]     # make rehearsal

``--small`` (the slow test, in ``make test``): the same checks and code paths at a size two
slow CPUs finish in minutes: ``Qwen/Qwen2-0.5B`` is a Qwen2 model of ``build_cache.QWEN2_TINY``
(4 layers, hidden 64; same hub id, layout and tokenizer), in its own cache home (``hf-small``,
whose manifest must name that shape), 3 tasks, fewer items, 1 step, two designs (eos+causal and
multilayer+bidirectional) instead of five. Exit status: 0 when every check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import build_cache  # noqa: E402

CONFIG = ROOT / "configs" / "paper-qwen2-0.5b.toml"
FULL = {"tasks": build_cache.TASKS, "items": 40, "train_items": 256, "shape": build_cache.QWEN2_05B}
SMALL = {"tasks": build_cache.TASKS[:3], "items": 16, "train_items": 64, "shape": build_cache.QWEN2_TINY}


def overrides(out: Path, tasks: list[str], small: bool) -> list[str]:
    """The counts the rehearsal changes (``--set``); everything else is the paper config's."""
    sets = {
        "experiment.output_dir": json.dumps(str(out / "runs")),
        "experiment.layer_attention_sample": "8",
        "training.steps": "1" if small else "2",
        "training.warmup_steps": "1",
        "training.batch_size": "4" if small else "8",
        "training.mini_batch_size": "2" if small else "4",
        "model.max_length": "32" if small else "64",
        "evaluation.batch_size": "16",
        "evaluation.tasks": json.dumps(tasks),
    }
    if small:
        sets["experiment.designs"] = json.dumps(["eos+causal", "multilayer+bidirectional"])
    return [f"{k}={v}" for k, v in sets.items()]


def ensure_cache(home: Path, data: Path, spec: dict[str, Any]) -> None:
    """Build the HF cache unless one of this build version, model shape and these counts is there."""
    manifest = home / "rehearsal.json"
    if manifest.exists():
        have = json.loads(manifest.read_text())
        if (
            have.get("build_version") == build_cache.BUILD_VERSION
            and set(spec["tasks"]) <= set(have.get("tasks", {}))
            and have.get("items") == spec["items"]
            and have.get("train_items") == spec["train_items"]
            and all(have.get("model", {}).get(k) == v for k, v in spec["shape"].items())
        ):
            return
    build_cache.build(home, data, list(spec["tasks"]), spec["items"], spec["train_items"], spec["shape"])


def launch_env(home: Path, out: Path) -> dict[str, str]:
    """A GPU user's environment, offline: the hub cache, no local data folder, fresh caches."""
    env = {k: v for k, v in os.environ.items() if k != "POOLATTN_DATA_DIR"}
    env.update(
        HF_HOME=str(home),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        POOLATTN_CACHE_DIR=str(out / "poolattn-cache"),
        ACCELERATE_USE_CPU="true",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def command(sets: list[str], port: int) -> list[str]:
    """``accelerate launch`` of ``poolattn experiment`` on the unchanged paper config."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), "-m", "poolattn.cli", "experiment", str(CONFIG)]  # fmt: skip
    for item in sets:
        cmd += ["--set", item]
    return cmd


def check(out: Path, sets: list[str], tasks: list[str], home: Path) -> list[str]:
    """What a finished study must hold; returns the problems (empty when it passed)."""
    from poolattn.experiment.plan import load_experiment_config

    config = load_experiment_config(CONFIG, sets)
    manifest = json.loads((home / "rehearsal.json").read_text())
    pinned, layers = manifest["tasks"], manifest["model"]["num_hidden_layers"]
    problems = []
    for run in config.runs():
        run_dir = config.output_dir / run.name
        state_file = run_dir / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        if state.get("status") != "done":
            problems.append(f"{run.name}: status {state.get('status')!r} ({state.get('error', 'no error')})")
            continue
        built = state.get("parameters", {})  # the backbone the run loaded: the cache's, by hub id
        if built.get("base") != build_cache.MODEL_ID or built.get("layers") != layers:
            problems.append(
                f"{run.name}: trained {built.get('base')} of {built.get('layers')} layers, "
                f"expected the cache's {build_cache.MODEL_ID} of {layers}"
            )
        results = json.loads((run_dir / "eval" / "run.json").read_text())
        if sorted(results["tasks"]) != sorted(tasks):
            problems.append(f"{run.name}: evaluated {sorted(results['tasks'])}, expected {sorted(tasks)}")
        for name, entry in results["tasks"].items():
            if entry.get("source") != "mteb" or not entry.get("real_mteb_task"):
                problems.append(f"{run.name}/{name}: not scored as the mteb task ({entry.get('source')})")
            task_json = json.loads((run_dir / "eval" / entry["file"]).read_text())
            if task_json.get("dataset_revision") != pinned[name]["revision"]:
                problems.append(f"{run.name}/{name}: revision {task_json.get('dataset_revision')}")
        if "multilayer" in run.design and not state.get("layer_attention"):
            problems.append(f"{run.name}: no layer attention recorded")
    if not (config.output_dir / "report.md").exists():
        problems.append(f"{config.output_dir}: no report.md written")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "rehearsal")
    parser.add_argument("--small", action="store_true", help="the slow test's smaller form (tiny model)")
    parser.add_argument("--data", type=Path, default=os.environ.get("POOLATTN_DATA_DIR"))
    parser.add_argument("--port", type=int, default=29531)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for the launched run")
    args = parser.parse_args(argv)
    if args.data is None or not (Path(args.data) / "eval").is_dir():
        print(f"--data: {args.data} has no eval/ folder (set POOLATTN_DATA_DIR)", file=sys.stderr)
        return 2
    spec = SMALL if args.small else FULL
    out = args.out.resolve() / ("small" if args.small else "full")
    home = args.out.resolve() / ("hf-small" if args.small else "hf")
    tick = time.monotonic()
    ensure_cache(home, Path(args.data), spec)
    built = time.monotonic() - tick
    runs = out / "runs"
    if runs.exists():  # a rehearsal proves a fresh run: nothing resumed from an earlier one
        import shutil

        shutil.rmtree(runs)
    sets = overrides(out, list(spec["tasks"]), args.small)
    cmd = command(sets, args.port)
    print("$ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, env=launch_env(home, out), cwd=ROOT, timeout=args.timeout)
    problems = [] if done.returncode == 0 else [f"poolattn experiment exited {done.returncode}"]
    if done.returncode == 0:
        problems = check(out, sets, list(spec["tasks"]), home)
    wall = time.monotonic() - tick
    print(f"rehearsal: cache {built:.0f} s, total {wall:.0f} s; " + ("PASSED" if not problems else "FAILED"))
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
