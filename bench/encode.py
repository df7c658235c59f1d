"""Encoding throughput: poolattn ``encode`` (auto dtype and float32) vs sentence-transformers
(float32 and bf16), same model, same pooling, same token ids; plus bf16-vs-float32 agreement.

All sides run the real SmolLM2-135M (the converted ``smollm2-135m`` directory), causal
attention, last-token (EOS) pooling, max_length 128, batch size 32, on the same
deterministic mix of 512 real texts. sentence-transformers gets the same token ids: its
Transformer is pinned to plain-text input and EOS is appended to each text. Its bf16 side
loads the weights in bf16 (``model_kwargs={"dtype": torch.bfloat16}``), as a user would.

Every measurement is one fresh process (load, warm-up on one batch, a first full pass that
meets every sequence length cold, then ``--passes`` timed passes whose median is the figure; the
first pass is reported beside it); the sides alternate over ``--rounds`` rounds and we report medians and their ratios,
the fraction of this CPU's float32 / bf16 matmul peak (measured in their own processes,
before and after), and the cosine between poolattn's bf16 and float32 embeddings of every
pooler over the same texts. Figures go into the "## Encoding" section of BENCHMARKS.md.

    python bench/encode.py            # 512 texts, 3 rounds (~10 min on a 2-core CPU)
    python bench/encode.py --quick    # 128 texts, 1 round, a smoke run
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

from procs import ROOT, alternating, emit, machine, median, run_worker, versions

SECTION = "## Encoding"
SIDES = (
    "poolattn auto",
    "poolattn float32",
    "sentence-transformers float32",
    "sentence-transformers bfloat16",
)
# bf16-vs-float32 agreement: every pooler, under the attention(s) its designs use.
# bf16-vs-float32 agreement: every pooler under causal attention (the pretrained model's own
# mode: the target), and the bidirectional designs, reported beside a control (float32 compute
# over bf16-rounded weights) that separates weight rounding from activation rounding.
AGREEMENT = {
    "causal": ("eos", "mean", "weighted_mean", "latent", "multilayer", "nv_latent"),
    "bidirectional": ("mean", "latent", "multilayer", "nv_latent"),
}
ROUNDED = "float32 over bf16-rounded weights"


# ----------------------------------------------------------------------------- inputs
def load_texts(data_dir: Path, n: int) -> list[str]:
    """A deterministic mix of short to long real sentences (STS pairs, claims, titles, abstract openings)."""
    eval_dir = data_dir / "eval"
    sts = [json.loads(line) for line in (eval_dir / "sts/STSBenchmark/test.jsonl").open()]
    sts_sentences = sorted({s for row in sts for s in (row["sentence1"], row["sentence2"])})
    queries = sorted(
        json.loads(line)["text"] for line in (eval_dir / "retrieval/SciFact/queries.jsonl").open()
    )
    corpus = [json.loads(line) for line in (eval_dir / "retrieval/SciFact/corpus.jsonl").open()]
    titles = sorted(c["title"] for c in corpus if c["title"])
    openings = sorted(
        " ".join(re.split(r"(?<=[.!?])\s+", c["text"])[:2]) for c in corpus if len(c["text"].split()) > 40
    )
    rng = random.Random(20240901)
    parts = [(sts_sentences, 0.5), (queries, 0.2), (titles, 0.15), (openings, 0.15)]
    texts: list[str] = []
    for pool, share in parts:
        texts += rng.sample(pool, round(n * share))
    texts = texts[:n]
    rng.shuffle(texts)
    return texts


def model_flops(backbone: Any, lengths: list[int]) -> float:
    """FLOPs of one pass over real tokens: 2 x non-embedding params x tokens + attention scores/values."""
    cfg = backbone.config
    embedding = backbone.get_input_embeddings().weight.numel()
    params = sum(p.numel() for p in backbone.parameters()) - embedding
    attention = sum(4 * cfg.num_hidden_layers * cfg.hidden_size * t * t for t in lengths)
    return 2 * params * sum(lengths) + attention


def build_st(max_length: int, dtype: str):  # noqa: ANN201 - a SentenceTransformer
    """sentence-transformers on the same converted SmolLM2: plain text in, last-token pooling."""
    import torch
    from sentence_transformers import SentenceTransformer, models

    from poolattn.backbone import resolve_source

    plain_text = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
    transformer = models.Transformer(
        str(resolve_source("smollm2-135m")),
        max_seq_length=max_length,
        model_kwargs={"dtype": getattr(torch, dtype), "attn_implementation": "sdpa"},
        modality_config=plain_text,
        module_output_name="token_embeddings",
    )
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")


# ----------------------------------------------------------------------------- workers
def worker_encode(spec: dict[str, Any]) -> dict[str, Any]:
    """Load one side, warm up on one batch, time one pass over every text."""
    import torch

    texts = load_texts(Path(spec["data_dir"]), spec["n"])
    side, batch, max_length = spec["side"], spec["batch_size"], spec["max_length"]
    if side.startswith("poolattn"):
        from poolattn.model import EmbeddingModel

        dtype = "auto" if side.endswith("auto") else "float32"
        model = EmbeddingModel.from_pretrained(
            "smollm2-135m", attention="causal", pooling="eos", max_length=max_length, dtype=dtype
        )
        resolved = str(model.compute_dtype).removeprefix("torch.")

        def run(items: list[str]) -> object:
            return model.encode(items, batch_size=batch)
    else:
        resolved = side.rsplit(" ", 1)[-1]
        st = build_st(max_length, resolved)
        eos = st.tokenizer.eos_token
        texts = [t + eos for t in texts]

        def run(items: list[str]) -> object:
            return st.encode(items, batch_size=batch, normalize_embeddings=True)

    run(texts[:batch])  # warm-up: allocator, the first kernels
    passes = []
    for _ in range(1 + spec["passes"]):  # the first full pass meets every sequence length cold
        start = time.perf_counter()
        out = run(texts)
        passes.append(time.perf_counter() - start)
        assert len(out) == len(texts)
    seconds = median(passes[1:])
    return {
        "side": side,
        "dtype": resolved,
        "seconds": seconds,
        "texts_per_s": len(texts) / seconds,
        "first_pass_texts_per_s": len(texts) / passes[0],
        "threads": torch.get_num_threads(),
    }


def worker_check(spec: dict[str, Any]) -> dict[str, Any]:
    """Same work? Token ids and counts, padded tokens per pass, embeddings of both libraries."""
    import numpy as np

    from poolattn.model import EmbeddingModel

    texts = load_texts(Path(spec["data_dir"]), spec["n"])
    batch, max_length = spec["batch_size"], spec["max_length"]
    ours = EmbeddingModel.from_pretrained(
        "smollm2-135m", attention="causal", pooling="eos", max_length=max_length, dtype="float32"
    )
    st = build_st(max_length, "float32")
    st_texts = [t + ours.tokenizer.eos_token for t in texts]
    our_ids = ours.tokenize(texts)
    lengths = our_ids["attention_mask"].sum(dim=1).tolist()
    st_ids = st.preprocess(st_texts)
    st_lengths = st_ids["attention_mask"].sum(dim=1).tolist()
    same = sum(
        our_ids["input_ids"][i, : lengths[i]].tolist() == st_ids["input_ids"][i, : st_lengths[i]].tolist()
        for i in range(len(texts))
    )

    def padded_tokens(order: list[int], sizes: list[int]) -> int:
        batches = [order[s : s + batch] for s in range(0, len(order), batch)]
        return sum(len(b) * max(sizes[i] for i in b) for b in batches)

    sample = texts[:16]
    cosine = (ours.encode(sample) * st.encode(st_texts[:16], normalize_embeddings=True)).sum(axis=1)
    return {
        "same_ids": same,
        "n": len(texts),
        "same_token_count": lengths == st_lengths,
        "tokens": int(sum(lengths)),
        "min_length": int(min(lengths)),
        "max_length_seen": int(max(lengths)),
        "padded_poolattn": padded_tokens(sorted(range(len(texts)), key=lambda i: -lengths[i]), lengths),
        "padded_st": padded_tokens(sorted(range(len(texts)), key=lambda i: -len(st_texts[i])), st_lengths),
        "flops": model_flops(ours.backbone, lengths),
        "params_m": sum(p.numel() for p in ours.backbone.parameters()) / 1e6,
        "cosine_min": float(np.min(cosine)),
    }


def worker_agreement(spec: dict[str, Any]) -> dict[str, Any]:
    """Cosine between poolattn's bf16 and float32 embeddings of every pooler over the texts.

    One backbone pass per attention mode, dtype and batch; every pooler's own ``forward``
    then pools those states (trainable heads start from the same seed in both dtypes).
    """
    import torch

    from poolattn.backbone import load_backbone
    from poolattn.design import model_config
    from poolattn.model import EmbeddingModel

    texts = load_texts(Path(spec["data_dir"]), spec["n"])
    batch, max_length = spec["batch_size"], spec["max_length"]
    out: dict[str, Any] = {}
    for attention, poolers in AGREEMENT.items():
        embeddings: dict[str, dict[str, torch.Tensor]] = {}
        variants = ("float32", "bfloat16") + ((ROUNDED,) if attention == "bidirectional" else ())
        for variant in variants:
            dtype = "float32" if variant == ROUNDED else variant
            backbone, tokenizer = load_backbone(model_config(base="smollm2-135m", dtype=dtype))
            if variant == ROUNDED:
                with torch.no_grad():
                    for param in backbone.parameters():
                        param.copy_(param.to(torch.bfloat16).float())
            models = {
                name: EmbeddingModel(
                    backbone,
                    tokenizer,
                    model_config(
                        base="smollm2-135m",
                        pooling=name,
                        attention=attention,
                        max_length=max_length,
                        dtype=dtype,
                    ),
                    verify=False,
                ).eval()
                for name in poolers
            }
            first = next(iter(models.values()))
            features = first.tokenize(texts)
            order = torch.argsort(features["attention_mask"].sum(dim=1), descending=True).tolist()
            rows: dict[str, list[torch.Tensor]] = {name: [] for name in poolers}
            with torch.inference_mode():
                for start in range(0, len(texts), batch):
                    index = torch.tensor(order[start : start + batch])
                    used = features["attention_mask"][index].any(dim=0)
                    part = {k: v[index][:, used] for k, v in features.items()}
                    states = EmbeddingModel.hidden_states(first, part)  # (instances shadow it below)
                    for name, model in models.items():
                        model.hidden_states = lambda _f, s=states: s  # the real forward, shared states
                        rows[name].append(torch.nn.functional.normalize(model(part), dim=-1))
            inverse = torch.empty(len(order), dtype=torch.long)
            inverse[torch.tensor(order)] = torch.arange(len(order))
            embeddings[variant] = {name: torch.cat(r)[inverse] for name, r in rows.items()}
            del models, backbone
        for name in poolers:
            entry = {}
            for variant in variants[1:]:
                cosine = (embeddings["float32"][name] * embeddings[variant][name]).sum(dim=1)
                entry[variant] = {"mean": float(cosine.mean()), "min": float(cosine.min())}
            out[f"{name}+{attention}"] = entry
    return {"agreement": out}


def worker_peak(spec: dict[str, Any]) -> dict[str, Any]:
    """Best observed GFLOP/s of a 2048^3 matmul in float32 and in bf16 (this process's threads),
    measured as ``dtype = "auto"``'s probe measures (a larger product, more repeats)."""
    from poolattn.dtypes import measure_matmul_rates

    return {"peak_gflops": measure_matmul_rates(size=2048, repeats=8)}


WORKERS = {"encode": worker_encode, "check": worker_check, "agreement": worker_agreement, "peak": worker_peak}


# ----------------------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="128 texts, 1 round, no file written")
    parser.add_argument("--n", type=int, default=512, help="number of texts")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds (one process per side each)"
    )
    parser.add_argument(
        "--passes", type=int, default=2, help="timed passes per process after the first (cold) one"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--data-dir", default=None, help="default: $POOLATTN_DATA_DIR")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        emit(WORKERS[spec["kind"]](spec))
        return 0
    if args.quick:
        args.n, args.rounds, args.passes, args.no_write = 128, 1, 1, True
    import os

    data_dir = args.data_dir or os.environ["POOLATTN_DATA_DIR"]
    began = time.perf_counter()
    script = Path(__file__).resolve()
    common = {
        "data_dir": data_dir,
        "n": args.n,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "passes": args.passes,
    }

    def run(spec: dict[str, Any]) -> dict[str, Any]:
        return run_worker(script, {**common, **spec})

    print("checking that both libraries do the same work ...", flush=True)
    check = run({"kind": "check"})
    peaks = [run({"kind": "peak"})["peak_gflops"]]
    print(f"matmul peaks: {peaks[0]}", flush=True)
    specs = [{"kind": "encode", "side": side} for side in SIDES]
    results = alternating(specs, args.rounds, run, label=lambda s: s["side"])
    peaks.append(run({"kind": "peak"})["peak_gflops"])
    print("bf16 vs float32 agreement of every pooler ...", flush=True)
    agreement = run({"kind": "agreement"})["agreement"]

    peak = {d: max(p[d] for p in peaks) for d in ("float32", "bfloat16")}
    rate = {side: median(r["texts_per_s"] for r in rs) for side, rs in results.items()}
    dtype_of = {side: rs[0]["dtype"] for side, rs in results.items()}
    rss = {side: median(r["peak_rss_mb"] for r in rs) for side, rs in results.items()}
    ours, ours32 = "poolattn auto", "poolattn float32"
    st32, st16 = "sentence-transformers float32", "sentence-transformers bfloat16"

    first = {side: median(r["first_pass_texts_per_s"] for r in rs) for side, rs in results.items()}

    def ratio(a: str, b: str, key: str = "texts_per_s") -> tuple[float, float]:
        """Ratio of medians, and the median of per-round ratios (adjacent runs share the load)."""
        per_round = [x[key] / y[key] for x, y in zip(results[a], results[b], strict=True)]
        of = {"texts_per_s": rate, "first_pass_texts_per_s": first}[key]
        return of[a] / of[b], median(per_round)

    rows = []
    for side in SIDES:
        gflops = check["flops"] / (args.n / rate[side]) / 1e9
        dt = dtype_of[side]
        runs = ", ".join(f"{r['texts_per_s']:.1f}" for r in results[side])
        firsts = ", ".join(f"{r['first_pass_texts_per_s']:.1f}" for r in results[side])
        name = f"{side} ({dt})" if side == ours else side
        rows.append(
            f"| {name} | {rate[side]:.1f} | {gflops:.1f} | {gflops / peak[dt]:.1%} of {dt} | "
            f"{rss[side] / 1024:.2f} | {runs} | {first[side]:.1f} ({firsts}) |"
        )
    comparisons = [
        (f"poolattn {dtype_of[ours]} / sentence-transformers float32", ratio(ours, st32), 1.6),
        (f"poolattn {dtype_of[ours]} / sentence-transformers bfloat16", ratio(ours, st16), 1.15),
        (f"poolattn {dtype_of[ours]} / poolattn float32", ratio(ours, ours32), None),
        ("poolattn float32 / sentence-transformers float32", ratio(ours32, st32), 1.0),
        ("sentence-transformers bfloat16 / float32", ratio(st16, st32), None),
        (
            f"first (cold) pass: poolattn {dtype_of[ours]} / sentence-transformers bfloat16",
            ratio(ours, st16, "first_pass_texts_per_s"),
            None,
        ),
    ]
    ratio_rows = [
        f"| {name} | **{r:.2f}** | {p:.2f} | {'' if t is None else f'>= {t}'}"
        f"{'' if t is None else (' met' if r >= t else ' **missed**')} |"
        for name, (r, p), t in comparisons
    ]
    agree_rows = []
    for design, entry in agreement.items():
        a, control = entry["bfloat16"], entry.get(ROUNDED)
        met = a["mean"] >= 0.999 and a["min"] >= 0.99
        verdict = (
            ("met" if met else "**missed**")
            if design.endswith("+causal")
            else ("within" if met else "outside")
        )
        agree_rows.append(
            f"| {design} | {a['mean']:.6f} | {a['min']:.6f} | {verdict} | "
            + (f"{control['mean']:.6f} / {control['min']:.6f} |" if control else "|")
        )
    command = "python bench/encode.py" + (" --quick" if args.quick else "")
    body = f"""
`{command}` (run by `make bench`), {machine()}; {versions("torch", "transformers", "sentence-transformers")}.
SmolLM2-135M-Instruct (sdpa), causal attention, last-token (EOS) pooling, max_length {args.max_length},
batch size {args.batch_size}, {check["n"]} real texts (STSBenchmark sentences, SciFact claims, titles and
abstract openings; {check["min_length"]}-{check["max_length_seen"]} tokens, {check["tokens"]} in all).
One fresh process per measurement (load, warm-up on one batch, a first full pass that meets every
sequence length cold, then {args.passes} timed pass(es): texts/s is their median, the throughput of a
corpus longer than one pass; the first pass is shown beside it), the four sides alternating over
{args.rounds} round(s); medians over rounds. `poolattn auto` is the default `dtype = "auto"`, which
chose {dtype_of[ours]} here (frozen weights stored in bf16, backbone under autocast, pooling in float32,
float32 embeddings out). sentence-transformers: `models.Transformer` pinned to plain text +
`Pooling(pooling_mode="lasttoken")`, EOS appended; identical token ids for {check["same_ids"]}/{check["n"]} texts
(the rest are cut at max_length: ST cuts the appended EOS, poolattn keeps it), same token count:
{"yes" if check["same_token_count"] else "no"}; float32 embeddings of both agree to cosine >= {check["cosine_min"]:.6f}.

| side | texts/s | GFLOP/s | fraction of the matmul peak | peak RSS (GB) | runs (texts/s) | first pass texts/s (runs) |
|---|---:|---:|---|---:|---|---|
{chr(10).join(rows)}

| ratio | of medians | median per-round | target |
|---|---:|---:|---|
{chr(10).join(ratio_rows)}

Matmul peaks (2048^3, best of 8, own process before and after the runs): float32 {peak["float32"]:.0f}
GFLOP/s, bf16 {peak["bfloat16"]:.0f} GFLOP/s. Model FLOPs counted on real tokens: 2 x {check["params_m"]:.0f}M params
(minus the embedding table) x tokens + attention 4 x layers x hidden x length^2. Tokens through the
model per pass, padding included: poolattn {check["padded_poolattn"]} (batches cut by token length),
sentence-transformers {check["padded_st"]} (by characters); {check["tokens"]} real.

poolattn bf16 vs float32 embeddings of the same {check["n"]} texts, every pooler (trainable heads at their
seeded initialisation, identical in both dtypes). Target (every pooler, on the pretrained model's own
causal attention): mean cosine >= 0.999, min >= 0.99. The untrained bidirectional designs are shown
too, with a control: float32 compute over weights rounded to bf16.

| pooler + attention | mean cosine | min cosine | target | control: mean / min cosine |
|---|---:|---:|---|---|
{chr(10).join(agree_rows)}

The untrained model run bidirectionally (which it was never trained for) is far more sensitive to
rounding its activations than to rounding its weights: the control stays close to float32 while
bf16 compute moves a few texts a long way. Measured while finding this (128 texts): with autocast
over float32 weights (float32 residual stream), mean+bidirectional still reached only min 0.968
and eos+bidirectional min 0.07, against min 1.000000 for float32 at batch 32 vs batch 5. Trained
bidirectional designs are compared end to end (bf16 vs float32 training, STS Spearman) in the
Training section.
"""
    print(body)
    if not args.no_write:
        from benchmarks_md import write_section

        write_section(Path(args.output), SECTION, body)
        print(f"wrote the {SECTION!r} section of {args.output}")
    print(f"total {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
