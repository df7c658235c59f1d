"""Texts -> padded model inputs, with EOS really appended and an instruction-aware pooling mask.

EOS is appended by hand after truncation (several tokenizers ignore ``add_eos_token``); position
ids come from the mask, so a left-padded text gets the positions it has alone. Token budget: the
prompt prefix (BOS, the instruction) is never truncated and must fit ``max_instruction_length``;
the rest (text, template suffix, EOS) is cut to ``max_length``, so a query keeps as much of its
own text as a document does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedTokenizerBase


def check_texts(texts: Sequence[object], *, allow_empty: bool = False) -> list[str]:
    """Reject None, non-strings and empty strings with an error naming the index; ``allow_empty``
    (real corpora have empty documents) passes a blank text on as ``""``."""
    out: list[str] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}]: expected a string, got {type(text).__name__}")
        if not text.strip():
            if allow_empty:
                out.append("")
                continue
            raise ValueError(
                f"texts[{i}]: empty text; poolattn does not define an embedding for empty strings "
                "(encode(..., allow_empty=True) embeds it as the prompt followed by EOS)"
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
    max_instruction_length: int | None = None,
) -> dict[str, torch.Tensor]:
    """Tokenize and pad (``instruction``: one for all texts or one per text) into input_ids,
    attention_mask, position_ids and pooling_mask (the attention mask without the instruction
    prefix's tokens); ``max_instruction_length=None`` is unbounded."""
    instructions = per_text(instruction, len(texts))
    prompted = [apply_prompt(t, template, i) for t, i in zip(texts, instructions, strict=True)]
    budget = max_length - (1 if append_eos else 0)
    enc = tokenizer(
        [p for p, _ in prompted],
        add_special_tokens=True,
        truncation=False,  # the text is cut below, after the prefix is set aside
        return_offsets_mapping=True,
        verbose=False,
    )
    eos = tokenizer.eos_token_id
    rows: list[tuple[list[int], list[int]]] = []
    for index, ((_, prefix_chars), ids, offsets) in enumerate(
        zip(prompted, enc["input_ids"], enc["offset_mapping"], strict=True)
    ):
        ids, ends = list(ids), [end for _, end in offsets]
        if append_eos and ids and ids[-1] == eos:
            ids, ends = ids[:-1], ends[:-1]
        # the prefix: leading tokens that cover no text character (special tokens, instruction)
        head = next((i for i, end in enumerate(ends) if end > prefix_chars), len(ids))
        if max_instruction_length is not None and prefix_chars and head > max_instruction_length:
            raise ValueError(
                f"texts[{index}]: the instruction prompt has {head} tokens, more than "
                f"model.max_instruction_length = {max_instruction_length}; shorten the instruction "
                "or raise the limit (instructions are never truncated)"
            )
        ids = ids[:head] + ids[head:][:budget]
        # a token belongs to the text if it covers any text character
        keep = [0 if prefix_chars else 1] * head + [1] * (len(ids) - head)
        if append_eos:
            ids.append(eos)
            keep.append(1)
        if not ids:  # an empty text (allow_empty) without BOS or EOS: EOS alone, never zero tokens
            ids, keep = [eos], [1]
        if not any(keep):  # an empty query without EOS: pool over its prompt, never over nothing
            keep = [1] * len(ids)
        rows.append((ids, keep))

    def pad(values: list[list[int]], fill: int) -> torch.Tensor:
        tensors = [torch.tensor(row, dtype=torch.long) for row in values]
        return pad_sequence(tensors, batch_first=True, padding_value=fill, padding_side=padding_side)

    attention = pad([[1] * len(ids) for ids, _ in rows], 0)
    return {
        "input_ids": pad([ids for ids, _ in rows], tokenizer.pad_token_id),
        "attention_mask": attention,
        "position_ids": (attention.cumsum(dim=1) - 1).clamp(min=0),
        "pooling_mask": pad([keep for _, keep in rows], 0),
    }
