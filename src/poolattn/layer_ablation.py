"""Layer ablation of a multilayer pooling head: which layers does it really need?

For a trained ``multilayer`` model, a few small local tasks (down-sampled as ``poolattn eval
--max-items``; STSBenchmark on its dev split, so the test pairs stay untouched) are scored with
the full key set, each layer removed, each contiguous block removed and each layer alone. A
removed layer is masked in the head's cross-attention, nothing is retrained, and the backbone
runs once per text (``LayerVectorCache``). A layer's *importance* is the full-set score minus
the score without it (scores: the mean of the tasks' main scores; positive = needed).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .backends.fingerprint import derived_fingerprint
from .io import write_json_atomic

if TYPE_CHECKING:
    from .evaluation.local import LocalTask
    from .model import EmbeddingModel

log = logging.getLogger(__name__)

DEFAULT_TASKS = ("STSBenchmark", "TREC", "SciFact")
DEFAULT_MAX_ITEMS = 100
DEFAULT_BLOCKS = 4
DEV_SPLITS = {"STSBenchmark": "dev"}  # local datasets whose dev split the ablation reads
JSON_FILE = "layer_ablation.json"
PNG_FILE = "layer_ablation.png"


@dataclass(frozen=True)
class Condition:
    """One cell of the grid: which layers (1-based) stay in the head's key set."""

    name: str
    kind: str  # "all" | "removed" | "block_removed" | "only"
    kept: tuple[int, ...]


def contiguous_blocks(num_layers: int, blocks: int) -> list[tuple[int, ...]]:
    """``blocks`` contiguous groups of 1-based layers, sizes differing by at most one."""
    count = max(1, min(blocks, num_layers))
    return [tuple(int(i) + 1 for i in part) for part in np.array_split(np.arange(num_layers), count)]


def conditions(num_layers: int, blocks: int = DEFAULT_BLOCKS) -> list[Condition]:
    """The grid: all layers, each layer removed, each block removed, each layer alone."""
    layers = tuple(range(1, num_layers + 1))
    grid = [Condition("all", "all", layers)]
    grid += [Condition(f"without {i}", "removed", tuple(j for j in layers if j != i)) for i in layers]
    for block in contiguous_blocks(num_layers, blocks):
        # a one-layer block is a single removal already; removing every layer leaves no keys
        if 1 < len(block) < num_layers:
            kept = tuple(j for j in layers if j not in block)
            grid.append(Condition(f"without {block[0]}-{block[-1]}", "block_removed", kept))
    grid += [Condition(f"only {i}", "only", (i,)) for i in layers]
    return grid


def layer_mask(kept: Sequence[int], num_layers: int) -> torch.Tensor:
    """A boolean key mask over the L layer vectors (True = kept); an empty or bad set is an error."""
    if not kept:
        raise ValueError("layer ablation: keep at least one layer (an empty key set has no attention)")
    bad = [i for i in kept if not 1 <= i <= num_layers]
    if bad:
        raise ValueError(f"layer ablation: layers {bad} are outside 1..{num_layers}")
    mask = torch.zeros(num_layers, dtype=torch.bool)
    mask[[i - 1 for i in kept]] = True
    return mask


CacheKey = tuple[bool, str | None, str]  # (query?, instruction of a query, text)


