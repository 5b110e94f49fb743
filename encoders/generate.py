"""Greedy and beam-search decoding of concept vectors with the KV-cached decoder.

Both run as one ``jax.lax.while_loop`` with a fixed maximum length that stops as soon as
every sequence has emitted EOS, so a jitted call has no host round trips.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from encoders.model import SentenceDecoder
from encoders.tokenizer import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID

# Ids the decoder must never emit: padding, BOS, <mask> and UNK (byte fallback covers any text).
_FORBIDDEN = (PAD_ID, BOS_ID, MASK_ID, UNK_ID)


def _forbidden_bias(vocab_size: int) -> jax.Array:
    return jnp.zeros((vocab_size,), jnp.float32).at[jnp.array(_FORBIDDEN)].set(-jnp.inf)


def greedy_search(decoder: SentenceDecoder, concepts: jax.Array, max_len: int) -> jax.Array:
    """Greedy decoding.

    Args:
        decoder: The sentence decoder.
        concepts: [B, D] vectors.
        max_len: Most tokens to generate (EOS included).

    Returns:
        [B, max_len] int32: ids, then EOS, then PAD (no EOS if the cap was hit).
    """
    batch = concepts.shape[0]
    memories = decoder.project_memory(concepts)
    bias = _forbidden_bias(decoder.embed.embedding.shape[0])

    def cond(carry):
        i, _, _, _, done = carry
        return (i < max_len) & ~jnp.all(done)

    def body(carry):
        i, out, last, caches, done = carry
        logits, caches = decoder.decode_step(last[:, None], memories, caches, i)
        token = jnp.argmax(logits[:, -1] + bias, axis=-1).astype(jnp.int32)
        token = jnp.where(done, PAD_ID, token)
        out = jax.lax.dynamic_update_slice(out, token[:, None], (0, i))
        return i + 1, out, token, caches, done | (token == EOS_ID)

    carry = (
        jnp.int32(0),
        jnp.full((batch, max_len), PAD_ID, jnp.int32),
        jnp.full((batch,), BOS_ID, jnp.int32),
        decoder.init_cache(batch, max_len),
        jnp.zeros((batch,), bool),
    )
    return jax.lax.while_loop(cond, body, carry)[1]


def beam_search(
    decoder: SentenceDecoder,
    concepts: jax.Array,
    max_len: int,
    beam_size: int,
    length_penalty: float = 1.0,
) -> jax.Array:
    """Beam search; the best beam is chosen by ``log p / length ** length_penalty``.

    A finished beam keeps its score and extends only with PAD; beams compete on raw log
    probability during the search. With ``beam_size=1`` this is exactly greedy decoding.

    Args:
        decoder: The sentence decoder.
        concepts: [B, D] vectors.
        max_len: Most tokens to generate (EOS included).
        beam_size: Beams per sentence (K).
        length_penalty: Exponent of the length normalization of final scores.

    Returns:
        [B, max_len] int32 of the best beam: ids, then EOS, then PAD.
    """
    batch, k = concepts.shape[0], beam_size
    rows = batch * k
    memories = decoder.project_memory(jnp.repeat(concepts, k, axis=0))
    vocab = decoder.embed.embedding.shape[0]
    bias = _forbidden_bias(vocab)
    # A finished beam may only append PAD, at no cost.
    finished_row = jnp.full((vocab,), -jnp.inf).at[PAD_ID].set(0.0)
    row_base = (jnp.arange(batch) * k)[:, None]

    def cond(carry):
        i, _, _, _, _, done = carry
        return (i < max_len) & ~jnp.all(done)

    def body(carry):
        i, out, scores, last, caches, done = carry
        logits, caches = decoder.decode_step(last[:, None], memories, caches, i)
        logp = jax.nn.log_softmax(logits[:, -1] + bias, axis=-1).reshape(batch, k, vocab)
        logp = jnp.where(done[..., None], finished_row, logp)
        scores, flat = jax.lax.top_k((scores[..., None] + logp).reshape(batch, k * vocab), k)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        out = jnp.take_along_axis(out, parent[..., None], axis=1)
        out = jax.lax.dynamic_update_slice(out, token[..., None], (0, 0, i))
        done = jnp.take_along_axis(done, parent, axis=1) | (token == EOS_ID)
        caches = jax.tree.map(lambda c: c[(row_base + parent).reshape(-1)], caches)
        return i + 1, out, scores, token.reshape(rows), caches, done

    # Only the first beam is live at the start, so the K beams do not duplicate each other.
    init_scores = jnp.tile(jnp.array([0.0] + [-jnp.inf] * (k - 1)), (batch, 1))
    carry = (
        jnp.int32(0),
        jnp.full((batch, k, max_len), PAD_ID, jnp.int32),
        init_scores,
        jnp.full((rows,), BOS_ID, jnp.int32),
        decoder.init_cache(rows, max_len),
        jnp.zeros((batch, k), bool),
    )
    _, out, scores, _, _, _ = jax.lax.while_loop(cond, body, carry)
    lengths = jnp.sum(out != PAD_ID, axis=-1).astype(jnp.float32)
    best = jnp.argmax(scores / jnp.maximum(lengths, 1.0) ** length_penalty, axis=-1)
    return jnp.take_along_axis(out, best[:, None, None], axis=1)[:, 0]
