"""Bad input gets clear errors; edge cases are defined."""

from __future__ import annotations

import pytest

from poolattn.config import ConfigError, ModelConfig, from_dict, load_toml
from poolattn.design import model_config


def test_empty_list_gives_empty_array(tiny_model):
    model = tiny_model()
    out = model.encode([])
    assert out.shape == (0, model.embedding_dim) and out.dtype.name == "float32"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("", r"texts\[1\]: empty text"),
        ("   ", r"texts\[1\]: empty text"),
        (None, r"texts\[1\]: expected a string"),
        (3, r"texts\[1\]: expected a string"),
    ],
)
def test_bad_texts_name_the_index(tiny_model, bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        tiny_model().encode(["fine", bad])


def test_single_string_gives_one_vector(tiny_model):
    model = tiny_model()
    assert model.encode("hello").shape == (model.embedding_dim,)


def test_overlong_text_is_truncated_keeping_eos(tiny_model):
    model = tiny_model(max_length=16)
    features = model.tokenize(["word " * 200])
    assert features["input_ids"].shape[1] == 16
    assert features["input_ids"][0, -1].item() == model.tokenizer.eos_token_id
    assert model.encode(["word " * 200]).shape == (1, model.embedding_dim)


def test_eos_appended_once(tiny_model):
    model = tiny_model()
    ids = model.tokenize(["hello"])["input_ids"][0].tolist()
    eos = model.tokenizer.eos_token_id
    assert ids[-1] == eos and ids.count(eos) == 1


def test_one_instruction_per_text_matches_separate_calls(tiny_model):
    """A mixed training batch: each row is what tokenizing it alone with its instruction gives."""
    model = tiny_model(padding_side="left")
    texts, instructions = (
        ["first query here", "second", "a bare document text"],
        ["Find it", "Other task", None],
    )
    mixed = model.tokenize(texts, None, instructions)
    width = mixed["input_ids"].shape[1]
    for row, (text, instruction) in enumerate(zip(texts, instructions, strict=True)):
        alone = model.tokenize([text], None, instruction)
        n = alone["input_ids"].shape[1]
        for key in ("input_ids", "pooling_mask"):
            assert mixed[key][row, width - n :].tolist() == alone[key][0].tolist(), key
    with pytest.raises(ValueError, match="got 2 instructions for 3 texts"):
        model.tokenize(texts, "query", ["a", "b"])


def test_unknown_pooling_and_attention_list_choices():
    with pytest.raises(ConfigError, match="choose one of eos, mean, weighted_mean, latent, multilayer"):
        model_config(pooling="max")
    with pytest.raises(ConfigError, match="did you mean 'bidirectional'"):
        model_config(attention="bidirectonal")


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"model\.max_lenght: unknown key; did you mean 'max_length'"):
        from_dict(ModelConfig, {"max_lenght": 12}, "model")
    with pytest.raises(ConfigError, match=r"model\.max_length: expected an integer"):
        from_dict(ModelConfig, {"max_length": "long"}, "model")


def test_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nbase = 1")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_toml(bad)
    good = tmp_path / "good.toml"
    good.write_text('[model]\nbase = "x"\n')
    assert load_toml(good, ["model.max_length=64", "model.pooling=mean"])["model"] == {
        "base": "x",
        "max_length": 64,
        "pooling": "mean",
    }


def test_bad_prompt_type(tiny_model):
    with pytest.raises(ValueError, match="prompt_type"):
        tiny_model().encode(["x"], prompt_type="passage")
