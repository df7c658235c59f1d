"""Training benchmark on the real SmolLM2-135M (``make bench``): poolattn against
sentence-transformers' ``CachedMultipleNegativesRankingLoss``, memory against batch size, and
bf16 against float32 training.

1. Throughput (training examples/s, median over steps after a warm-up step; peak RSS) of
   poolattn's trainer (GradCache, length-grouped mini-batches) against sentence-transformers'
   cached MNRL with the same backbone, LoRA (rank, alpha, dropout, targets), last-token pooling,
   the same batches in the same order, batch size, mini-batch size, max length, learning rate,
   AdamW, clipping and dtype; in bf16 and in float32; plus the paper-style reference loop
   (three forwards padded to their longest text, no GradCache). Two kinds of data
   (``SCENARIOS``): the mix of short and long texts of configs/quick.toml at max_length 128,
   and uniform short SNLI triples at max_length 32.
2. Peak RSS of one poolattn GradCache step at batch 32, 512 and 2048 (same mini-batch).
3. 30 steps from the same seed in bf16 and in float32: losses, and STSBenchmark dev Spearman.

Every measurement is a fresh process; sides alternate over rounds. Figures go into the
"## Training" section of BENCHMARKS.md.

    python bench/train.py            # everything (~40 min on a 2-core CPU)
    python bench/train.py --quick    # tiny sizes, nothing written: does the code run?
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import ROOT, alternating, emit, machine, median, run_worker, versions

SECTION = "## Training"
DESIGN = {"base": "smollm2-135m", "pooling": "eos", "attention": "causal"}  # = ST's lasttoken pooling
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA = {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": TARGETS}
LEARNING_RATE, TEMPERATURE, SEED = 1e-4, 0.05, 0
QUICK_MIX = {
    "train": [
        "train/snli_triples.jsonl",
        "train/quora_duplicate_pairs.jsonl",
        "train/scifact_train_pairs.jsonl",
    ],
    "instructions": {
        "snli_triples": "Retrieve semantically similar text.",
        "quora_duplicate_pairs": "Retrieve questions that are semantically equivalent to the given question",
        "scifact_train_pairs": "Given a scientific claim, retrieve documents that support or refute the claim",
    },
    "weights": {"snli_triples": 5.0, "quora_duplicate_pairs": 2.0, "scifact_train_pairs": 3.0},
}
# The mix has pairs without a hard negative; sentence-transformers needs one column per role,
# so both sides train on (query, positive) there, and on (query, positive, negative) on SNLI.
SCENARIOS: dict[str, dict[str, Any]] = {
    "mix-128": {"max_length": 128, "data": {**QUICK_MIX, "num_negatives": 0}},
    "snli-32": {
        "max_length": 32,
        "data": {
            "train": ["train/snli_triples.jsonl"],
            "instructions": {"snli_triples": "Retrieve semantically similar text."},
            "num_negatives": 1,
        },
    },
}
MEMORY_SCENARIO = "snli-32"
STS_INSTRUCTION = "Retrieve semantically similar text."


def make_config(
    out: Path,
    scenario: str,
    batch: int,
    mini: int,
    steps: int,
    dtype: str = "auto",
    gradcache: bool = True,
    **training: Any,
):  # noqa: ANN201 - a TrainConfig
    from poolattn.training import train_config_from_dict

    sc = SCENARIOS[scenario]
    return train_config_from_dict(
        {
            "model": {**DESIGN, "max_length": sc["max_length"], "dtype": dtype},
            "data": dict(sc["data"]),
            "training": {
                "steps": steps, "batch_size": batch, "mini_batch_size": mini, "gradcache": gradcache,
                "learning_rate": LEARNING_RATE, "warmup_steps": 0, "temperature": TEMPERATURE, "seed": SEED,
                "output_dir": str(out), "save_every": 10**6, "progress": False, "keep_checkpoints": 1,
                **training,
            },
            "lora": dict(LORA),
        }
    )  # fmt: skip


def step_tokens(cfg, steps: int) -> list[int]:  # noqa: ANN001
    """Real tokens per step (the same batches every side sees), for the record."""
    from transformers import AutoTokenizer

    from poolattn.backbone import resolve_source, setup_tokenizer
    from poolattn.tokenization import tokenize
    from poolattn.training import BatchSampler, load_sources
    from poolattn.training.trainer import _step_texts

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(cfg.model.base))
    setup_tokenizer(tokenizer, "right")
    sampler = BatchSampler(load_sources(cfg.data), cfg.training.batch_size, seed=SEED)
    out = []
    for _ in range(steps):
        queries, docs, instructions, _ = _step_texts(sampler.next_batch(), cfg.data.num_negatives)
        m = cfg.model
        features = tokenize(
            tokenizer, queries + docs, max_length=m.max_length, template=m.query_template,
            instruction=instructions, max_instruction_length=m.max_instruction_length,
        )  # fmt: skip
        out.append(int(features["attention_mask"].sum()))
    return out


# ----------------------------------------------------------------------------- workers
def worker_poolattn(spec: dict[str, Any]) -> dict[str, Any]:
    """poolattn's trainer end to end; seconds per step from its metrics.jsonl."""
    from poolattn.training import train
    from poolattn.training.config import read_train_run

    out = Path(tempfile.mkdtemp()) / "run"
    cfg = make_config(out, spec["scenario"], spec["batch"], spec["mini"], spec["steps"], spec["dtype"])
    try:
        train(cfg)
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        info = read_train_run(out)["model"]
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    return {
        "step_s": [m["step_s"] for m in metrics],
        "loss": [m["loss"] for m in metrics],
        "dtype": info.get("compute_dtype", spec["dtype"]),
    }


