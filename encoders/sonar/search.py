"""fairseq2's greedy and beam search over the SONAR decoder (see :mod:`encoders.sonar`).

The search is the shared one (:func:`encoders.generate.beam_search_loop`, "collect" rule, and
:func:`encoders.generate.greedy_loop`); what stays here is what fairseq2 parity requires of
SONAR: the prompt ``</s> __lang__`` run in one prefill (its ``log p(__lang__ | </s>)`` counts
in the beam scores, and the prompt in the length normalization), the decoder positions after
it, and fairseq2's step scores (PAD never, EOS forced at the last step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from encoders.generate import Step, beam_search_loop, greedy_loop
from encoders.sonar.model import EOS_IDX, PAD_IDX, SonarTextDecoder
from lcm.nn import KVCache

_PROMPT_LEN = 2  # </s> __lang__


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


def sonar_step(decoder: SonarTextDecoder, memories: tuple[jax.Array, ...], max_len: int) -> Step:
    """SONAR's ``step`` for the shared search: the token of step ``t - 1`` at position
    ``t + 1`` (after the prompt), then fairseq2's scores of step ``t``."""

    def step(caches: tuple[KVCache, ...], tokens: jax.Array, t: jax.Array):
        logits, caches = decoder.decode_step(tokens[:, None], memories, caches, t + 1)
        return _step_lprobs(logits[:, -1], t, max_len), caches

    return step


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
    memories, caches, logits = _prefill(decoder, concepts, lang, max_len + _PROMPT_LEN)
    step = sonar_step(decoder, memories, max_len)
    first = _step_lprobs(logits[:, -1], 0, max_len)
    return greedy_loop(step, caches, first, max_len, eos_id=EOS_IDX, pad_id=PAD_IDX)


def sonar_beam_search(
    decoder: SonarTextDecoder,
    concepts: jax.Array,
    lang: jax.Array,
    max_len: int,
    beam_size: int,
    len_penalty: float = 1.0,
    n_best: bool = False,
) -> jax.Array:
    """fairseq2's ``BeamSearchSeq2SeqGenerator`` (``StandardBeamSearchAlgorithm``): the
    "collect" rule of :func:`encoders.generate.beam_search_loop`.

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
    memories, caches, logits = _prefill(
        decoder, jnp.repeat(concepts, k, axis=0), lang, max_len + _PROMPT_LEN
    )
    prompt_lprob = jax.nn.log_softmax(logits[:, 0].astype(jnp.float32), axis=-1)
    prompt_score = prompt_lprob[:, jnp.asarray(lang, jnp.int32)].reshape(b, k)[:, 0]
    return beam_search_loop(
        sonar_step(decoder, memories, max_len),
        caches,
        _step_lprobs(logits[:, -1], 0, max_len),
        max_len,
        k,
        eos_id=EOS_IDX,
        pad_id=PAD_IDX,
        rule="collect",
        start_scores=prompt_score,
        prompt_len=_PROMPT_LEN,
        length_penalty=len_penalty,
        n_best=n_best,
    )
