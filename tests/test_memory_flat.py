"""Memory that stays flat with batch size (issue 12): GradCache mini-batches are bounded in
padded tokens, not only in texts, and oneDNN's per-shape caches are capped before any model runs."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from poolattn.runtime import ONEDNN_CACHE_ENTRIES, release_free_heap
from poolattn.training.gradcache import make_chunks, mean_length_budget, partition_by_length


def _padded(groups: list[list[int]], lengths: list[int]) -> list[int]:
    return [len(g) * max(lengths[i] for i in g) for g in groups]


def _step_lengths(texts: int, seed: int) -> list[int]:
    """Token lengths like SNLI at max_length 32: mostly short, a tail of long instructed queries."""
    rng = random.Random(seed)
    return [rng.choice([rng.randint(5, 14)] * 4 + [rng.randint(30, 46)]) for _ in range(texts)]


def test_token_budget_bounds_every_mini_batch_but_a_lone_long_text() -> None:
    lengths = [40, 38, 37, 36, 12, 11, 10, 9, 9, 8, 8, 7, 120]
    groups = partition_by_length(lengths, 8, max_tokens=100)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) <= 8 for g in groups)
    for group, padded in zip(groups, _padded(groups, lengths), strict=True):
        assert padded <= 100 or len(group) == 1  # the 120-token text cannot be split
    assert [12] in groups
    # Without the budget the four long texts share one mini-batch of 160 padded tokens.
    assert max(_padded(partition_by_length(lengths, 8), lengths)) > 100


def test_largest_mini_batch_stays_flat_as_the_batch_grows() -> None:
    """Capped by texts alone, a large batch fills whole mini-batches with its longest texts;
    with the mean-length budget the largest mini-batch is the same at batch 32 and 2048."""
    largest, largest_uncapped, budgets = {}, {}, {}
    for texts in (96, 1536, 6144):
        lengths = _step_lengths(texts, seed=texts)
        budgets[texts] = mean_length_budget(lengths, 32)
        largest[texts] = max(_padded(partition_by_length(lengths, 32, budgets[texts]), lengths))
        largest_uncapped[texts] = max(_padded(partition_by_length(lengths, 32), lengths))
    assert largest_uncapped[6144] > 1.8 * largest_uncapped[96]  # the cause, reproduced
    assert all(largest[t] <= budgets[t] for t in budgets)
    assert max(budgets.values()) <= 1.1 * min(budgets.values())  # the mean length barely moves
    assert largest[6144] <= 1.25 * largest[96]


def test_make_chunks_mean_budget(tiny_model) -> None:
    model = tiny_model("eos", "causal")
    texts = ["a short one", "tiny", "x"] * 4 + ["a much longer text that goes on " * 3] * 4
    chunks = make_chunks(model.tokenize, texts, [None] * len(texts), 8, "mean")
    lengths = model.tokenize(texts)["attention_mask"].sum(dim=1).tolist()
    budget = mean_length_budget(lengths, 8)
    assert all(f["input_ids"].numel() <= budget or f["input_ids"].shape[0] == 1 for f in chunks.features)
    assert len(chunks) == len(texts)
    unbounded = make_chunks(model.tokenize, texts, [None] * len(texts), 8)
    assert max(f["input_ids"].numel() for f in unbounded.features) > budget


@pytest.mark.parametrize("preset", [None, "7"])
def test_onednn_caches_are_capped_when_the_model_code_loads(preset: str | None) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
    }
    if preset:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = preset  # the user's own setting wins
    code = "import os, poolattn.model; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'], os.environ['LRU_CACHE_CAPACITY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    primitive, lru = out.stdout.split()
    assert primitive == (preset or str(ONEDNN_CACHE_ENTRIES))
    assert lru == str(ONEDNN_CACHE_ENTRIES)


def test_release_free_heap_is_safe_to_call() -> None:
    release_free_heap()
    release_free_heap()
