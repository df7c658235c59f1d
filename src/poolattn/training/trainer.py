"""The trainer: a design from [model], the recipe from [training], run with accelerate.

The same code runs on a CPU, one GPU, or ``accelerate launch`` across GPUs and nodes. Every
process builds the same seeded global batch and embeds its shard; the loss is computed on
the gathered global batch, so every query sees every positive and negative of the step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ..backbone import load_backbone
from ..config import to_dict
from ..model import DEFAULT_INSTRUCTION, EmbeddingModel
from ..model_card import training_recipe
from . import checkpoint as ckpt
from .config import TrainConfig
from .data import BatchSampler, Source, batch_digest, load_sources, shard
from .gradcache import cached_step, make_chunks, plain_step
from .loss import global_info_nce

log = logging.getLogger(__name__)

FINAL_DIR = "final"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/inf; the run stopped before applying that update."""


class OutputExistsError(FileExistsError):
    """The output directory already holds a run and ``resume`` was not requested."""


def build_model(config: TrainConfig) -> EmbeddingModel:
    """The design from [model], seeded, with LoRA (or full fine-tuning) and a trainable head.

    Every design starts from the same point for a seed: the head is initialised from its own
    RNG stream (``head_seed``), and the global RNG is re-seeded right before LoRA is added, so
    the adapter's initial weights (and the dropout stream after them) do not depend on the
    design.
    """
    seed = config.training.seed
    torch.manual_seed(seed)
    backbone, tokenizer = load_backbone(config.model)
    model = EmbeddingModel(backbone, tokenizer, config.model, head_seed=seed)
    torch.manual_seed(seed)  # whatever building the design consumed, LoRA starts identical
    if config.training.full_finetune:
        model.full_finetune = True
        # Trained weights live in float32 (a bf16 weight does not move under a ~1e-5 AdamW step);
        # the forward still runs in model.compute_dtype under autocast.
        model.backbone.float().requires_grad_(True)
    else:
        lora = config.lora
        model.add_lora(r=lora.r, alpha=lora.alpha, dropout=lora.dropout, target_modules=lora.target_modules)
    model.pooler.requires_grad_(True)
    if config.training.gradient_checkpointing:
        model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def parameter_groups(model: EmbeddingModel, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only; the head may use its own learning rate."""
    t = config.training
    head_lr = t.head_learning_rate or t.learning_rate
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((name.startswith("pooler."), param.ndim >= 2), []).append(param)
    return [
        {
            "params": params,
            "lr": head_lr if head else t.learning_rate,
            "weight_decay": t.weight_decay if decay else 0.0,
        }
        for (head, decay), params in sorted(groups.items())
    ]


def _mixed_precision(setting: str) -> str | None:
    if setting != "auto":
        return setting
    import os

    if "ACCELERATE_MIXED_PRECISION" in os.environ:
        return None  # chosen by `accelerate launch` / its config file
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _trainable_state(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def _step_texts(local: list, num_negatives: int) -> tuple[list[str], list[str], list[str | None], int]:
    """Queries, documents (positives then negatives), one instruction per text (None for
    documents, which stay bare), and the number of positives."""
    queries = [e.query for e in local]
    positives = [e.positive for e in local]
    negatives = [n for e in local for n in e.negatives[:num_negatives]]
    docs = positives + negatives
    instructions = [e.instruction or DEFAULT_INSTRUCTION for e in local] + [None] * len(docs)
    return queries, docs, instructions, len(positives)


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines past the checkpoint we resume from (they will be recomputed)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= last_step]
    path.write_text("".join(line + "\n" for line in keep))


def _data_summary(sources: list[Source]) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "location": s.location,
            "examples": len(s.examples),
            "skipped": s.skipped,
            "weight": s.weight,
        }
        for s in sources
    ]


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train the configured design; returns the final model directory (loadable with
    ``EmbeddingModel.load``), or the latest checkpoint's ``model/`` when
    ``training.max_steps_this_run`` stopped the run early.

    Deterministic from ``training.seed``: two runs of the same config see the same batches in
    the same order whatever the design, so designs can be compared on identical data.
    """
    config.validate()
    t = config.training
    out = Path(t.output_dir)
    accelerator = Accelerator(cpu=t.cpu, mixed_precision=_mixed_precision(t.mixed_precision))
    main = accelerator.is_main_process
    existing = ckpt.latest_checkpoint(out)
    if not resume and (existing is not None or (out / FINAL_DIR).exists()):
        raise OutputExistsError(
            f"training.output_dir: {out} already holds a run; pass --resume or use a new directory"
        )

    sources = load_sources(config.data, config.base_dir)
    skipped = sum(s.skipped for s in sources)
    if skipped and main:
        log.warning(
            "skipped %d invalid training records (data.skip_invalid = true); see %s", skipped, out / RUN_FILE
        )
    sampler = BatchSampler(sources, t.batch_size, t.seed)
    model = build_model(config)
    optimizer = torch.optim.AdamW(parameter_groups(model, config), lr=t.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, t.warmup_steps, t.steps)

    start = 0
    state: dict[str, Any] | None = None
    if resume and existing is not None:
        state = ckpt.read_checkpoint(existing)
        missing = set(_trainable_state(model)) - set(state["trainable"])
        if missing:
            raise ValueError(
                f"{existing}: checkpoint lacks trainable weights {sorted(missing)[:3]}...; design changed?"
            )
        model.load_state_dict(state["trainable"], strict=False)
        if state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["data"])
        start = int(state["step"])
        log.info("resuming from %s (step %d)", existing, start)
    elif resume:
        log.warning("--resume: no checkpoint in %s, starting from step 0", out)

    if accelerator.state.deepspeed_plugin is not None:  # no dataloader is prepared: say the micro-batch
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = (
            t.mini_batch_size
        )
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    if state is not None and (existing / "accelerate").is_dir():
        accelerator.load_state(str(existing / "accelerate"))  # DeepSpeed / FSDP sharded optimizer state
    unwrapped: EmbeddingModel = accelerator.unwrap_model(wrapped)
    rank, world = accelerator.process_index, accelerator.num_processes
    if state is not None:
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[rank] if len(rngs) == world else rngs[0])
    scale = float(world) if accelerator.distributed_type != DistributedType.NO else 1.0

    if main:
        out.mkdir(parents=True, exist_ok=True)
        run = {
            "config": config.to_dict(),
            "data": _data_summary(sources),
            "skipped_records": skipped,
            "processes": world,
            "model": unwrapped.describe(),
            "resumed_from_step": start,
        }
        (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
        _truncate_metrics(out / METRICS_FILE, start)

    def loss_fn(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return global_info_nce(q, p, n, t.temperature, t.symmetric)

    def no_sync() -> contextlib.AbstractContextManager:
        return accelerator.no_sync(wrapped)

    stop_at = t.steps if t.max_steps_this_run is None else min(t.steps, start + t.max_steps_this_run)
    bar = tqdm(total=t.steps, initial=start, desc="train", unit="step", disable=not (main and t.progress))
    last_saved = existing if resume else None
    began = time.perf_counter()
    step = start
    while step < stop_at:
        tick = time.perf_counter()
        batch = sampler.next_batch()
        queries, docs, instructions, n_pos = _step_texts(shard(batch, rank, world), config.data.num_negatives)
        # at most mini_batch_size texts and as many padded tokens as that many texts of mean length:
        # the largest mini-batch, hence peak memory, stays flat as the batch grows
        chunks = make_chunks(unwrapped.tokenize, queries + docs, instructions, t.mini_batch_size, "mean")
        args = (wrapped, chunks, len(queries), n_pos, loss_fn, accelerator.backward, scale)
        if t.gradcache:
            loss = cached_step(*args, no_sync, accelerator.device)
        else:
            loss = plain_step(*args)
        grad_norm = float(accelerator.clip_grad_norm_(wrapped.parameters(), t.max_grad_norm))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            bar.close()
            kept = (
                f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was written yet"
            )
            raise TrainingDiverged(
                f"step {step + 1}: loss {loss}, gradient norm {grad_norm} - stopped without applying this update; "
                f"{kept}. Try a lower training.learning_rate or a higher training.temperature."
            )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seconds = time.perf_counter() - tick
        lr = scheduler.get_last_lr()[0]
        record = {
            "step": step,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "examples_per_s": t.batch_size / seconds,
            "step_s": seconds,
            "elapsed_s": time.perf_counter() - began,
            "batch": batch_digest(batch),
        }
        if main:
            with (out / METRICS_FILE).open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", ex_s=f"{record['examples_per_s']:.1f}")
        bar.update(1)
        if step % t.save_every == 0 or step == stop_at:
            last_saved = _save(
                accelerator, unwrapped, optimizer, scheduler, sampler, out, step, t.keep_checkpoints
            )
    bar.close()
    if step < t.steps:
        return Path(last_saved) / "model"
    final = out / FINAL_DIR
    if main:
        recipe = training_recipe(config, _data_summary(sources), processes=world)
        unwrapped.save(final, training=recipe)  # the model card records the recipe
    accelerator.wait_for_everyone()
    return final


def _save(
    accelerator: Accelerator,
    model: EmbeddingModel,
    optimizer,
    scheduler,
    sampler,
    out: Path,
    step: int,
    keep: int,
) -> Path:
    """Write a checkpoint from the main process (RNG states gathered from every process)."""
    rngs = gather_object([ckpt.rng_state()])
    path = out / ckpt.CHECKPOINT_DIR / ckpt.checkpoint_name(step)
    extra_dirs: dict[str, Path] = {}
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        # sharded optimizer state: accelerate's own format (every process writes its shard)
        extra_dirs["accelerate"] = out / ckpt.CHECKPOINT_DIR / f".tmp-accelerate-{step:08d}"
        accelerator.save_state(str(extra_dirs["accelerate"]))
        accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ckpt.write_checkpoint(
            out,
            step,
            model=model,
            trainable=_trainable_state(model),
            optimizer_state=None if extra_dirs else optimizer.state_dict(),
            extra_dirs=extra_dirs,
            scheduler_state=scheduler.state_dict(),
            rng_states=rngs,
            data_state=sampler.state_dict(),
            extra={"design": to_dict(model.config)},
        )
        ckpt.prune_checkpoints(out, keep)
    accelerator.wait_for_everyone()
    return path
