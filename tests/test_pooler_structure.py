"""The trainable poolers have the published structure (the paper's PerceiverResampler block,
NV-Embed's latent attention): parameter counts, the norms really applied, the residuals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poolattn.config import HeadConfig
from poolattn.design import model_config
from poolattn.pooling import POOLERS, CrossAttentionBlock, build_pooler

D, HEADS, HEAD_DIM, MULT, LATENTS, LAYERS = 32, 4, 8, 4, 6, 5
HEAD = HeadConfig(num_latents=LATENTS, num_heads=HEADS, head_dim=HEAD_DIM, ff_mult=MULT)


def make_pooler(
    name: str, layers: int = LAYERS, head: HeadConfig = HEAD, seed: int = 0, dim: int = D, **settings
):  # noqa: ANN201
    """Build a registered pooler with its own ``settings`` (``[model.poolers.NAME]``)."""
    return build_pooler(model_config(name, head=head, poolers={name: settings}), dim, layers, seed)


def paper_block_parameters(d: int, heads: int, head_dim: int, mult: int) -> int:
    """Hand count of the paper's block: PreNorm(Attention) with a context norm, PreNorm(FeedForward)."""
    inner = heads * head_dim
    norms = 2 * (2 * d)  # LayerNorm on the key/value inputs and on the latents (weight + bias)
    attention = d * inner + d * 2 * inner + inner * d  # to_q, to_kv, to_out: no biases
    feed_forward = 2 * d + (d * 2 * mult * d + 2 * mult * d) + (mult * d * d + d)  # LN, GEGLU in, out
    return norms + attention + feed_forward


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_block_parameter_count_matches_the_paper() -> None:
    block = CrossAttentionBlock(D, HEAD)
    assert count(block) == paper_block_parameters(D, HEADS, HEAD_DIM, MULT)
    assert [type(m).__name__ for m in block.ff] == ["Linear", "GEGLU", "Linear"]
    assert block.to_out.bias is None and block.to_q.bias is None and block.to_kv.bias is None


def test_pooler_parameter_counts() -> None:
    block = paper_block_parameters(D, HEADS, HEAD_DIM, MULT)
    latent = make_pooler("latent")
    multilayer = make_pooler("multilayer")
    nv = make_pooler("nv_latent")
    assert count(latent) == block + LATENTS * D
    assert count(multilayer) == block + LATENTS * D + LAYERS * D  # + one position row per layer
    assert count(nv) == block + LATENTS * D
    assert multilayer.layer_position.weight.shape == (LAYERS, D)


def test_paper_preset_sizes_and_structure() -> None:
    cfg = model_config(pooling="multilayer", head_preset="paper")
    assert (cfg.head.num_latents, cfg.head.num_heads, cfg.head.head_dim, cfg.head.ff_mult) == (
        768,
        32,
        2048,
        4,
    )
    # the preset fills sizes; the latent pooler's own setting, given in the old form, stays the user's
    latent = model_config(pooling="latent", head_preset="paper", head={"latent_keys": "last"})
    assert latent.poolers == {"latent": {"latent_keys": "last"}} and latent.head.num_latents == 768
    assert (
        count(make_pooler("multilayer", head=cfg.head))
        == paper_block_parameters(D, 32, 2048, 4) + 768 * D + LAYERS * D
    )


def test_inits_follow_the_paper() -> None:
    """Latents and layer-position rows are N(0, 1), not the 0.02 that drowned the position signal."""
    pooler = make_pooler("multilayer", 30, HeadConfig(num_latents=64), dim=64)
    assert 0.9 < pooler.latents.std().item() < 1.1
    assert 0.9 < pooler.layer_position.weight.std().item() < 1.1


def test_block_is_invariant_to_the_scale_of_its_keys() -> None:
    torch.manual_seed(0)
    block = CrossAttentionBlock(D, HEAD)
    queries, keys = torch.randn(3, LATENTS, D), torch.randn(3, 7, D) + 2.0
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 5:] = False
    a, b = block(queries, keys, mask), block(queries, keys * 1000, mask)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert (a - block(queries, keys * 1000 + torch.randn(3, 7, D) * 500, mask)).abs().max() > 1e-2


