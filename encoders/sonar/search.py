"""fairseq2's greedy and beam search over the SONAR decoder (see :mod:`encoders.sonar`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from encoders.sonar.model import EOS_IDX, PAD_IDX, SonarTextDecoder
from lcm.nn import (
    KVCache,
)


def _prefill(
    decoder: SonarTextDecoder, concepts: jax.Array, lang: jax.Array, cache_len: int
) -> tuple[tuple[jax.Array, ...], tuple[KVCache, ...], jax.Array]:
    """Run the prompt ``</s> __lang__``; returns memories, caches and its logits [B, 2, V]."""
    batch = concepts.shape[0]
    memories = decoder.project_memory(concepts)
    caches = decoder.init_cache(batch, cache_len)
    prompt = jnp.stack(
        [
            jnp.full((batch,), EOS_IDX, jnp.int32),
            jnp.broadcast_to(lang, (batch,)).astype(jnp.int32),
        ],
        axis=1,
    )
    logits, caches = decoder.decode_step(prompt, memories, caches, jnp.int32(0))
    return memories, caches, logits


def _step_lprobs(logits: jax.Array, t: jax.Array, max_len: int) -> jax.Array:
    """fairseq2's step scores: log-softmax, PAD never, only EOS at the last step."""
    lprobs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    normal = lprobs.at[:, PAD_IDX].set(-jnp.inf)
    eos_only = jnp.full_like(lprobs, -jnp.inf).at[:, EOS_IDX].set(lprobs[:, EOS_IDX])
    return jnp.where(t == max_len - 1, eos_only, normal)


def _check_positions(decoder: SonarTextDecoder, max_len: int) -> None:
    if max_len + 2 > decoder.config.max_seq_len:
        raise ValueError(
            f"max_len {max_len} + the 2 prompt tokens exceed the decoder's "
            f"{decoder.config.max_seq_len} positions"
        )


def sonar_greedy_search(
    decoder: SonarTextDecoder, concepts: jax.Array, lang: jax.Array, max_len: int
) -> jax.Array:
    """Greedy decoding, as fairseq2's beam search with beam size 1.

    Args:
        decoder: The decoder.
        concepts: [batch, D] sentence vectors.
        lang: Scalar int, the target ``__lang__`` token id.
        max_len: Most tokens to generate, EOS included (EOS is forced at the last one).

    Returns:
        [batch, max_len] int32: ids, EOS, then PAD.
    """
    _check_positions(decoder, max_len)
    batch = concepts.shape[0]
    memories, caches, logits = _prefill(decoder, concepts, lang, max_len + 2)

    def cond(carry):
        t, _, _, _, done = carry
        return (t < max_len) & ~jnp.all(done)

    def body(carry):
        t, out, logits, caches, done = carry
        token = jnp.argmax(_step_lprobs(logits, t, max_len), axis=-1).astype(jnp.int32)
        token = jnp.where(done, PAD_IDX, token)
        out = jax.lax.dynamic_update_slice(out, token[:, None], (0, t))
        next_logits, caches = decoder.decode_step(token[:, None], memories, caches, t + 2)
        return t + 1, out, next_logits[:, -1], caches, done | (token == EOS_IDX)

    carry = (
        jnp.int32(0),
        jnp.full((batch, max_len), PAD_IDX, jnp.int32),
        logits[:, -1],
        caches,
        jnp.zeros((batch,), bool),
    )
    return jax.lax.while_loop(cond, body, carry)[1]


