"""The trainer: a design from [model], the recipe from [training], run with accelerate.

The same code runs on a CPU, one GPU, or ``accelerate launch`` across GPUs and nodes. Every
process builds the same seeded global batch and embeds its shard; the loss is computed on
the gathered global batch, so every query sees every positive and negative of the step.

With ``training.head_warmup_steps`` = W on a design with a trainable head, steps 1..W train
the head alone on cached backbone states (``head_warmup``), and steps W+1..W+``steps`` are the
recipe's joint steps; step numbers in metrics and checkpoints count both phases.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ..backbone import load_backbone
from ..config import DEFAULT_INSTRUCTION, ConfigError, to_dict
from ..io import write_json_atomic, write_text_atomic
from ..model import EmbeddingModel
from . import checkpoint as ckpt
from .config import TRAIN_RUN_FILE, TrainConfig, TrainingConfig
from .data import BatchSampler, Example, Source, batch_digest, load_sources, shard
from .gradcache import Backprop, ContrastiveBatch, LossFn, cached_step, make_chunks, plain_step
from .head_warmup import HeadWarmup, average_gradients, make_head_warmup
from .heartbeat import step_progress
from .loss import global_info_nce
from .recipe import training_recipe

log = logging.getLogger(__name__)

FINAL_DIR = "final"
METRICS_FILE = "metrics.jsonl"


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
    full = config.training.full_finetune
    model = EmbeddingModel(backbone, tokenizer, config.model, head_seed=seed, full_finetune=full)
    torch.manual_seed(seed)  # whatever building the design consumed, LoRA starts identical
    if full:
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
    if "ACCELERATE_MIXED_PRECISION" in os.environ:
        return None  # chosen by `accelerate launch` / its config file
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _trainable_state(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def _step_texts(
    local: list[Example], num_negatives: int
) -> tuple[list[str], list[str], list[str | None], int]:
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
    write_text_atomic(path, "".join(line + "\n" for line in keep))


def _data_summary(sources: list[Source]) -> list[dict[str, Any]]:
    return [
        dict(name=s.name, location=s.location, examples=len(s.examples), skipped=s.skipped, weight=s.weight)
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
    run = _set_up(config, resume)
    state = _restore(run) if resume else None
    _prepare(run, state)
    if run.warmup is not None and run.start:  # resumed mid-warm-up: its sampler and cache as they were
        run.warmup.prime(run.start, functools.partial(_contrastive_batch, run))
    _start_logs(run)
    t = config.training
    total = run.total_steps
    stop_at = total if t.max_steps_this_run is None else min(total, run.start + t.max_steps_this_run)
    bar = step_progress(total, run.start, "train", bar=t.progress, enabled=run.accelerator.is_main_process)
    began = time.perf_counter()
    step = run.start
    with contextlib.closing(bar):
        while step < stop_at:
            step += 1
            record = _one_step(run, step, began)
            _log_step(run, record, bar)
            if step % t.save_every == 0 or step == stop_at:
                run.last_saved = _checkpoint(run, step)
            if step == run.head_warmup_steps:
                run.warmup = None  # the joint phase needs neither its cache nor its optimizer
    return _finish(run, step)


@dataclass
class _Run:
    """One training run's parts, built by ``_set_up`` and completed by ``_prepare``."""

    config: TrainConfig
    out: Path
    accelerator: Accelerator
    sources: list[Source]
    sampler: BatchSampler
    model: EmbeddingModel  # unwrapped: tokenize, save, describe
    optimizer: Any
    scheduler: Any
    existing: Path | None  # the latest checkpoint found in ``out``
    wrapped: Any = None  # the model as accelerate prepared it: forward and backward go through it
    backprop: Backprop = field(default_factory=Backprop)
    start: int = 0  # steps already done (a resumed run)
    last_saved: Path | None = None
    head_warmup_steps: int = 0  # effective: 0 for a design without a trainable head
    warmup: HeadWarmup | None = None  # the head warm-up, while some of it remains

    @property
    def total_steps(self) -> int:
        return self.head_warmup_steps + self.config.training.steps

    def warming_up(self, step: int) -> bool:
        """Whether (1-based) ``step`` belongs to the head warm-up."""
        return self.warmup is not None and step <= self.head_warmup_steps

    @property
    def loss_fn(self) -> LossFn:
        t = self.config.training
        return functools.partial(global_info_nce, temperature=t.temperature, symmetric=t.symmetric)


