"""``max_length`` is the text's budget: a long instruction never eats it and is never cut."""

from __future__ import annotations

import pytest
import torch

from poolattn.tokenization import apply_prompt

TEMPLATE = "Instruct: {instruction}\nQuery: {text}"
INSTRUCTION = " ".join(
    ["Given a long and detailed scientific claim written by a reviewer, retrieve every passage"]
    + ["that supports or refutes the claim with concrete experimental evidence"] * 2
)
LONG_TEXT = " ".join(f"word{i}" for i in range(80))


def prefix_tokens(tokenizer, instruction: str) -> int:
    prompted, chars = apply_prompt(LONG_TEXT, TEMPLATE, instruction)
    enc = tokenizer(prompted, return_offsets_mapping=True)
    return sum(1 for _, end in enc["offset_mapping"] if end <= chars)


@pytest.mark.parametrize("side", ["right", "left"])
def test_long_instruction_leaves_the_text_its_budget(tiny_model, side: str) -> None:
    model = tiny_model("mean", "causal", max_length=32, padding_side=side, exclude_instruction=True)
    tok = model.tokenizer
    n_prefix = prefix_tokens(tok, INSTRUCTION)
    assert n_prefix >= 40  # a 40-token instruction or longer
    features = model.tokenize([LONG_TEXT, "short text"], prompt_type="query", instruction=INSTRUCTION)
    attention, pooling, ids = features["attention_mask"], features["pooling_mask"], features["input_ids"]

    # the long text keeps max_length = 32 tokens of its own (31 text tokens + the appended EOS)
    assert pooling[0].sum().item() == 32
    assert attention[0].sum().item() == n_prefix + 32
    text_ids = ids[0][pooling[0].bool()].tolist()
    assert text_ids[-1] == tok.eos_token_id
    assert tok.decode(text_ids[:-1]).strip() == tok.decode(tok(LONG_TEXT)["input_ids"][:31]).strip()
    # the instruction is whole, and outside the pooling mask
    prefix_ids = ids[0][attention[0].bool() & ~pooling[0].bool()].tolist()
    assert len(prefix_ids) == n_prefix and INSTRUCTION in tok.decode(prefix_ids)
    # the short text is untouched, padded on the configured side
    assert tok.decode(ids[1][pooling[1].bool()].tolist()[:-1]).strip() == "short text"
    real = attention[1].bool()
    assert (real.nonzero().min() == 0) if side == "right" else (real.nonzero().max() == real.numel() - 1)
    assert attention[1].sum() < attention[0].sum()


def test_documents_have_the_same_text_budget(tiny_model) -> None:
    model = tiny_model("mean", "causal", max_length=32)
    doc = model.tokenize([LONG_TEXT], prompt_type="document")
    query = model.tokenize([LONG_TEXT], prompt_type="query", instruction=INSTRUCTION)
    assert doc["attention_mask"].sum().item() == 32  # a bare document: its text + EOS
    assert query["pooling_mask"].sum().item() == 32  # a query: as many tokens of its own text
    assert torch.equal(doc["input_ids"][0, 1:], query["input_ids"][0, -31:])  # the same text tokens


def test_an_instruction_over_its_own_budget_is_an_error(tiny_model) -> None:
    model = tiny_model("mean", "causal", max_length=32, max_instruction_length=16)
    with pytest.raises(ValueError, match="max_instruction_length = 16"):
        model.tokenize(["text"], prompt_type="query", instruction=INSTRUCTION)
    assert model.tokenize(["text"], prompt_type="query", instruction="Short")["input_ids"].shape[0] == 1


def test_embedding_of_long_query_is_padding_invariant(tiny_model) -> None:
    model = tiny_model("latent", "bidirectional", max_length=32, exclude_instruction=True)
    kwargs = dict(prompt_type="query", instruction=INSTRUCTION, normalize=False)
    batch = model.encode([LONG_TEXT, "short text"], **kwargs)
    alone = model.encode([LONG_TEXT], **kwargs)
    assert abs(batch[0] - alone[0]).max() <= 1e-5
