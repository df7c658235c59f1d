"""GPU check at real shape: a random Qwen2-0.5B-shaped model in bf16, the paths the study uses.

Checks (one JSON line each, then a summary; exit 1 when a check fails):
1. attention proof, both modes, with sdpa (and flash-attention 2 when ``flash_attn`` is
   installed, on the bare backbone: poolattn's config accepts sdpa and eager only), at batch 1
   and on padded batches (right and left padding): change only the last real token, the first
   token's state must move under bidirectional attention and stay under causal attention; a
   padded row's states must equal the same text's unpadded states (padding never leaks);
2. one GradCache training step at batch 2048 (mini-batch 64, 128 tokens, LoRA, gradient
   checkpointing, bf16) through ``poolattn.train``: peak GPU memory and time;
3. encode throughput of poolattn's ``encode`` against sentence-transformers' on the same
   model (the exported eos+causal design), and their embeddings' agreement.

    python bench/gpu_check.py                 # on a CUDA machine, < 10 minutes on an H200
    python bench/gpu_check.py --device cpu    # smoke mode: tiny sizes, every line runs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "rehearsal"))

from build_cache import QWEN2_05B  # noqa: E402

# the smoke mode's sizes: every code path of the GPU run, at a size two CPUs finish in seconds
TINY_SHAPE = dict(
    QWEN2_05B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
)
SIZES = {
    "cuda": {
        "shape": QWEN2_05B,
        "batch": 2048,
        "mini": 64,
        "tokens": 128,
        "encode_texts": 4096,
        "encode_batch": 128,
    },
    "cpu": {
        "shape": TINY_SHAPE,
        "batch": 16,
        "mini": 4,
        "tokens": 32,
        "encode_texts": 64,
        "encode_batch": 16,
    },
}


def report(results: list[dict[str, Any]], **entry: Any) -> None:
    """Print one check's result as a JSON line and keep it for the summary."""
    results.append(entry)
    print(json.dumps(entry), flush=True)


def save_model(directory: Path, shape: dict[str, Any]) -> Path:
    """The random Qwen2 model (bf16) with the default model's tokenizer, as a local directory."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from poolattn.backbone import resolve_source

    tokenizer = AutoTokenizer.from_pretrained(resolve_source("smollm2-135m"))
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **shape,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens only (as poolattn's tokenizer gives them)."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def first_token_delta(backbone: Any, ids: torch.Tensor, mask: torch.Tensor, row: int) -> float:
    """How far the first real token's state of ``row`` moves when its last real token changes."""
    vocab = backbone.config.vocab_size
    changed = ids.clone()
    real = mask[row].nonzero().flatten()
    last = int(real[-1])
    changed[row, last] = (changed[row, last] + 1) % vocab
    first = int(real[0])
    with torch.inference_mode():
        pos = positions(mask)
        a = (
            backbone(input_ids=ids, attention_mask=mask, position_ids=pos)
            .last_hidden_state[row, first]
            .float()
        )
        b = (
            backbone(input_ids=changed, attention_mask=mask, position_ids=pos)
            .last_hidden_state[row, first]
            .float()
        )
    return float((a - b).abs().max())