def _st_texts(tokenizer, texts: list[str], instructions: list[str | None], cfg) -> list[str]:  # noqa: ANN001
    """The strings whose tokenization is exactly poolattn's ids (prompt, truncation, EOS): our ids,
    decoded, minus the special tokens the tokenizer adds by itself."""
    from poolattn.tokenization import tokenize

    m = cfg.model
    features = tokenize(
        tokenizer, texts, max_length=m.max_length, template=m.query_template,
        instruction=instructions, max_instruction_length=m.max_instruction_length,
    )  # fmt: skip
    added = len(tokenizer("")["input_ids"])
    lengths = features["attention_mask"].sum(dim=1).tolist()
    return [
        tokenizer.decode(ids[added:n]) for ids, n in zip(features["input_ids"].tolist(), lengths, strict=True)
    ]


def worker_st(spec: dict[str, Any]) -> dict[str, Any]:
    """sentence-transformers' CachedMultipleNegativesRankingLoss on the same batches, LoRA and recipe."""
    import contextlib

    import torch
    from peft import LoraConfig
    from sentence_transformers import SentenceTransformer, losses, models
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    from poolattn.backbone import resolve_source, setup_tokenizer
    from poolattn.training import BatchSampler, load_sources

    dtype = spec["dtype"]
    cfg = make_config(
        Path(tempfile.gettempdir()), spec["scenario"], spec["batch"], spec["mini"], spec["steps"]
    )
    source = str(resolve_source("smollm2-135m"))
    tokenizer = AutoTokenizer.from_pretrained(source)
    setup_tokenizer(tokenizer, "right")
    torch.manual_seed(SEED)
    plain_text = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
    transformer = models.Transformer(
        source,
        max_seq_length=cfg.model.max_length + cfg.model.max_instruction_length + 8,  # our ids are already cut
        model_kwargs={"dtype": getattr(torch, dtype), "attn_implementation": "sdpa"},
        modality_config=plain_text,
        module_output_name="token_embeddings",
    )
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    st = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    st.add_adapter(
        LoraConfig(
            r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
            target_modules=TARGETS, bias="none",
        )
    )  # fmt: skip
    trainable = [p for p in st.parameters() if p.requires_grad]
    lora_dtype = str(trainable[0].dtype).removeprefix("torch.")
    for p in trainable:  # transformers' add_adapter keeps LoRA in the weights' dtype; PEFT (ours) uses fp32
        p.data = p.data.float()
    loss_fn = losses.CachedMultipleNegativesRankingLoss(
        st, scale=1 / TEMPERATURE, mini_batch_size=spec["mini"]
    )
    optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, spec["steps"])
    sampler = BatchSampler(load_sources(cfg.data), spec["batch"], seed=SEED)
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if dtype == "bfloat16"
        else contextlib.nullcontext
    )
    st.train()
    times, losses_seen, same_ids, checked = [], [], 0, 0
    for step in range(spec["steps"]):
        examples = sampler.next_batch()
        columns = [
            _st_texts(tokenizer, [e.query for e in examples], [e.instruction for e in examples], cfg),
            _st_texts(tokenizer, [e.positive for e in examples], [None] * len(examples), cfg),
        ]
        if cfg.data.num_negatives:
            columns.append(
                _st_texts(tokenizer, [e.negatives[0] for e in examples], [None] * len(examples), cfg)
            )
        tick = time.perf_counter()
        features = [st.preprocess(column) for column in columns]
        with autocast():  # both passes of the cached loss (its replay runs inside backward)
            value = loss_fn(features, None)
            value.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - tick)
        losses_seen.append(float(value.detach()))
        if step == 0:  # the same token ids as poolattn's tokenizer gives?
            from poolattn.tokenization import tokenize

            m = cfg.model
            ours = tokenize(
                tokenizer, [e.query for e in examples], max_length=m.max_length, template=m.query_template,
                instruction=[e.instruction for e in examples], max_instruction_length=m.max_instruction_length,
            )  # fmt: skip
            st_ids = features[0]["input_ids"]
            for row in range(len(examples)):
                n = int(ours["attention_mask"][row].sum())
                same_ids += ours["input_ids"][row, :n].tolist() == st_ids[row, :n].tolist()
                checked += 1
    return {
        "step_s": times,
        "loss": losses_seen,
        "dtype": dtype,
        "lora_dtype_from_add_adapter": lora_dtype,
        "same_query_ids": f"{same_ids}/{checked}",
    }