class LayerVectorCache:
    """Per-layer vectors (L x D, float32) of every text a task encodes, from one backbone pass,
    keyed with evaluation's prompt rule (queries get their task's instruction, documents stay
    bare). ``backbone_texts`` counts the texts that went through the backbone."""

    def __init__(self, model: EmbeddingModel, batch_size: int = 32) -> None:
        from .pooling import MultiLayerPooler

        if not isinstance(model.pooler, MultiLayerPooler):
            raise ValueError(
                f"layer ablation needs a multilayer pooling head; this model pools with "
                f"{model.config.pooling!r} ({model.config.name})"
            )
        self.model = model
        self.batch_size = batch_size
        self.vectors_by_key: dict[CacheKey, torch.Tensor] = {}
        self.backbone_texts = 0

    @property
    def num_layers(self) -> int:
        return int(self.model.pooler.num_layers)

    def keys(self, texts: Sequence[str], *, query: bool, instruction: str | None) -> list[CacheKey]:
        """The cache keys of ``texts`` in order; new texts run through the backbone once, in the
        batches ``EmbeddingModel.encode`` builds."""
        instruction = instruction if query else None
        keys = [(query, instruction, t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.vectors_by_key))
        if not missing:
            return keys
        model, prompt_type = self.model, "query" if query else "document"
        with model.inference():  # empty corpus documents are kept, as in evaluation
            texts = [k[2] for k in missing]
            for rows, batch in model.input_batches(texts, prompt_type, instruction, self.batch_size, True):
                vectors = model.forward(batch, pool=model.pooler.layer_vectors).cpu()
                self.vectors_by_key.update(zip([missing[i] for i in rows], vectors, strict=True))
                self.backbone_texts += len(rows)
        return keys

    @torch.inference_mode()
    def pool(self, vectors: torch.Tensor, kept: Sequence[int], batch_size: int = 256) -> torch.Tensor:
        """Head outputs (N x D, float32) of cached vectors with only the ``kept`` layers as keys."""
        pooler = self.model.pooler
        mask = layer_mask(kept, self.num_layers).to(self.model.device)
        out = [
            pooler.pool_vectors(vectors[i : i + batch_size].to(self.model.device), mask).float().cpu()
            for i in range(0, len(vectors), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros((0, self.model.embedding_dim))


class LayerSubsetBackend:
    """A backend for one condition: the head restricted to ``kept`` layers, fed from the cache.
    Every cached text is pooled in one pass (a grid of small per-task torch calls is slow on CPU)."""

    uses_instructions = True

    def __init__(self, cache: LayerVectorCache, kept: Sequence[int], fingerprint: str) -> None:
        self.cache = cache
        self.kept = tuple(kept)
        self.name = f"poolattn/{cache.model.config.name}/layers"
        self._fingerprint = derived_fingerprint(json.dumps([fingerprint, self.kept]))
        self._pooled: dict[CacheKey, np.ndarray] = {}

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "poolattn-layer-ablation",
            "design": self.cache.model.config.name,
            "embedding_dim": self.cache.model.embedding_dim,
            "layers_kept": list(self.kept),
        }

    def encode(
        self, texts: list[str], *, query: bool, instruction: str | None, batch_size: int
    ) -> np.ndarray:
        keys = self.cache.keys(texts, query=query, instruction=instruction)
        new = [k for k in self.cache.vectors_by_key if k not in self._pooled]
        if new:
            vectors = torch.stack([self.cache.vectors_by_key[k] for k in new])
            pooled = torch.nn.functional.normalize(self.cache.pool(vectors, self.kept), dim=-1)
            self._pooled.update(zip(new, pooled.numpy().astype(np.float32, copy=False), strict=True))
        if not keys:
            return np.zeros((0, self.cache.model.embedding_dim), dtype=np.float32)
        return np.stack([self._pooled[k] for k in keys])


def ablation_tasks(
    local_data: str | Path | None = None,
    tasks: Sequence[str] = DEFAULT_TASKS,
    max_items: int | None = DEFAULT_MAX_ITEMS,
) -> list[LocalTask]:
    """The local tasks, down-sampled as in evaluation, each read on its ``DEV_SPLITS`` split where
    the dataset has its files, else test."""
    from .evaluation.local import FOLDERS, build_task, discover, task_names
    from .settings import data_dir

    root = data_dir(local_data)
    found = discover(root)
    out: list[LocalTask] = []
    for name in tasks:
        datasets = [d for d in found if name in task_names(d)]
        if not datasets:
            raise FileNotFoundError(
                f"layer ablation: no local dataset {name!r} under {root} ({', '.join(FOLDERS)})"
            )
        for dataset in datasets:
            split = DEV_SPLITS.get(dataset.name, "test")
            out.append(build_task(dataset, max_items, split if dataset.has_split(split) else "test"))
    return out


@contextmanager
def main_scores_only(tasks: Sequence[LocalTask]) -> Iterator[None]:
    """Skip mteb's retrieval abstention nAUCs (about a hundred sklearn AUCs per evaluation, 70% of
    an ablation grid at ``--max-items 4``): extra metrics, never an input of nDCG or MAP, so main
    scores are unchanged. With an nAUC main score nothing is skipped."""
    from mteb._evaluators import retrieval_metrics

    original = retrieval_metrics.evaluate_abstention
    if not any(str(item.task.metadata.main_score).startswith("nAUC") for item in tasks):
        retrieval_metrics.evaluate_abstention = lambda results, metric_scores: {}
    try:
        yield
    finally:
        retrieval_metrics.evaluate_abstention = original


def score_condition(
    cache: LayerVectorCache,
    kept: Sequence[int],
    tasks: Sequence[LocalTask],
    fingerprint: str,
    batch_size: int = 32,
) -> dict[str, float]:
    """Main score per task (and their ``mean``) with only the ``kept`` layers as keys, from the
    real mteb evaluators (no result cache)."""
    from sklearn.exceptions import UndefinedMetricWarning

    from .eval_results import task_main_score
    from .evaluation.encoder import MTEBEncoder
    from .evaluation.runner import run_mteb_task

    encoder = MTEBEncoder(LayerSubsetBackend(cache, kept, fingerprint), cache_dir=None, batch_size=batch_size)
    scores: dict[str, float] = {}
    try:
        with main_scores_only(tasks), warnings.catch_warnings():
            # an ablated head may never predict some class: not worth 65 warnings
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            for item in tasks:
                task_json = run_mteb_task(encoder, item.task, batch_size)
                scores[item.name] = task_main_score(task_json, item.task.metadata.eval_splits)
    finally:
        encoder.cache.close()
    scores["mean"] = float(np.mean([scores[item.name] for item in tasks]))
    return scores


@torch.inference_mode()
def attention_mass(cache: LayerVectorCache, batch_size: int = 256) -> list[float]:
    """Mean attention probability of the head's latents on each layer over every cached text
    (heads and latents averaged; sums to 1 over layers)."""
    attend = cache.model.pooler.attend
    vectors = torch.stack(list(cache.vectors_by_key.values()))
    total = torch.zeros(cache.num_layers)
    attend.record_attention = True
    try:
        for start in range(0, len(vectors), batch_size):
            cache.pool(vectors[start : start + batch_size], range(1, cache.num_layers + 1), batch_size)
            total += attend.last_attention.float().mean(dim=(1, 2)).sum(dim=0).cpu()
    finally:
        attend.record_attention = False
        attend.last_attention = None
    return (total / len(vectors)).tolist()


def layer_ablation(
    model: EmbeddingModel,
    output_dir: str | Path | None = None,
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    local_data: str | Path | None = None,
    max_items: int | None = DEFAULT_MAX_ITEMS,
    blocks: int = DEFAULT_BLOCKS,
    batch_size: int = 32,
    cache: LayerVectorCache | None = None,
) -> dict[str, Any]:
    """Run the ablation grid on a multilayer model; write ``layer_ablation.json`` and
    ``layer_ablation.png`` into ``output_dir`` (when given) and return the JSON content. A
    ``cache`` passed in is reused: the backbone runs only for texts it has not seen."""
    started = time.monotonic()
    cache = cache or LayerVectorCache(model, batch_size)
    items = ablation_tasks(local_data, tasks, max_items)
    fingerprint = model.fingerprint()
    grid = conditions(cache.num_layers, blocks)
    scores: dict[str, dict[str, float]] = {}
    by_kept: dict[tuple[int, ...], dict[str, float]] = {}  # with 2 layers, "without 1" is "only 2"
    for index, condition in enumerate(grid):
        if condition.kept not in by_kept:
            by_kept[condition.kept] = score_condition(cache, condition.kept, items, fingerprint, batch_size)
        scores[condition.name] = by_kept[condition.kept]
        mean = scores[condition.name]["mean"]
        log.info("layer ablation %d/%d %s: %.4f", index + 1, len(grid), condition.name, mean)
    full, mass, layers = scores["all"]["mean"], attention_mass(cache), range(1, cache.num_layers + 1)
    result = {
        "model": {"design": model.config.name, "base": model.config.base, "fingerprint": fingerprint},
        "layers": cache.num_layers,
        "layer_vector": model.pooler.layer_vector,
        "tasks": [
            {
                "name": item.name,
                "dataset": item.dataset,
                "split": item.split,
                "source": item.path,
                "files": item.files,
                "family": item.family,
                "main_score_name": str(item.task.metadata.main_score),
                "sampling": item.sampling,
            }
            for item in items
        ],
        "score": "mean over tasks of each task's main score",
        "all": scores["all"],
        "per_layer": [  # importance: the full score minus the score without the layer
            {
                "layer": i,
                "attention_mass": mass[i - 1],
                "removed": scores[f"without {i}"],
                "only": scores[f"only {i}"],
                "importance": full - scores[f"without {i}"]["mean"],
            }
            for i in layers
        ],
        "blocks": [
            {
                "layers": [j for j in layers if j not in c.kept],
                "removed": scores[c.name],
                "importance": full - scores[c.name]["mean"],
            }
            for c in grid
            if c.kind == "block_removed"
        ],
        "conditions": [
            {"name": c.name, "kind": c.kind, "kept": list(c.kept), "scores": scores[c.name]} for c in grid
        ],
        "backbone_texts": cache.backbone_texts,
        "seconds": round(time.monotonic() - started, 1),
    }
    if output_dir is not None:
        out = Path(output_dir)
        write_json_atomic(out / JSON_FILE, result)
        plot_layer_ablation(result, out / PNG_FILE)
    return result


def plot_layer_ablation(result: dict[str, Any], path: str | Path) -> Path:
    """Ablation importance (score drop when a layer is removed) and the score with that layer
    alone, beside the head's attention mass per layer."""
    from .stats.plots import agg_figure, save_figure

    rows = result["per_layer"]
    layers = [r["layer"] for r in rows]
    fig, (left, mid, right) = agg_figure((14, 4.2), 1, 3)
    left.bar(layers, [r["importance"] for r in rows], color="tab:red")
    left.axhline(0, color="grey", linewidth=0.8)
    left.set_title("Ablation importance\n(full score - score without the layer)")
    mid.plot(layers, [r["only"]["mean"] for r in rows], marker="o", markersize=3, label="only this layer")
    mid.axhline(result["all"]["mean"], color="grey", linestyle="--", linewidth=1, label="all layers")
    mid.set_title("Score with one layer alone")
    mid.legend(fontsize=8)
    right.bar(layers, [r["attention_mass"] for r in rows], color="tab:blue")
    right.axhline(1 / len(rows), color="grey", linestyle="--", linewidth=1, label="uniform")
    right.set_title("Attention mass of the latents")
    right.legend(fontsize=8)
    for ax, ylabel in ((left, "mean main score drop"), (mid, "mean main score"), (right, "attention mass")):
        ax.set_xlabel("transformer layer")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Layer ablation: {result['model']['design']} ({', '.join(t['name'] for t in result['tasks'])})"
    )
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