def _set_up(config: TrainConfig, resume: bool) -> _Run:
    """Accelerator, data, seeded model, optimizer and schedule; refuses to overwrite a run."""
    t = config.training
    out = Path(t.output_dir)
    accelerator = Accelerator(cpu=t.cpu, mixed_precision=_mixed_precision(t.mixed_precision))
    existing = ckpt.latest_checkpoint(out)
    if not resume and (existing is not None or (out / FINAL_DIR).exists()):
        raise OutputExistsError(
            f"training.output_dir: {out} already holds a run; pass --resume or use a new directory"
        )
    sources = load_sources(config.data, config.base_dir)
    skipped = sum(s.skipped for s in sources)
    if skipped and accelerator.is_main_process:
        log.warning(
            "skipped %d invalid training records (data.skip_invalid = true); see %s",
            skipped,
            out / TRAIN_RUN_FILE,
        )
    sampler = BatchSampler(sources, t.batch_size, t.seed)
    model = build_model(config)
    optimizer = torch.optim.AdamW(parameter_groups(model, config), lr=t.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, t.warmup_steps, t.steps)
    run = _Run(config, out, accelerator, sources, sampler, model, optimizer, scheduler, existing)
    # its own sampler with the training seed: the joint phase's data order stays that of a run without it
    warm_sampler = BatchSampler(sources, t.batch_size, t.seed) if t.head_warmup_steps else sampler
    run.warmup = make_head_warmup(model, t.head_warmup_steps, warm_sampler, parameter_groups(model, config))
    if run.warmup is not None:
        if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
            raise ConfigError(
                "training.head_warmup_steps: not supported under DeepSpeed or FSDP (sharded head "
                "parameters); set it to 0 or train with plain data parallelism"
            )
        run.head_warmup_steps = run.warmup.steps
    return run


def _restore(run: _Run) -> dict[str, Any] | None:
    """Load the latest checkpoint's weights, optimizer, schedule and data position (before
    accelerate wraps anything); returns its state, None when there is none to resume."""
    run.last_saved = run.existing
    if run.existing is None:
        log.warning("--resume: no checkpoint in %s, starting from step 0", run.out)
        return None
    state = ckpt.read_checkpoint(run.existing)
    missing = set(_trainable_state(run.model)) - set(state["trainable"])
    if missing:
        raise ValueError(
            f"{run.existing}: checkpoint lacks trainable weights {sorted(missing)[:3]}...; design changed?"
        )
    saved_warmup = int(state.get("head_warmup_steps", 0))
    if saved_warmup != run.head_warmup_steps:
        raise ConfigError(
            f"training.head_warmup_steps: {run.existing} was trained with {saved_warmup} head warm-up "
            f"steps, this config asks for {run.head_warmup_steps}; resume with the same value"
        )
    run.model.load_state_dict(state["trainable"], strict=False)
    if state["optimizer"] is not None:
        run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.sampler.load_state_dict(state["data"])
    run.start = int(state["step"])
    if run.warmup is not None and run.start >= run.warmup.steps:
        run.warmup = None  # the warm-up is over: the joint phase needs none of it
    elif run.warmup is not None:
        run.warmup.optimizer.load_state_dict(state[ckpt.HEAD_WARMUP_OPTIMIZER])
    log.info("resuming from %s (step %d)", run.existing, run.start)
    return state


def _prepare(run: _Run, state: dict[str, Any] | None) -> None:
    """Wrap model and optimizer with accelerate, then restore what only exists after wrapping
    (sharded optimizer state, this process's RNG states); sets how steps back-propagate."""
    accelerator, t = run.accelerator, run.config.training
    if accelerator.state.deepspeed_plugin is not None:  # no dataloader is prepared: say the micro-batch
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = (
            t.mini_batch_size
        )
    run.wrapped, run.optimizer = accelerator.prepare(run.model, run.optimizer)
    if state is not None and (run.existing / "accelerate").is_dir():
        accelerator.load_state(str(run.existing / "accelerate"))  # DeepSpeed / FSDP sharded optimizer state
    run.model = accelerator.unwrap_model(run.wrapped)
    rank, world = accelerator.process_index, accelerator.num_processes
    if state is not None:
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[rank] if len(rngs) == world else rngs[0])
    distributed = accelerator.distributed_type != DistributedType.NO
    scale = float(world) if distributed else 1.0
    no_sync = functools.partial(accelerator.no_sync, run.wrapped)
    run.backprop = Backprop(accelerator.backward, scale, no_sync, accelerator.device)
    if run.warmup is not None:  # the head runs outside the wrapper: plain backward, gradients averaged here
        run.warmup.backprop = Backprop(scale=scale, device=accelerator.device)
        run.warmup.sync = average_gradients if distributed and world > 1 else None


def _start_logs(run: _Run) -> None:
    """Main process: write the run file and drop metric lines past the resumed step."""
    if not run.accelerator.is_main_process:
        return
    run.out.mkdir(parents=True, exist_ok=True)
    info = {
        "config": run.config.to_dict(),
        "data": _data_summary(run.sources),
        "skipped_records": sum(s.skipped for s in run.sources),
        "processes": run.accelerator.num_processes,
        "model": run.model.describe(),
        "head_warmup_steps": run.head_warmup_steps,
        "total_steps": run.total_steps,
        "resumed_from_step": run.start,
    }
    write_json_atomic(run.out / TRAIN_RUN_FILE, info)
    _truncate_metrics(run.out / METRICS_FILE, run.start)