def worker_reference(spec: dict[str, Any]) -> dict[str, Any]:
    """The paper-style loop: 3 forwards (queries, positives, negatives) each padded to its
    longest text, InfoNCE, backward, AdamW; no GradCache, no length grouping."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from poolattn.training import BatchSampler, build_model, load_sources
    from poolattn.training.loss import info_nce
    from poolattn.training.trainer import parameter_groups

    steps = spec["steps"]
    cfg = make_config(
        Path(tempfile.gettempdir()), spec["scenario"], spec["batch"], spec["batch"], steps, spec["dtype"]
    )
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), lr=LEARNING_RATE)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, steps)
    sampler = BatchSampler(load_sources(cfg.data), spec["batch"], seed=SEED)
    times = []
    for _ in range(steps):
        tick = time.perf_counter()
        examples = sampler.next_batch()
        q = model(model.tokenize([e.query for e in examples], "query", [e.instruction for e in examples]))
        p = model(model.tokenize([e.positive for e in examples], "document"))
        negatives = [e.negatives[0] for e in examples if e.negatives] if cfg.data.num_negatives else []
        n = model(model.tokenize(negatives, "document")) if negatives else None
        loss = info_nce(q, p, n, temperature=TEMPERATURE)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - tick)
    return {"step_s": times, "dtype": str(model.compute_dtype).removeprefix("torch.")}


def worker_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """One poolattn GradCache step in a fresh process; its largest mini-batch, for the record."""
    from poolattn.training.gradcache import make_chunks, mean_length_budget

    result = worker_poolattn(spec)
    cfg = make_config(Path(tempfile.gettempdir()), spec["scenario"], spec["batch"], spec["mini"], 1)
    from transformers import AutoTokenizer

    from poolattn.backbone import resolve_source, setup_tokenizer
    from poolattn.tokenization import tokenize
    from poolattn.training import BatchSampler, load_sources
    from poolattn.training.trainer import _step_texts

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(cfg.model.base))
    setup_tokenizer(tokenizer, "right")
    m = cfg.model

    def tok(texts, _prompt, instructions):  # noqa: ANN001, ANN202
        return tokenize(
            tokenizer, texts, max_length=m.max_length, template=m.query_template,
            instruction=instructions, max_instruction_length=m.max_instruction_length,
        )  # fmt: skip

    queries, docs, instructions, _ = _step_texts(
        BatchSampler(load_sources(cfg.data), spec["batch"], seed=SEED).next_batch(), cfg.data.num_negatives
    )
    chunks = make_chunks(tok, queries + docs, instructions, spec["mini"], "mean")
    padded = [f["input_ids"].numel() for f in chunks.features]
    lengths = tok(queries + docs, None, instructions)["attention_mask"].sum(dim=1).tolist()
    return {
        **result,
        "texts": len(queries + docs),
        "mini_batches": len(padded),
        "largest_mini_batch_tokens": max(padded),
        "token_budget": mean_length_budget(lengths, spec["mini"]),
    }


def worker_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Model + LoRA alone: what every step sits on."""
    from poolattn.training import build_model

    model = build_model(make_config(Path(tempfile.gettempdir()), MEMORY_SCENARIO, 1, 1, 1, spec["dtype"]))
    return {"dtype": str(model.compute_dtype).removeprefix("torch.")}


