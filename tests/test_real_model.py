"""Sanity of the real SmolLM2-135M weights (not of training), offline."""

from __future__ import annotations

import numpy as np
import pytest

from poolattn.demo import similarity_demo

pytestmark = [pytest.mark.slow, pytest.mark.needs_model]


def test_eos_design_orders_meanings(smol_model):
    emb = smol_model.encode(
        ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell today."]
    )
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_describe_counts_real_parameters(smol_model):
    info = smol_model.describe()
    assert 100e6 < info["backbone_parameters"] < 200e6
    assert info["layers"] == 30 and info["embedding_dim"] == 576


def test_demo_prints_two_tables():
    text = similarity_demo()
    assert "design eos+causal" in text and "design mean+bidirectional" in text
    assert "A man is playing a guitar." in text