def sonar_beam_search(
    decoder: SonarTextDecoder,
    concepts: jax.Array,
    lang: jax.Array,
    max_len: int,
    beam_size: int,
    len_penalty: float = 1.0,
    n_best: bool = False,
) -> jax.Array:
    """fairseq2's ``BeamSearchSeq2SeqGenerator`` (``StandardBeamSearchAlgorithm``).

    Each step takes the best ``2K`` continuations of the ``K`` beams; those among the best
    ``K`` that end in EOS become hypotheses (score: total log-probability, the prompt's
    ``log p(__lang__ | </s>)`` included, divided by ``(prompt + generated - 1) **
    len_penalty``), the best ``K`` others go on. A sentence is done at ``K`` hypotheses;
    the best-scoring one (the earliest on ties) is returned.

    Args:
        decoder: The decoder.
        concepts: [batch, D] sentence vectors.
        lang: Scalar int, the target ``__lang__`` token id.
        max_len: Most tokens to generate, EOS included (EOS is forced at the last one).
        beam_size: K.
        len_penalty: Length-normalization exponent.
        n_best: Return all ``K`` hypotheses, best first, instead of the best one.

    Returns:
        [batch, max_len] int32: ids, EOS, then PAD; with ``n_best`` [batch, K, max_len].
    """
    _check_positions(decoder, max_len)
    b, k = concepts.shape[0], beam_size
    rows = b * k
    memories, caches, logits = _prefill(decoder, jnp.repeat(concepts, k, axis=0), lang, max_len + 2)
    vocab = logits.shape[-1]
    prompt_lprob = jax.nn.log_softmax(logits[:, 0].astype(jnp.float32), axis=-1)
    prompt_score = prompt_lprob[:, jnp.asarray(lang, jnp.int32)].reshape(b, k)
    # Only the first beam is live at the start (fairseq2 starts with one sequence per prompt).
    scores = jnp.where(jnp.arange(k) == 0, prompt_score, -jnp.inf)
    batch_idx = jnp.broadcast_to(jnp.arange(b)[:, None], (b, k))
    positions = jnp.arange(max_len)

    def cond(carry):
        t, *_, fin_count = carry
        return (t < max_len) & jnp.any(fin_count < k)

    def body(carry):
        t, seqs, scores, logits, caches, fin_seqs, fin_scores, fin_count = carry
        lprobs = _step_lprobs(logits, t, max_len).reshape(b, k, vocab)
        cand = (scores[..., None] + lprobs).reshape(b, k * vocab)
        top_scores, top_idx = jax.lax.top_k(cand, 2 * k)
        parent, token = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
        is_eos = token == EOS_IDX
        # Hypotheses: EOS among the best K, in rank order, until K are collected.
        eos_top = is_eos[:, :k] & jnp.isfinite(top_scores[:, :k]) & (fin_count < k)[:, None]
        slot = fin_count[:, None] + jnp.cumsum(eos_top, axis=1) - 1
        accept = eos_top & (slot < k)
        ended = jnp.take_along_axis(seqs, parent[:, :k, None], axis=1)
        ended = jnp.where(positions == t, EOS_IDX, ended)
        norm = top_scores[:, :k] / (t + 2).astype(jnp.float32) ** len_penalty
        slot = jnp.where(accept, slot, k)  # out of range: dropped
        fin_seqs = fin_seqs.at[batch_idx, slot].set(ended, mode="drop")
        fin_scores = fin_scores.at[batch_idx, slot].set(norm, mode="drop")
        fin_count = fin_count + jnp.sum(accept, axis=1, dtype=jnp.int32)
        # Live beams: the best K candidates that are not EOS.
        keep = jnp.argsort(is_eos, axis=1, stable=True)[:, :k]
        scores = jnp.take_along_axis(top_scores, keep, axis=1)
        parent = jnp.take_along_axis(parent, keep, axis=1)
        token = jnp.take_along_axis(token, keep, axis=1)
        seqs = jnp.take_along_axis(seqs, parent[..., None], axis=1)
        seqs = jnp.where(positions == t, token[..., None], seqs)
        order = (batch_idx * k + parent).reshape(rows)
        caches = jax.tree.map(lambda c: c[order], caches)
        logits, caches = decoder.decode_step(token.reshape(rows, 1), memories, caches, t + 2)
        return t + 1, seqs, scores, logits[:, -1], caches, fin_seqs, fin_scores, fin_count

    carry = (
        jnp.int32(0),
        jnp.full((b, k, max_len), PAD_IDX, jnp.int32),
        scores,
        logits[:, -1],
        caches,
        jnp.full((b, k, max_len), PAD_IDX, jnp.int32),
        jnp.full((b, k), -jnp.inf, jnp.float32),
        jnp.zeros((b,), jnp.int32),
    )
    _, _, _, _, _, fin_seqs, fin_scores, _ = jax.lax.while_loop(cond, body, carry)
    if n_best:
        ranked = jnp.argsort(-fin_scores, axis=1, stable=True)
        return jnp.take_along_axis(fin_seqs, ranked[..., None], axis=1)
    best = jnp.argmax(fin_scores, axis=1)
    return jnp.take_along_axis(fin_seqs, best[:, None, None], axis=1)[:, 0]