def worker_agree(spec: dict[str, Any]) -> dict[str, Any]:
    """``steps`` steps of the quick recipe in one dtype, then STSBenchmark dev Spearman."""
    import numpy as np
    from scipy.stats import spearmanr

    from poolattn.model import EmbeddingModel
    from poolattn.training import train, train_config_from_dict

    rows = [json.loads(line) for line in (Path(spec["data_dir"]) / "eval/sts/STSBenchmark/dev.jsonl").open()]
    rows = rows[: spec["pairs"]]
    sentences = sorted({s for r in rows for s in (r["sentence1"], r["sentence2"])})

    def spearman(model: EmbeddingModel) -> float:
        emb = model.encode(sentences, prompt_type="query", instruction=STS_INSTRUCTION, batch_size=32)
        at = {s: i for i, s in enumerate(sentences)}
        a = np.stack([emb[at[r["sentence1"]]] for r in rows])
        b = np.stack([emb[at[r["sentence2"]]] for r in rows])
        return float(spearmanr((a * b).sum(axis=1), [r["score"] for r in rows]).statistic)

    design = {**DESIGN, "pooling": spec["pooling"], "attention": spec["attention"], "max_length": 64}
    out = Path(tempfile.mkdtemp()) / "run"
    result: dict[str, Any] = {"dtype": spec["dtype"]}
    if spec.get("untrained"):
        result["untrained_spearman"] = spearman(
            EmbeddingModel.from_pretrained(design["base"], **{k: v for k, v in design.items() if k != "base"},
                                           dtype=spec["dtype"])
        )  # fmt: skip
    cfg = train_config_from_dict(
        {
            "model": {**design, "dtype": spec["dtype"]},
            "data": dict(QUICK_MIX),
            "training": {
                "steps": spec["steps"], "batch_size": 16, "mini_batch_size": 48, "learning_rate": 1e-3,
                "head_learning_rate": 1e-3, "warmup_steps": 5, "seed": SEED, "output_dir": str(out),
                "save_every": 10**6, "progress": False, "keep_checkpoints": 1,
            },
            "lora": dict(LORA),
        }
    )  # fmt: skip
    try:
        final = train(cfg)
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        model = EmbeddingModel.load(final)
        result.update(
            loss=[m["loss"] for m in metrics],
            step_s=[m["step_s"] for m in metrics],
            compute_dtype=str(model.compute_dtype).removeprefix("torch."),
            spearman=spearman(model),
        )
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    return result


WORKERS = {
    "poolattn": worker_poolattn,
    "sentence-transformers": worker_st,
    "reference": worker_reference,
    "memory": worker_memory,
    "load": worker_load,
    "agree": worker_agree,
}


