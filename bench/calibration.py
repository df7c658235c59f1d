"""Calibration of the family verdicts through poolattn's own pipeline (issue 22).

    PYTHONPATH=src python bench/calibration.py [--sims 300]

Synthetic item-level data with a known truth (50 items per dataset, item noise 0.15, so a
dataset difference has SE 3 points as in the issue) goes through ``build_replicates`` ->
``compare._test_families`` -> ``compare._holm_and_verdicts``, the code ``poolattn compare``
runs, and the table counts verdicts: false "better" under the null (nominal 5%), "checkpoints
differ" (the same test without seed replicates: a claim about two models, not designs; both
count as a claimed difference, and the design-level share is shown), power at the reported MDE, and "equivalent" when the truth sits on the ROPE. It runs against
whatever poolattn is first on the path, so the same command measures old code (e.g.
``git archive HEAD src | tar -x -C /tmp/old && PYTHONPATH=/tmp/old/src python
bench/calibration.py``). Single process; a few minutes at the default --sims.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np

from poolattn.stats.bootstrap import build_replicates
from poolattn.stats.compare import _holm_and_verdicts, _Options, _test_families
from poolattn.stats.items import Entry

SE = 0.03  # a dataset difference's SE with 50 items of noise 0.15
RESAMPLES = 200
CLAIMS = ("better", "checkpoints")  # a claimed difference, of designs or (no seed replicates) of models


@dataclass
class Scenario:
    name: str
    k: int = 6
    seeds: tuple[int, ...] = (1, 1)
    tau: float = 0.0  # SD across datasets of the true difference of any two designs
    seed_sd: float = 0.0  # shared per-seed offset of a design (whole family)
    seed_ds_sd: float = 0.0  # per-seed, per-dataset offset
    evaluator_sd: float = 0.0  # per-dataset, per-design offset the item bootstrap cannot see
    items: int = 50
    kind: str = "null"  # null | power | equivalence
    resamples: int = RESAMPLES  # six designs: 1000, or the old bootstrap p floor (1/201) x 15 pairs > 5%
    share: float = 1.0  # of --sims (the six-design scenarios are the slow ones)


SCENARIOS = [
    Scenario("tau = 0", tau=0.0),
    Scenario("tau = 1 x SE", tau=1 * SE),
    Scenario("tau = 2 x SE", tau=2 * SE),
    Scenario("tau = 4 x SE", tau=4 * SE),
    Scenario("tau = 2 x SE, K = 3", k=3, tau=2 * SE),
    Scenario("tau = 2 x SE, K = 20", k=20, tau=2 * SE),
    Scenario(
        "six equal designs, tau = 2 x SE (any pair)", seeds=(1,) * 6, tau=2 * SE, resamples=1000, share=0.5
    ),
    Scenario("seeds (1,1), seed SD 1 shared + 1 per dataset", seed_sd=0.01, seed_ds_sd=0.01),
    Scenario("seeds (1,2), seed SD 3.5 + 1", seeds=(1, 2), seed_sd=0.035, seed_ds_sd=0.01),
    Scenario("seeds (2,2), seed SD 3.5 + 1", seeds=(2, 2), seed_sd=0.035, seed_ds_sd=0.01),
    Scenario("seeds (3,3), seed SD 3.5 + 1", seeds=(3, 3), seed_sd=0.035, seed_ds_sd=0.01),
    Scenario("clustering-like evaluator noise (SD 2 x SE)", evaluator_sd=2 * SE),
    Scenario(
        "power at the reported MDE, six designs (pair 0-1)",
        seeds=(1,) * 6,
        kind="power",
        resamples=1000,
        share=0.5,
    ),
    Scenario(
        "power at the reported MDE, six designs, seeds (2,2,1,1,1,1)",
        seeds=(2, 2, 1, 1, 1, 1),
        seed_sd=0.035,
        seed_ds_sd=0.01,
        kind="power",
        resamples=1000,
        share=0.5,
    ),
    Scenario("equivalent when the truth = ROPE (1 point), 400 items", items=400, kind="equivalence"),
]


def options(seed: int, resamples: int) -> object:
    """The comparison options, positionally: the same call works on the old and the new code."""
    return _Options(0.05, 0.01, "family", resamples, seed, 0.8, 5, 1000)


def simulate(sc: Scenario, rng: np.random.Generator, shift: float) -> dict:
    """One comparison's replicates: design 0 ahead by ``shift``; each design has its own true
    per-dataset deviations (SD tau / sqrt 2, so any pair's true difference varies by tau)."""
    designs = [f"d{g}" for g in range(len(sc.seeds))]
    seed_idx = {g: rng.integers(0, s, (sc.resamples, s)) for g, s in zip(designs, sc.seeds, strict=True)}
    shared = {g: rng.normal(0, sc.seed_sd, s) for g, s in zip(designs, sc.seeds, strict=True)}
    ids = [str(i) for i in range(sc.items)]
    out = {}
    for j in range(sc.k):
        difficulty = rng.uniform(0.2, 0.8, sc.items)
        entries, runs = {}, {}
        for g, (design, s) in enumerate(zip(designs, sc.seeds, strict=True)):
            offset = (
                (shift if g == 0 else 0.0)
                + rng.normal(0, sc.tau / math.sqrt(2))
                + rng.normal(0, sc.evaluator_sd)
            )
            values = [
                difficulty
                + offset
                + shared[design][r]
                + rng.normal(0, sc.seed_ds_sd)
                + rng.normal(0, 0.15, sc.items)
                for r in range(s)
            ]
            entries[design] = [[Entry("mean", ids, {"values": v.tolist()})] for v in values]
            runs[design] = [float(v.mean()) for v in values]
        out[f"Retrieval{j}"] = build_replicates(
            f"Retrieval{j}",
            "Retrieval",
            runs,
            entries,
            seed_idx,
            seed=int(rng.integers(2**31)),
            n_resamples=sc.resamples,
        )
    return out


def verdicts(sc: Scenario, rng: np.random.Generator, shift: float, seed: int) -> list[dict]:
    replicates = simulate(sc, rng, shift)
    names = [f"d{g}" for g in range(len(sc.seeds))]
    opts = options(seed, sc.resamples)
    _, dataset_tests, family_tests = _test_families(replicates, names, opts)
    _holm_and_verdicts(dataset_tests, family_tests, opts)
    return family_tests


def run(sc: Scenario, sims: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    if sc.kind == "power":
        mdes = [verdicts(sc, rng, 0.0, s)[0]["hierarchical"]["mde"] for s in range(sims // 2)]
        mdes = [m for m in mdes if m is not None and math.isfinite(m)]
        shift = float(np.mean(mdes))
        rows = [verdicts(sc, rng, shift, s)[0] for s in range(sims)]
        detected = [r["verdict"]["kind"] in CLAIMS for r in rows]
        return {
            "rate": np.mean(detected),
            "better": np.mean([r["verdict"]["kind"] == "better" for r in rows]),
            "mde": shift,
        }
    shift = 0.01 if sc.kind == "equivalence" else 0.0
    kinds = [[t["verdict"]["kind"] for t in verdicts(sc, rng, shift, s)] for s in range(sims)]
    if sc.kind == "equivalence":
        return {"rate": np.mean([k[0] == "equivalent" for k in kinds])}
    return {
        "rate": np.mean([any(x in CLAIMS for x in k) for k in kinds]),
        "better": np.mean([any(x == "better" for x in k) for k in kinds]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=300, help="simulated comparisons per scenario")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    mc = 100 * math.sqrt(0.05 * 0.95 / args.sims)
    print(f"{args.sims} comparisons per scenario; Monte-Carlo SE of a 5% rate: {mc:.1f} points\n")
    print('| scenario | measures | rate | of which design-level "better" | reported MDE |')
    print("|---|---|---:|---:|---:|")
    for i, sc in enumerate(SCENARIOS):
        r = run(sc, max(2, round(args.sims * sc.share)), args.seed + i)
        what = {
            "null": "false difference claimed (nominal 5%)",
            "power": "difference detected (target 0.80)",
            "equivalence": '"equivalent" (nominal 5%)',
        }[sc.kind]
        cp = f"{100 * r['better']:.1f}%" if "better" in r else ""
        mde = f"{100 * r['mde']:.2f} points" if "mde" in r else ""
        name = sc.name + (f" [{round(args.sims * sc.share)} runs]" if sc.share != 1 else "")
        print(f"| {name} | {what} | {100 * r['rate']:.1f}% | {cp} | {mde} |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
