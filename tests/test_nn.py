"""Shared layers: KV-cache parity, masks, RoPE, norms, parameter axis names."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcm.nn import (
    Attention,
    Block,
    KVCache,
    LayerNorm,
    LearnedPositions,
    RMSNorm,
    TokenEmbedding,
    apply_rope,
    cached_attention,
    dropout,
    make_block,
    make_ffn,
    sinusoidal_positions,
)
from lcm.nn.masked_transformer import MaskedTransformer

D, HEADS = 32, 4
LOGICAL_NAMES = {"embed", "mlp", "heads", "vocab", "concept", None}


def _x(key: int, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.normal(jax.random.key(key), shape)


@pytest.mark.parametrize("cross", [False, True])
def test_kv_cache_decoding_equals_full_causal_pass(cross: bool) -> None:
    block = make_block(
        D,
        HEADS,
        64,
        causal=True,
        cross_attention="cross" if cross else None,
        memory_dim=16,
        rope_base=10000.0,
        rngs=nnx.Rngs(0),
    )
    x = _x(1, (2, 9, D))
    memory = block.project_memory(_x(2, (2, 3, 16))) if cross else None
    full = jax.jit(lambda x: block(x, memory))(x)
    decode = jax.jit(lambda x, cache, i: block.decode(x, cache, i, memory))
    # A 4-token prompt in one call, then one token per step.
    out, cache = decode(x[:, :4], block.init_cache(2, 12), jnp.int32(0))
    outs = [out]
    for i in range(4, 9):
        out, cache = decode(x[:, i : i + 1], cache, jnp.int32(i))
        outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=1e-5)


def test_prefill_of_the_last_output_only_caches_every_position() -> None:
    """``last_only`` gives the full prefill's last row, ``fill_cache`` no output, and both
    leave the caches exactly as the full prefill does (left-padded rows included)."""
    stack = MaskedTransformer(D, 3, HEADS, 64, rngs=nnx.Rngs(0))
    x, first, zero = _x(1, (2, 5, D)), jnp.array([0, 2], jnp.int32), jnp.int32(0)
    empty = stack.init_cache(2, 8)
    full, caches = jax.jit(lambda x: stack.decode(x, empty, zero, first))(x)
    last, last_caches = jax.jit(lambda x: stack.decode(x, empty, zero, first, last_only=True))(x)
    filled = jax.jit(lambda x: stack.fill_cache(x, empty, zero, first))(x)
    assert last.shape == (2, 1, D)
    np.testing.assert_allclose(last, full[:, -1:], atol=1e-5)
    for want, a, b in zip(caches, last_caches, filled):
        for got in (a, b):
            np.testing.assert_array_equal(got.key, want.key)
            np.testing.assert_array_equal(got.value, want.value)


def test_cached_attention_equals_dot_product_attention_and_writes_in_place() -> None:
    """Queries against a [batch, heads, slots, head_dim] cache give what
    ``jax.nn.dot_product_attention`` gives on [batch, slots, heads, head_dim] keys, under a
    per-row mask; ``write`` stores new keys at their slots and leaves the others alone."""
    b, t, s, n, h = 3, 2, 7, HEADS, 8
    q, k, v = _x(1, (b, t, n, h)), _x(2, (b, s, n, h)), _x(3, (b, s, n, h))
    mask = jax.random.bernoulli(jax.random.key(4), 0.6, (b, 1, t, s)).at[..., 0].set(True)
    cache = KVCache(jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2))
    want = jax.nn.dot_product_attention(q, k, v, mask=mask)
    np.testing.assert_allclose(cached_attention(q, cache, mask), want, rtol=1e-5, atol=1e-6)

    empty = KVCache.zeros(b, s, n, h, jnp.float32)
    assert empty.key.shape == (b, n, s, h) and empty.max_len == s
    written = empty.write(k[:, 2:5], v[:, 2:5], jnp.int32(2))
    np.testing.assert_array_equal(written.key[:, :, 2:5], jnp.swapaxes(k[:, 2:5], 1, 2))
    np.testing.assert_array_equal(written.value[:, :, 2:5], jnp.swapaxes(v[:, 2:5], 1, 2))
    assert not np.any(written.key[:, :, :2]) and not np.any(written.value[:, :, 5:])


def test_causal_self_attention_ignores_the_future() -> None:
    attn = Attention(D, HEADS, rngs=nnx.Rngs(0))
    x = _x(1, (1, 6, D))
    changed = x.at[:, 4:].set(_x(2, (1, 2, D)))
    run = jax.jit(lambda x: attn(x, causal=True))
    np.testing.assert_allclose(run(x)[:, :4], run(changed)[:, :4], atol=1e-6)


def test_padding_mask_makes_outputs_independent_of_pad_contents() -> None:
    block = make_block(D, HEADS, 64, rope_base=10000.0, rngs=nnx.Rngs(0))
    x = _x(1, (2, 7, D))
    mask = jnp.array([[True] * 5 + [False] * 2, [True] * 3 + [False] * 4])
    garbage = jnp.where(mask[..., None], x, 100.0 * _x(2, x.shape))
    run = jax.jit(lambda x: block(x, mask=mask))
    a, b = run(x), run(garbage)
    np.testing.assert_allclose(a[0, :5], b[0, :5], atol=1e-5)
    np.testing.assert_allclose(a[1, :3], b[1, :3], atol=1e-5)


def test_single_key_cross_attention_is_exact_and_checked() -> None:
    full = Attention(D, HEADS, kind="cross", rngs=nnx.Rngs(0))
    x, m = _x(1, (2, 5, D)), _x(2, (2, 1, D))
    # Generic attention over one key gives the same output at every query position.
    out = full(x, full.project_memory(m))
    np.testing.assert_allclose(out, jnp.broadcast_to(out[:, :1], out.shape), atol=1e-6)
    single = Attention(D, HEADS, kind="single_key", rngs=nnx.Rngs(0))
    assert not hasattr(single, "query")
    assert single(x, single.project_memory(m)).shape == (2, 5, D)
    with pytest.raises(ValueError, match="length 1"):
        single.project_memory(_x(3, (2, 2, D)))
    # Without a memory, each position attends to itself only: out(value(x)).
    np.testing.assert_allclose(single(x), single.out(single.value(x)), rtol=1e-5, atol=1e-6)


def test_cross_attention_memory_mask() -> None:
    attn = Attention(D, HEADS, kind="cross", rngs=nnx.Rngs(0))
    x, m = _x(1, (1, 3, D)), _x(2, (1, 4, D))
    mask = jnp.array([[True, True, False, False]])
    a = attn(x, attn.project_memory(m, mask))
    b = attn(x, attn.project_memory(m.at[:, 2:].set(5.0), mask))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_heads_first_memory_attends_like_the_slots_first_layout() -> None:
    """A memory stored heads-first (reused over DDIM steps) gives the outputs of
    ``jax.nn.dot_product_attention`` over the slots-first one: unmasked, padded and under a
    per-query mask, and for a single-key memory."""
    attn = Attention(D, HEADS, kind="cross", rngs=nnx.Rngs(0))
    x, m = _x(1, (2, 3, D)), _x(2, (2, 5, D))
    pad = jnp.array([[True] * 5, [True, True, True, False, False]])
    for memory in (attn.project_memory(m), attn.project_memory(m, pad)):
        heads_first = memory.heads_first()
        assert heads_first.key.shape == (2, HEADS, 5, D // HEADS)
        np.testing.assert_allclose(attn(x, heads_first), attn(x, memory), atol=1e-5)
    per_query = _x(3, (2, 3, 5)) > 0
    per_query = per_query.at[:, :, 0].set(True)  # every query sees a slot
    np.testing.assert_allclose(
        attn(x, memory.heads_first(), mask=per_query),
        attn(x, memory, mask=per_query),
        atol=1e-5,
    )
    single = Attention(D, HEADS, kind="single_key", rngs=nnx.Rngs(0))
    one = single.project_memory(m[:, :1])
    np.testing.assert_array_equal(single(x, one.heads_first()), single(x, one))


def test_rope_scores_depend_only_on_relative_position() -> None:
    q, k = _x(1, (1, 1, 1, 16)), _x(2, (1, 1, 1, 16))

    def score(m: int, n: int) -> float:
        rq = apply_rope(q, jnp.array([m]))
        rk = apply_rope(k, jnp.array([n]))
        return float(jnp.sum(rq * rk))

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-4)
    np.testing.assert_allclose(apply_rope(q, jnp.array([0])), q)


def test_rope_with_static_positions_uses_constant_tables() -> None:
    x = _x(3, (2, 12, 4, 16))
    rotate = jax.jit(lambda x, p: apply_rope(x, p))
    traced = rotate(x, jnp.arange(12))
    static = jax.jit(lambda x: apply_rope(x, np.arange(12)))
    np.testing.assert_allclose(static(x), traced, atol=1e-5)
    # No sine or cosine left to compute (XLA would recompute them per head and row).
    assert "cosine" in rotate.lower(x, jnp.arange(12)).as_text()
    assert "cosine" not in static.lower(x).as_text()


def test_norms() -> None:
    x = 3.0 + 2.0 * _x(1, (4, D))
    y = LayerNorm(D)(x)
    np.testing.assert_allclose(jnp.mean(y, -1), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, -1), 1.0, atol=1e-3)
    z = RMSNorm(D)(x)
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(z**2, -1)), 1.0, atol=1e-3)
    assert LayerNorm(D, dtype=jnp.bfloat16)(x).dtype == jnp.bfloat16


@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_ffn_shapes(kind: str) -> None:
    ffn = make_ffn(kind, D, 48, rngs=nnx.Rngs(0))
    assert ffn(_x(1, (2, 3, D))).shape == (2, 3, D)


@pytest.mark.parametrize("rows", [3, 4 * D])  # the fused-kernel path, the kernel-halves path
def test_swiglu_matches_its_definition(rows: int) -> None:
    ffn = make_ffn("swiglu", D, 48, rngs=nnx.Rngs(0))
    x = _x(2, (rows, D))
    kernel = ffn.gate_up.kernel[...]
    gate, up = x @ kernel[:, 0], x @ kernel[:, 1]
    expected = (jax.nn.silu(gate) * up) @ ffn.down.kernel[...]
    np.testing.assert_allclose(ffn(x), expected, rtol=1e-5, atol=1e-5)


def test_embeddings_and_positions() -> None:
    emb = TokenEmbedding(50, D, rngs=nnx.Rngs(0))
    ids = jnp.array([[1, 2, 3]])
    h = emb(ids)
    assert h.shape == (1, 3, D)
    logits = emb.attend(h)
    assert logits.shape == (1, 3, 50) and logits.dtype == jnp.float32
    assert jnp.all(jnp.argmax(logits, -1) == ids)  # tied: a token's own row scores highest
    assert LearnedPositions(16, D, rngs=nnx.Rngs(0))(jnp.arange(5)).shape == (5, D)
    sin = sinusoidal_positions(jnp.arange(5), D)
    assert sin.shape == (5, D)
    np.testing.assert_allclose(sin[0, : D // 2], 0.0)


def test_dropout() -> None:
    x = jnp.ones((1000,))
    assert dropout(x, 0.5, None) is x
    y = dropout(x, 0.5, jax.random.key(0))
    assert set(np.unique(np.asarray(y)).tolist()) <= {0.0, 2.0}
    assert float(jnp.mean(y)) == pytest.approx(1.0, abs=0.1)


def test_parameters_carry_logical_axis_names() -> None:
    modules = [
        make_block(D, HEADS, 64, ffn="swiglu", norm="rmsnorm", rngs=nnx.Rngs(0)),
        make_block(D, HEADS, 64, causal=True, cross_attention="single_key", rngs=nnx.Rngs(0)),
        make_block(D, HEADS, 64, cross_attention="cross", memory_dim=16, rngs=nnx.Rngs(0)),
        TokenEmbedding(50, D, rngs=nnx.Rngs(0)),
    ]
    for module in modules:
        for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param)):
            names = var.get_metadata().get("out_sharding")
            assert names is not None, path
            assert len(names) == var.get_value().ndim, path
            assert set(names) <= LOGICAL_NAMES, (path, names)


def _top_names(module: nnx.Module) -> set[str]:
    return {str(path[0]) for path, _ in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def test_block_names_its_sublayers_as_checkpoints_do() -> None:
    """Without cross-attention the self-attention is ``attention``; beside a cross-attention
    it is ``self_attention``; ``names`` renames them (SONAR) and a norm name None drops a
    norm. A per-query mask [B, T, T] that is causal gives the causal pass."""
    plain = make_block(D, HEADS, 64, rope_base=10000.0, rngs=nnx.Rngs(0))
    assert _top_names(plain) == {"attn_norm", "attention", "ffn_norm", "ffn"}
    cross = make_block(D, HEADS, 64, cross_attention="cross", rngs=nnx.Rngs(0))
    assert _top_names(cross) == {
        *("self_norm", "self_attention", "cross_norm", "cross_attention", "ffn_norm", "ffn")
    }
    renamed = Block(
        lambda: LayerNorm(D),
        Attention(D, HEADS, rngs=nnx.Rngs(0)),
        make_ffn("gelu", D, 64, rngs=nnx.Rngs(0)),
        names={"attention": (None, "attn"), "ffn": ("ln", "mlp")},
    )
    assert _top_names(renamed) == {"attn", "ln", "mlp"}
    with pytest.raises(ValueError, match="do not name"):
        Block(lambda: LayerNorm(D), plain.attention, plain.ffn, names={"ffn": ("a", "b")})

    causal = make_block(D, HEADS, 64, causal=True, rope_base=10000.0, rngs=nnx.Rngs(0))
    x = _x(1, (2, 6, D))
    tril = jnp.broadcast_to(jnp.tril(jnp.ones((6, 6), bool)), (2, 6, 6))
    np.testing.assert_allclose(causal(x), plain(x, mask=tril), atol=1e-5)