def _contrastive_batch(run: _Run, batch: list[Example]) -> ContrastiveBatch:
    """This process's shard of a global batch, tokenized into GradCache mini-batches."""
    accelerator, t = run.accelerator, run.config.training
    local = shard(batch, accelerator.process_index, accelerator.num_processes)
    queries, docs, instructions, n_pos = _step_texts(local, run.config.data.num_negatives)
    # at most mini_batch_size texts and as many padded tokens as that many texts of mean length:
    # the largest mini-batch, hence peak memory, stays flat as the batch grows
    chunks = make_chunks(run.model.tokenize, queries + docs, instructions, t.mini_batch_size, "mean")
    return ContrastiveBatch(chunks, len(queries), n_pos)


def _step_fn(t: TrainingConfig, texts: ContrastiveBatch) -> Callable[..., float]:
    """GradCache when the step's texts outnumber ``mini_batch_size``; else the plain step.

    Within one mini-batch's worth of texts, the length groups (``make_chunks``) together hold
    about the tokens of one full mini-batch, so keeping all their graphs costs about the
    memory GradCache promises, and it saves the replayed forward of every group but the
    last: the same gradient (the same dropout masks, drawn in the same order) for one forward
    less. Measured on the demo's recipe: bench/train_step.py (BENCHMARKS.md, issue 25).
    """
    return cached_step if t.gradcache and len(texts.chunks) > t.mini_batch_size else plain_step


def _one_step(run: _Run, step: int, began: float) -> dict[str, Any]:
    """Optimisation step ``step`` (1-based): forward/backward, clip, check, apply; returns its
    metrics record. A non-finite loss or gradient raises ``TrainingDiverged`` unapplied.
    A head warm-up step trains the head alone on cached backbone states (its own sampler and
    optimizer; the recipe's schedule does not move)."""
    t = run.config.training
    tick = time.perf_counter()
    warmup = run.warmup if run.warming_up(step) else None
    if warmup is not None:
        batch = warmup.sampler.next_batch()
        texts = _contrastive_batch(run, batch)
        loss = _step_fn(t, texts)(warmup.cache, texts, run.loss_fn, warmup.backprop)
        grad_norm = warmup.clip(t.max_grad_norm)
        optimizer = warmup.optimizer
    else:
        batch = run.sampler.next_batch()
        texts = _contrastive_batch(run, batch)
        loss = _step_fn(t, texts)(run.wrapped, texts, run.loss_fn, run.backprop)
        grad_norm = float(run.accelerator.clip_grad_norm_(run.wrapped.parameters(), t.max_grad_norm))
        optimizer = run.optimizer
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        kept = (
            f"the last good checkpoint is {run.last_saved}"
            if run.last_saved
            else "no checkpoint was written yet"
        )
        raise TrainingDiverged(
            f"step {step}: loss {loss}, gradient norm {grad_norm} - stopped without applying this update; "
            f"{kept}. Try a lower training.learning_rate or a higher training.temperature."
        )
    optimizer.step()
    if warmup is None:
        run.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - tick
    return {
        "step": step,
        "phase": "joint" if warmup is None else "head_warmup",
        "loss": loss,
        "lr": run.scheduler.get_last_lr()[0] if warmup is None else warmup.lr,
        "grad_norm": grad_norm,
        "examples_per_s": t.batch_size / seconds,
        "step_s": seconds,
        "elapsed_s": time.perf_counter() - began,
        "batch": batch_digest(batch),
    }


def _log_step(run: _Run, record: dict[str, Any], bar: tqdm) -> None:
    """Append the step's metrics (main process) and advance the progress bar."""
    if run.accelerator.is_main_process:
        with (run.out / METRICS_FILE).open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    bar.set_postfix(
        loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", ex_s=f"{record['examples_per_s']:.1f}"
    )
    bar.update(1)


def _checkpoint(run: _Run, step: int) -> Path:
    """Write a checkpoint from the main process (RNG states gathered from every process)."""
    accelerator, out = run.accelerator, run.out
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
            model=run.model,
            trainable=_trainable_state(run.model),
            optimizer_state=None if extra_dirs else run.optimizer.state_dict(),
            extra_dirs=extra_dirs,
            head_warmup_optimizer_state=run.warmup.optimizer.state_dict()
            if run.warming_up(step + 1)
            else None,
            scheduler_state=run.scheduler.state_dict(),
            rng_states=rngs,
            data_state=run.sampler.state_dict(),
            extra={"design": to_dict(run.model.config), "head_warmup_steps": run.head_warmup_steps},
        )
        ckpt.prune_checkpoints(out, run.config.training.keep_checkpoints)
    accelerator.wait_for_everyone()
    return path


def _finish(run: _Run, step: int) -> Path:
    """The run's result: the final model directory with its model card once every step is
    done, else the latest checkpoint's model (a run stopped by ``max_steps_this_run``)."""
    if step < run.total_steps:
        return Path(run.last_saved) / "model"
    final = run.out / FINAL_DIR
    if run.accelerator.is_main_process:
        recipe = training_recipe(
            run.config, _data_summary(run.sources), processes=run.accelerator.num_processes
        )
        run.model.save(final, training=recipe)  # the model card records the recipe
    run.accelerator.wait_for_everyone()
    return final
