"""Texts -> padded model inputs, with EOS really appended and an instruction-aware pooling mask.

Several tokenizers ignore ``add_eos_token``, so EOS is appended to the ids by hand, after
truncation, so it survives over-long texts. Position ids are computed from the mask so a
left-padded text gets the same positions as when it is alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

PromptType = str | None  # None | "query" | "document"


def check_texts(texts: Sequence[object]) -> list[str]:
    """Reject None, non-strings and empty strings with an error naming the index."""
    out: list[str] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}]: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(
                f"texts[{i}]: empty text; poolattn does not define an embedding for empty strings"
            )
        out.append(text)
    return out


def apply_prompt(text: str, template: str, instruction: str | None) -> tuple[str, int]:
    """Return the prompted text and the character length of its instruction prefix."""
    if not instruction:
        return text, 0
    prefix, _, suffix = template.partition("{text}")
    prefix = prefix.format(instruction=instruction)
    return prefix + text + suffix.format(instruction=instruction), len(prefix)


def per_text(instruction: str | Sequence[str | None] | None, count: int) -> list[str | None]:
    """One instruction per text: a single instruction (or None) is repeated."""
    if instruction is None or isinstance(instruction, str):
        return [instruction] * count
    out = list(instruction)
    if len(out) != count:
        raise ValueError(f"instruction: got {len(out)} instructions for {count} texts; give one per text")
    return out


def tokenize(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int,
    template: str,
    instruction: str | Sequence[str | None] | None = None,
    append_eos: bool = True,
    padding_side: str = "right",
) -> dict[str, torch.Tensor]:
    """Tokenize and pad; returns input_ids, attention_mask, position_ids and pooling_mask.

    ``instruction`` is one instruction for every text or one per text (a mixed training batch).
    ``pooling_mask`` is the attention mask with the instruction prefix tokens removed, so
    mean-type and trainable poolers can exclude them.
    """
    instructions = per_text(instruction, len(texts))
    prompted = [apply_prompt(t, template, i) for t, i in zip(texts, instructions, strict=True)]
    budget = max_length - (1 if append_eos else 0)
    enc = tokenizer(
        [p for p, _ in prompted],
        add_special_tokens=True,
        truncation=True,
        max_length=budget,
        return_offsets_mapping=True,
    )
    eos = tokenizer.eos_token_id
    rows: list[tuple[list[int], list[int]]] = []
    for (_, prefix_chars), ids, offsets in zip(
        prompted, enc["input_ids"], enc["offset_mapping"], strict=True
    ):
        ids = list(ids)
        if prefix_chars:  # a token belongs to the text if it covers any text character
            keep = [1 if end > prefix_chars else 0 for _, end in offsets]
        else:
            keep = [1] * len(ids)
        if append_eos:
            if ids and ids[-1] == eos:
                ids, keep = ids[:-1], keep[:-1]
            ids.append(eos)
            keep.append(1)
        rows.append((ids, keep))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    pooling = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, keep) in enumerate(rows):
        n = len(ids)
        span = slice(0, n) if padding_side == "right" else slice(width - n, width)
        input_ids[r, span] = torch.tensor(ids)
        attention[r, span] = 1
        pooling[r, span] = torch.tensor(keep)
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "position_ids": positions,
        "pooling_mask": pooling,
    }