def padded_batch(lengths: list[int], vocab: int, side: str, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids of the given lengths padded to the longest, and their attention mask."""
    gen = torch.Generator().manual_seed(1)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        cols = slice(0, n) if side == "right" else slice(width - n, width)
        ids[i, cols] = torch.randint(3, vocab - 1, (n,), generator=gen)
        mask[i, cols] = 1
    return ids.to(device), mask.to(device)


def attention_checks(model_dir: Path, device: str, results: list[dict[str, Any]]) -> None:
    """Check 1 for every implementation at hand, both modes, batch 1 and padded batches."""
    import importlib.util

    from transformers import AutoModel

    from poolattn.backbone import set_attention_mode

    impls = ["sdpa"] + (
        ["flash_attention_2"] if device == "cuda" and importlib.util.find_spec("flash_attn") else []
    )
    for impl in impls:
        for mode in ("causal", "bidirectional"):
            backbone = AutoModel.from_pretrained(
                model_dir, dtype=torch.bfloat16, attn_implementation=impl
            ).to(device)
            set_attention_mode(backbone, mode)
            backbone.eval()
            vocab = backbone.config.vocab_size
            cases = {
                "batch1": ([12], "right"),
                "padded-right": ([12, 7, 3], "right"),
                "padded-left": ([12, 7, 3], "left"),
            }
            for case, (lengths, side) in cases.items():
                ids, mask = padded_batch(lengths, vocab, side, device)
                deltas = [first_token_delta(backbone, ids, mask, i) for i in range(len(lengths))]
                moved = [d > 1e-3 for d in deltas]
                ok = all(moved) if mode == "bidirectional" else not any(moved)
                leak = 0.0
                if len(lengths) > 1:  # the shorter rows alone, unpadded: same states?
                    with torch.inference_mode():
                        batch = backbone(
                            input_ids=ids, attention_mask=mask, position_ids=positions(mask)
                        ).last_hidden_state.float()
                        for i in range(1, len(lengths)):
                            keep = mask[i].bool()
                            alone = backbone(input_ids=ids[i : i + 1, keep]).last_hidden_state[0].float()
                            leak = max(leak, float((batch[i, keep] - alone).abs().max() / alone.abs().max()))
                    ok = ok and leak < 5e-2  # bf16 kernels differ with shape; a leak moves states by O(1)
                report(results, check="attention", impl=impl, mode=mode, case=case, ok=ok,
                       first_token_deltas=[round(d, 5) for d in deltas], padding_rel_diff=round(leak, 5))  # fmt: skip
            del backbone
            if device == "cuda":
                torch.cuda.empty_cache()


def gradcache_check(
    model_dir: Path, work: Path, size: dict[str, Any], device: str, results: list[dict[str, Any]]
) -> None:
    """Check 2: one GradCache step through ``poolattn.train`` at the paper's batch."""
    from poolattn.training.config import train_config_from_dict
    from poolattn.training.trainer import train

    words = "red blue green cat dog car tree river city song book rain sun moon stone bird".split()
    data = work / "triples.jsonl"
    with data.open("w") as fh:
        for i in range(size["batch"] + 8):
            text = " ".join(words[(i * k) % len(words)] for k in range(1, size["tokens"] // 2))
            fh.write(
                json.dumps({"query": f"q{i} {text}", "positive": f"p{i} {text}", "negative": f"n{i} {text}"})
                + "\n"
            )
    config = train_config_from_dict(
        {
            "model": {
                "base": str(model_dir),
                "pooling": "eos",
                "attention": "bidirectional",
                "max_length": size["tokens"],
                "dtype": "bfloat16",
            },  # fmt: skip
            "data": {"train": [str(data)], "num_negatives": 1},
            "training": {
                "steps": 1,
                "batch_size": size["batch"],
                "mini_batch_size": size["mini"],
                "warmup_steps": 0,
                "gradient_checkpointing": True,
                "mixed_precision": "bf16",
                "output_dir": str(work / "train"),
                "save_every": 1000,
                "progress": False,
                "cpu": device == "cpu",
            },  # fmt: skip
        }
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tick = time.monotonic()
    train(config)
    seconds = time.monotonic() - tick
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    metrics = [
        json.loads(line)
        for line in (work / "train" / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    loss = metrics[-1].get("loss") if metrics else None
    ok = loss is not None and loss == loss and abs(loss) != float("inf")
    report(results, check="gradcache_step", ok=ok, batch=size["batch"], mini_batch=size["mini"], tokens=size["tokens"],
           loss=loss, seconds_incl_load=round(seconds, 1), peak_gib=None if peak is None else round(peak, 2))  # fmt: skip


def encode_check(
    model_dir: Path, work: Path, size: dict[str, Any], device: str, results: list[dict[str, Any]]
) -> None:
    """Check 3: poolattn encode vs sentence-transformers on the exported eos+causal design."""
    from sentence_transformers import SentenceTransformer

    from poolattn.export import export_sentence_transformers
    from poolattn.model import EmbeddingModel

    model = EmbeddingModel.from_pretrained(
        str(model_dir), "causal", "eos", max_length=size["tokens"], dtype="bfloat16"
    )
    model.to(device)
    export_sentence_transformers(model, work / "st")
    texts = [
        f"text number {i}" + " word" * (4 + i % (size["tokens"] // 2)) for i in range(size["encode_texts"])
    ]

    def timed(fn: Any) -> tuple[Any, float]:
        fn(texts[: size["encode_batch"]])  # warm-up: kernels, allocator
        if device == "cuda":
            torch.cuda.synchronize()
        tick = time.monotonic()
        out = fn(texts)
        if device == "cuda":
            torch.cuda.synchronize()
        return out, time.monotonic() - tick

    ours, t_ours = timed(lambda x: model.encode(x, batch_size=size["encode_batch"]))
    st = SentenceTransformer(str(work / "st"), device=device, trust_remote_code=True)
    theirs, t_st = timed(lambda x: st.encode(x, batch_size=size["encode_batch"], normalize_embeddings=True))
    cos = float(torch.nn.functional.cosine_similarity(torch.as_tensor(ours), torch.as_tensor(theirs)).min())
    report(results, check="encode", ok=cos > 0.99, texts=len(texts), poolattn_texts_per_s=round(len(texts) / t_ours, 1),
           st_texts_per_s=round(len(texts) / t_st, 1), min_cosine=round(cos, 5))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--only", choices=("attention", "gradcache", "encode"), help="run one check")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here (use --device cpu for the smoke mode)", file=sys.stderr)
        return 2
    size = SIZES[args.device]
    results: list[dict[str, Any]] = []
    tick = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        model_dir = save_model(work / "model", size["shape"])
        if args.only in (None, "attention"):
            attention_checks(model_dir, args.device, results)
        if args.only in (None, "gradcache"):
            gradcache_check(model_dir, work, size, args.device, results)
        if args.only in (None, "encode"):
            encode_check(model_dir, work, size, args.device, results)
    failed = [r for r in results if not r["ok"]]
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(json.dumps({"summary": True, "device": device, "checks": len(results), "failed": len(failed),
                      "seconds": round(time.monotonic() - tick, 1)}))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