@pytest.mark.parametrize("latent_keys", ["tokens", "last"])
def test_latent_pooler_is_invariant_to_the_scale_of_the_last_layer(latent_keys: str) -> None:
    latent = make_pooler("latent", 2, HeadConfig(num_latents=4), latent_keys=latent_keys)
    torch.manual_seed(1)
    states = tuple(torch.randn(2, 6, D) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    scaled = (*states[:-1], states[-1] * 1000)
    torch.testing.assert_close(latent(states, mask, mask), latent(scaled, mask, mask), atol=1e-4, rtol=1e-4)


def test_residuals_keep_the_latents_contribution() -> None:
    """Zeroing the attention output leaves latents + FF(latents); zeroing the FF too leaves the latents."""
    torch.manual_seed(2)
    pooler = make_pooler("latent", 2)
    states = tuple(torch.randn(2, 5, D) for _ in range(3))
    other = tuple(torch.randn(2, 5, D) for _ in range(3))
    mask = torch.ones(2, 5, dtype=torch.long)
    assert (pooler(states, mask, mask) - pooler(other, mask, mask)).abs().max() > 1e-3
    with torch.no_grad():
        pooler.attend.to_out.weight.zero_()
    latents = pooler.latents.detach()
    expected = (latents + pooler.attend.ff(pooler.attend.norm_ff(latents))).mean(dim=0)
    out = pooler(states, mask, mask)
    torch.testing.assert_close(out, expected.expand(2, -1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, pooler(other, mask, mask))
    with torch.no_grad():
        pooler.attend.ff[-1].weight.zero_()
        pooler.attend.ff[-1].bias.zero_()
    torch.testing.assert_close(pooler(states, mask, mask), latents.mean(dim=0).expand(2, -1))


def test_paper_design_2_variant_reads_only_the_final_token() -> None:
    """latent_keys = "last": one key (the final token's state); earlier tokens cannot matter."""
    last = make_pooler("latent", 2, HeadConfig(num_latents=4), latent_keys="last")
    tokens = make_pooler("latent", 2, HeadConfig(num_latents=4))
    torch.manual_seed(3)
    states = [torch.randn(2, 6, D) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    changed = [s.clone() for s in states]
    changed[-1][:, :3] = torch.randn(2, 3, D)  # every token but the last real ones
    torch.testing.assert_close(last(states, mask, mask), last(changed, mask, mask))
    assert (tokens(states, mask, mask) - tokens(changed, mask, mask)).abs().max() > 1e-3
    last.attend.record_attention = True
    last(states, mask, mask)
    assert last.attend.last_attention.shape[-1] == 1  # a single key, as in the paper's code


def test_nv_latent_tokens_query_the_latents_then_masked_mean() -> None:
    """NV-Embed: the output is the masked mean over tokens of block(tokens -> latents)."""
    torch.manual_seed(4)
    pooler = make_pooler("nv_latent", 2)
    states = tuple(torch.randn(2, 5, D) for _ in range(3))
    attention = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooling = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]])  # instruction tokens excluded
    latents = pooler.latents.unsqueeze(0).expand(2, -1, -1)
    per_token = pooler.attend(states[-1], latents)
    expected = torch.stack([per_token[0, 1:3].mean(0), per_token[1, 2:5].mean(0)])
    torch.testing.assert_close(pooler(states, attention, pooling), expected, atol=1e-6, rtol=1e-5)
    pooler.attend.record_attention = True
    pooler(states, attention, pooling)
    assert pooler.attend.last_attention.shape == (2, HEADS, 5, LATENTS)  # tokens attend over latents


def test_head_init_has_its_own_seed() -> None:
    """The head depends on its seed only, and building it leaves the global RNG untouched."""
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = make_pooler("multilayer", seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(123)
    b = make_pooler("multilayer", seed=7)
    c = make_pooler("multilayer", seed=8)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert not torch.equal(a.latents, c.latents)


@pytest.mark.parametrize("pooling", sorted(n for n, cls in POOLERS.items() if cls.trainable))
def test_head_is_float32_and_computes_in_float32_on_a_bf16_backbone(tiny_model, pooling: str) -> None:
    model = tiny_model(pooling, "bidirectional", dtype="bfloat16")
    model.backbone.to(torch.bfloat16)
    assert next(model.backbone.parameters()).dtype == torch.bfloat16
    assert {p.dtype for p in model.pooler.parameters()} == {torch.float32}
    seen: list[torch.dtype] = []
    model.pooler.attend.to_q.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    features = model.tokenize(["a small test", "another one, longer than the first"])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the backbone may run under autocast ...
        out = model(features)
    assert seen == [torch.float32]  # ... the head's matmuls do not
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("side", ["right", "left"])
def test_paper_design_2_variant_is_padding_invariant(tiny_model, side: str) -> None:
    model = tiny_model("latent", "causal", padding_side=side, head={"latent_keys": "last"})
    texts = ["short", "a considerably longer sentence than the first one", "medium length"]
    kwargs = dict(prompt_type="query", instruction="Find the paraphrase", normalize=False)
    batch = model.encode(texts, **kwargs)
    alone = np.stack([model.encode([t], **kwargs)[0] for t in texts])
    assert np.abs(batch - alone).max() <= 1e-5
