"""Encoding throughput: poolattn ``EmbeddingModel.encode`` vs sentence-transformers, same work.

Both sides run the real SmolLM2-135M (the converted ``smollm2-135m`` directory), causal
attention, last-token (EOS) pooling, fp32, the same max length and batch size, on the
same deterministic mix of real sentences. ST gets the same token ids: its Transformer is
pinned to plain-text input (ST 6 otherwise renders text through the model's chat
template) and EOS is appended to each text. Runs alternate in one process; we report
medians, the ratio, and the fraction of this CPU's fp32 matmul peak measured in the same
run. The figures go into the "## Encoding" section of BENCHMARKS.md.

    python bench/encode.py            # full: 512 texts, 3 alternating repetitions (2 past --budget)
    python bench/encode.py --quick    # 128 texts, 2 repetitions
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from benchmarks_md import write_section  # noqa: E402  (bench/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Encoding"


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


def matmul_peak_gflops(size: int = 2048, repeats: int = 6) -> float:
    """Best observed fp32 GFLOP/s of a large square matmul on this CPU (with the current thread count)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def model_flops(backbone: torch.nn.Module, lengths: list[int]) -> float:
    """FLOPs of one pass over real tokens: 2 x non-embedding params x tokens + attention scores/values."""
    cfg = backbone.config
    embedding = backbone.get_input_embeddings().weight.numel()
    params = sum(p.numel() for p in backbone.parameters()) - embedding
    attention = sum(4 * cfg.num_hidden_layers * cfg.hidden_size * t * t for t in lengths)
    return 2 * params * sum(lengths) + attention


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 texts, 2 repetitions (a smoke run)")
    parser.add_argument("--n", type=int, default=512, help="number of texts")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions per side")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="stop repeating (after 2) when another would pass this many seconds",
    )
    parser.add_argument(
        "--data-dir", default=os.environ.get("POOLATTN_DATA_DIR", str(ROOT.parent / "shared/data"))
    )
    parser.add_argument(
        "--output", default=str(ROOT / "BENCHMARKS.md"), help="file whose Encoding section to write"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.reps = 128, 2

    from sentence_transformers import SentenceTransformer, models

    from poolattn.backbone import resolve_source
    from poolattn.model import EmbeddingModel

    began = time.perf_counter()
    texts = load_texts(Path(args.data_dir), args.n)
    ours = EmbeddingModel.from_pretrained(
        "smollm2-135m", attention="causal", pooling="eos", max_length=args.max_length
    )
    source = str(resolve_source("smollm2-135m"))
    plain_text = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
    transformer = models.Transformer(
        source,
        max_seq_length=args.max_length,
        model_kwargs={"dtype": torch.float32, "attn_implementation": "sdpa"},
        modality_config=plain_text,
        module_output_name="token_embeddings",
    )
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    st = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    eos = ours.tokenizer.eos_token
    st_texts = [t + eos for t in texts]

    # Same work? Same token ids per text, and the same embeddings.
    our_ids = ours.tokenize(texts)
    lengths = our_ids["attention_mask"].sum(dim=1).tolist()
    st_ids = st.preprocess(st_texts)
    st_lengths = st_ids["attention_mask"].sum(dim=1).tolist()
    same = sum(
        our_ids["input_ids"][i, : lengths[i]].tolist() == st_ids["input_ids"][i, : st_lengths[i]].tolist()
        for i in range(len(texts))
    )
    # An over-long text differs only in its last id: poolattn keeps EOS after truncation, ST cuts it.
    same_ids = f"{same}/{len(texts)} texts" + (
        ""
        if same == len(texts)
        else " (the rest are truncated at max_length: ST cuts the appended EOS, poolattn keeps it)"
    )
    same_ids += "; same token count: " + ("yes" if lengths == st_lengths else "NO")
    sample = texts[:16]
    agree = float(
        (ours.encode(sample) * st.encode([t + eos for t in sample], normalize_embeddings=True))
        .sum(axis=1)
        .min()
    )

    def run_ours() -> object:
        return ours.encode(texts, batch_size=args.batch_size)

    def run_st() -> object:
        return st.encode(st_texts, batch_size=args.batch_size, normalize_embeddings=True)

    def padded_tokens(order: list[int], sizes: list[int]) -> int:
        batches = [order[s : s + args.batch_size] for s in range(0, len(order), args.batch_size)]
        return sum(len(b) * max(sizes[i] for i in b) for b in batches)

    # The work each side really does: poolattn cuts batches by token length, ST by characters.
    padded = {
        "poolattn": padded_tokens(sorted(range(len(texts)), key=lambda i: -lengths[i]), lengths),
        "sentence-transformers": padded_tokens(
            sorted(range(len(texts)), key=lambda i: -len(st_texts[i])), st_lengths
        ),
    }
    peak_before = matmul_peak_gflops()
    ours.encode(texts[: args.batch_size], batch_size=args.batch_size)  # warm-up both
    st.encode(st_texts[: args.batch_size], batch_size=args.batch_size)
    times: dict[str, list[float]] = {"poolattn": [], "sentence-transformers": []}
    for rep in range(args.reps):
        pair = [("poolattn", run_ours), ("sentence-transformers", run_st)]
        for name, fn in pair if rep % 2 == 0 else pair[::-1]:
            times[name].append(timed(fn))
        print(
            f"rep {rep + 1}: poolattn {len(texts) / times['poolattn'][-1]:.1f} texts/s, "
            f"sentence-transformers {len(texts) / times['sentence-transformers'][-1]:.1f} texts/s",
            flush=True,
        )
        last_pair = times["poolattn"][-1] + times["sentence-transformers"][-1]
        if rep >= 1 and rep + 1 < args.reps and time.perf_counter() - began + last_pair > args.budget:
            print(f"time budget ({args.budget:.0f} s) reached: stopping after {rep + 1} repetitions")
            break
    peak = max(peak_before, matmul_peak_gflops())

    med = {name: statistics.median(ts) for name, ts in times.items()}
    rate = {name: len(texts) / t for name, t in med.items()}
    ratio = rate["poolattn"] / rate["sentence-transformers"]
    # Adjacent runs share the machine's load, so their ratio is steadier on a shared CPU.
    paired = statistics.median(
        s / o for o, s in zip(times["poolattn"], times["sentence-transformers"], strict=True)
    )
    flops = model_flops(ours.backbone, lengths)
    achieved = {name: flops / t / 1e9 for name, t in med.items()}
    reps_done = len(times["poolattn"])
    loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    command = "python bench/encode.py" + (" --quick" if args.quick else "")
    body = f"""
`{command}` (run by `make bench`): SmolLM2-135M-Instruct (fp32, sdpa), causal attention,
EOS pooling, max_length {args.max_length}, batch size {args.batch_size}, {len(texts)} real texts
(STSBenchmark sentences, SciFact claims, titles and abstract openings; {min(lengths)}-{max(lengths)}
tokens, {sum(lengths)} in all), {reps_done} alternating repetitions in one process, medians.
sentence-transformers {_version("sentence_transformers")}: `models.Transformer` pinned to plain text
+ `Pooling(pooling_mode="lasttoken")`, EOS appended to each text; identical token ids for {same_ids};
embeddings agree to cosine >= {agree:.6f}.

| | texts/s | GFLOP/s | fraction of fp32 matmul peak |
|---|---|---|---|
| poolattn `encode` | {rate["poolattn"]:.1f} | {achieved["poolattn"]:.1f} | {achieved["poolattn"] / peak:.1%} |
| sentence-transformers | {rate["sentence-transformers"]:.1f} | {achieved["sentence-transformers"]:.1f} | {achieved["sentence-transformers"] / peak:.1%} |

Ratio poolattn / sentence-transformers: **{ratio:.2f}** (target >= 1.0); median of the
per-repetition (adjacent-run) ratios: {paired:.2f}; runs: poolattn
{", ".join(f"{len(texts) / t:.1f}" for t in times["poolattn"])}, sentence-transformers
{", ".join(f"{len(texts) / t:.1f}" for t in times["sentence-transformers"])} texts/s.
Tokens through the model per pass, padding included: poolattn {padded["poolattn"]}
(batches cut by token length), sentence-transformers {padded["sentence-transformers"]} (by characters);
{sum(lengths)} real.
fp32 matmul peak measured in the same run: {peak:.1f} GFLOP/s (2048^3, {torch.get_num_threads()} threads).
Model FLOPs counted on real tokens: 2 x {sum(p.numel() for p in ours.backbone.parameters()) / 1e6:.0f}M params
(minus the embedding table) x tokens + attention 4 x layers x hidden x length^2.
Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {loadavg:.1f} at the end (other jobs share the CPU).
"""
    print(body)
    if not args.no_write:
        write_section(Path(args.output), SECTION, body)
        print(f"wrote the {SECTION!r} section of {args.output}")
    print(f"total {time.perf_counter() - began:.0f} s")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package.replace("_", "-"))


if __name__ == "__main__":
    sys.exit(main())