# ----------------------------------------------------------------------------- report
def _eps(result: dict[str, Any], batch: int) -> float:
    """Training examples/s: the median step after the first (warm-up) step."""
    steps = result["step_s"][1:] or result["step_s"]
    return batch / median(steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, nothing written")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--mini", type=int, default=32)
    parser.add_argument(
        "--steps", type=int, default=4, help="timed steps per process (after one warm-up step)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the throughput sides")
    parser.add_argument("--memory-batches", type=int, nargs="*", default=[32, 512, 2048])
    parser.add_argument("--agree-steps", type=int, default=30)
    parser.add_argument("--agree-pairs", type=int, default=1500, help="STSBenchmark dev pairs scored")
    parser.add_argument(
        "--agree-designs",
        nargs="+",
        default=["eos+causal", "multilayer+bidirectional"],
        help="pooling+attention",
    )
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "memory", "agreement"])
    parser.add_argument("--data-dir", default=None, help="default: $POOLATTN_DATA_DIR")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        emit(WORKERS[spec["kind"]](spec))
        return 0
    if args.quick:
        args.batch, args.mini, args.steps, args.rounds, args.no_write = 8, 8, 1, 1, True
        args.memory_batches, args.agree_steps, args.agree_pairs = [8, 32], 2, 40
    import os

    data_dir = args.data_dir or os.environ["POOLATTN_DATA_DIR"]
    script = Path(__file__).resolve()
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    steps = args.steps + 1  # the first step warms up (allocator, oneDNN kernels): not counted
    sections: list[str] = []

    if "throughput" not in args.skip:
        sections.append(throughput(args, script, steps))
    if "memory" not in args.skip:
        sections.append(memory(args, script))
    if "agreement" not in args.skip:
        sections.append(agreement(args, script, data_dir))

    command = "python bench/train.py" + (" --quick" if args.quick else "")
    header = (
        f"`{command}` (run by `make bench`), {machine()} (load average {load_before:.2f} before the run); "
        f"{versions('torch', 'transformers', 'peft', 'sentence-transformers')}. SmolLM2-135M-Instruct, LoRA "
        f"r={LORA['r']}, alpha {LORA['alpha']}, dropout {LORA['dropout']} on all 7 projections, "
        f"AdamW lr {LEARNING_RATE:g}, clipping 1.0, temperature {TEMPERATURE} (scale {1 / TEMPERATURE:g}). "
        f"Every figure comes from its own fresh process. Total bench time {time.perf_counter() - began:.0f} s."
    )
    body = header + "\n\n" + "\n\n".join(sections)
    print(body)
    if not args.no_write:
        from benchmarks_md import write_section

        write_section(Path(args.output), SECTION, body)
        print(f"wrote the {SECTION!r} section of {args.output}")
    return 0


def throughput(args: argparse.Namespace, script: Path, steps: int) -> str:
    """poolattn vs sentence-transformers cached MNRL (bf16 and float32) and the reference loop."""
    sides = [
        ("poolattn", "auto"),
        ("sentence-transformers", "bfloat16"),
        ("poolattn", "float32"),
        ("sentence-transformers", "float32"),
        ("reference", "auto"),
    ]
    lines = [
        f"### Throughput: poolattn vs sentence-transformers `CachedMultipleNegativesRankingLoss`\n\n"
        f"Batch {args.batch} queries, mini-batch {args.mini}, design eos+causal = ST `Pooling(lasttoken)` "
        f"(EOS appended by both), median of {args.steps} steps after a warm-up step, per process; "
        f"{args.rounds} alternating round(s), median over rounds. Training examples/s (peak RSS, GB). ST gets "
        f"poolattn's exact token ids (its prompt, truncation and EOS, decoded to text), the same batches in "
        f"the same order, LoRA moved to float32 (transformers' `add_adapter` keeps the weights' dtype: bf16 "
        f"LoRA would not train, see the guide), and its bf16 runs under `torch.autocast` around both the "
        f"loss and its backward (where the cached loss replays its forward), over bf16-stored weights like "
        f"poolattn's `auto`. The reference row is the paper-style loop (three forwards padded to their "
        f"longest text, no GradCache) in the `auto` dtype.",
        "",
        "| data | max_length | poolattn bf16 | ST cached MNRL bf16 | poolattn fp32 | ST cached MNRL fp32 "
        "| reference bf16 | poolattn / ST, bf16 (target) | poolattn / ST, fp32 | poolattn bf16 / fp32 (target) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    details = []
    for index, scenario in enumerate(args.scenarios):
        specs = [
            {"kind": kind, "dtype": dtype, "scenario": scenario, "batch": args.batch, "mini": args.mini,
             "steps": steps}
            for kind, dtype in sides
        ]  # fmt: skip
        print(f"throughput, {scenario} ...", flush=True)
        results = alternating(
            specs,
            args.rounds,
            lambda s: run_worker(script, s),
            label=lambda s: f"{s['kind']} {s['dtype']}",
            first_reversed=index % 2 == 1,
        )
        eps = {k: median(_eps(r, args.batch) for r in rs) for k, rs in results.items()}
        rss = {k: median(r["peak_rss_mb"] for r in rs) / 1024 for k, rs in results.items()}
        cell = {k: f"{eps[k]:.2f} ({rss[k]:.1f})" for k in eps}
        bf16 = eps["poolattn auto"] / eps["sentence-transformers bfloat16"]
        fp32 = eps["poolattn float32"] / eps["sentence-transformers float32"]
        self_ratio = eps["poolattn auto"] / eps["poolattn float32"]
        target = 1.3 if scenario.startswith("mix") else 1.1
        sc = SCENARIOS[scenario]
        names = " + ".join(Path(t).stem for t in sc["data"]["train"])
        negatives = "with a hard negative" if sc["data"]["num_negatives"] else "pairs, no hard negative"
        lines.append(
            f"| {names} ({negatives}) | {sc['max_length']} | {cell['poolattn auto']} | "
            f"{cell['sentence-transformers bfloat16']} | {cell['poolattn float32']} | "
            f"{cell['sentence-transformers float32']} | {cell['reference auto']} | "
            f"**{bf16:.2f}x** (>= {target}: {'met' if bf16 >= target else 'missed'}) | {fp32:.2f}x | "
            f"**{self_ratio:.2f}x** (>= 1.35: {'met' if self_ratio >= 1.35 else 'missed'}) |"
        )
        st = results["sentence-transformers bfloat16"][0]
        poolattn_dtype = results["poolattn auto"][0]["dtype"]
        runs = "; ".join(
            f"{k}: {', '.join(f'{_eps(r, args.batch):.2f}' for r in rs)}" for k, rs in results.items()
        )
        details.append(
            f"{scenario}: poolattn `auto` ran in {poolattn_dtype}; ST query ids identical to poolattn's for "
            f"{st['same_query_ids']} texts; ST's `add_adapter` made LoRA {st['lora_dtype_from_add_adapter']}. "
            f"Real tokens per step: {', '.join(map(str, step_tokens(make_config(Path('.'), scenario, args.batch, args.mini, 1), steps)))}. "
            f"Runs (examples/s): {runs}."
        )
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {d}" for d in details)


def memory(args: argparse.Namespace, script: Path) -> str:
    """Peak RSS of one GradCache step against batch size, same mini-batch, bf16 (auto)."""
    print("memory ...", flush=True)
    base = run_worker(script, {"kind": "load", "dtype": "auto"})
    rows, peaks = [], {}
    for batch in args.memory_batches:
        r = run_worker(
            script,
            {"kind": "memory", "dtype": "auto", "scenario": MEMORY_SCENARIO, "batch": batch, "mini": args.mini,
             "steps": 1},
        )  # fmt: skip
        peaks[batch] = r["peak_rss_mb"]
        print(f"  batch {batch}: {r['peak_rss_mb']:.0f} MB, {r['step_s'][0]:.1f} s", flush=True)
        rows.append(
            f"| {batch} | {r['texts']} | {r['mini_batches']} | {r['largest_mini_batch_tokens']} | "
            f"{r['peak_rss_mb']:.0f} | {r['step_s'][0]:.1f} | {r['loss'][0]:.3f} |"
        )
    small, large = min(peaks), sorted(peaks)[1] if len(peaks) > 1 else min(peaks)
    ratio = peaks[large] / peaks[small]
    sc = SCENARIOS[MEMORY_SCENARIO]
    return "\n".join(
        [
            f"### Memory against batch size\n\nOne poolattn GradCache step per fresh process, SNLI triples at "
            f"max_length {sc['max_length']}, mini-batch {args.mini} texts, dtype `auto` ({base['dtype']}); "
            f"model + LoRA alone: {base['peak_rss_mb']:.0f} MB. A mini-batch holds at most {args.mini} texts "
            f"and at most {args.mini} x the step's mean length in padded tokens (`mean_length_budget`).",
            "",
            "| batch | texts | mini-batches | largest mini-batch (padded tokens) | peak RSS (MB) | step (s) | loss |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Batch {large} / batch {small} peak-RSS ratio: **{ratio:.2f}x** (target <= 1.2x: "
            f"{'met' if ratio <= 1.2 else 'missed'}).",
        ]
    )


def agreement(args: argparse.Namespace, script: Path, data_dir: str) -> str:
    """30 steps of the quick recipe from the same seed in bf16 and float32."""
    print("bf16 vs float32 training ...", flush=True)
    designs = [tuple(d.split("+")) for d in args.agree_designs]
    lines = [
        f"### bf16 against float32 training\n\n{args.agree_steps} steps of the configs/quick.toml recipe (its data mix "
        f"and instructions, batch 16, mini-batch 48, max_length 64, LoRA and head lr 1e-3, 5 warm-up steps) "
        f'from seed {SEED}, once with `dtype = "bfloat16"` (the `auto` choice on this CPU) and once with '
        f'`"float32"`; each model is then scored in its own dtype on STSBenchmark dev ({args.agree_pairs} pairs '
        f"at most, cosine Spearman, queries with the STS instruction). Targets: final losses within 3%, "
        f"Spearman within 0.01.",
        "",
        "| design | untrained Spearman (bf16) | loss at step "
        f"{args.agree_steps}: bf16 / fp32 (difference) | largest per-step loss difference | Spearman bf16 / fp32 "
        "(difference) | step (s) bf16 / fp32 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for pooling, attention in designs:
        res = {}
        for dtype in ("bfloat16", "float32"):
            res[dtype] = run_worker(
                script,
                {"kind": "agree", "dtype": dtype, "pooling": pooling, "attention": attention, "data_dir": data_dir,
                 "steps": args.agree_steps, "pairs": args.agree_pairs, "untrained": dtype == "bfloat16"},
            )  # fmt: skip
            print(f"  {pooling}+{attention} {dtype}: loss {res[dtype]['loss'][-1]:.4f}, "
                  f"Spearman {res[dtype]['spearman']:.4f}", flush=True)  # fmt: skip
        b, f = res["bfloat16"], res["float32"]
        loss_diff = abs(b["loss"][-1] - f["loss"][-1]) / f["loss"][-1]
        worst = max(abs(x - y) / y for x, y in zip(b["loss"], f["loss"], strict=True))
        sp = abs(b["spearman"] - f["spearman"])
        lines.append(
            f"| {pooling}+{attention} | {b['untrained_spearman']:.4f} | {b['loss'][-1]:.4f} / {f['loss'][-1]:.4f} "
            f"(**{loss_diff:.1%}**, {'met' if loss_diff <= 0.03 else 'missed'}) | {worst:.1%} | "
            f"{b['spearman']:.4f} / {f['spearman']:.4f} (**{sp:.4f}**, {'met' if sp <= 0.01 else 'missed'}) | "
            f"{median(b['step_s'][1:] or b['step_s']):.2f} / {median(f['step_s'][1:] or f['step_s']):.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
