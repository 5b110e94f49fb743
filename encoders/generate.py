"""Greedy and beam-search decoding over a ``step`` function, and our codec's use of them.

One beam search (:func:`beam_search_loop`) and one greedy loop (:func:`greedy_loop`) serve
every decoder: each decoder provides a ``step(state, tokens, t) -> (scores, state)`` that feeds
the tokens chosen at step ``t - 1`` and returns the scores of the token at step ``t`` (our
codec: :func:`codec_step`; SONAR: :func:`encoders.sonar.search.sonar_step`). The state (the
KV caches) is reordered along its first axis as beams are pruned.

Both run as ``jax.lax.while_loop``s that stop as soon as every sequence is finished, so a
jitted call has no host round trips. Our codec's KV caches grow through windows of 16, 32,
64, ... slots up to the maximum length, one loop per window: each step attends over the slots
of its window rather than all ``max_len`` of them (the masked slots would add exactly nothing),
so decoding the usual 20-40-token sentence no longer pays for 128 slots of attention per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from encoders.model import SentenceDecoder
from encoders.tokenizer import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID
from lcm.nn import KVCache

# ``step(state, tokens [rows], t) -> (scores [rows, vocab], state)``.
Step = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, Any]]
# How a beam that emits EOS finishes (see :func:`beam_search_loop`).
FinishRule = Literal["stay", "collect"]

# Ids the decoder must never emit: padding, BOS, <mask> and UNK (byte fallback covers any text).
_FORBIDDEN = (PAD_ID, BOS_ID, MASK_ID, UNK_ID)


def _forbidden_bias(vocab_size: int) -> jax.Array:
    return jnp.zeros((vocab_size,), jnp.float32).at[jnp.array(_FORBIDDEN)].set(-jnp.inf)


def cache_windows(max_len: int) -> tuple[int, ...]:
    """The KV-cache sizes decoding grows through: 16, 32, 64, ... below ``max_len``, then it."""
    return tuple(w for w in (16, 32, 64, 128, 256, 512) if w < max_len) + (max_len,)


def grow_caches(caches: tuple[KVCache, ...], slots: int) -> tuple[KVCache, ...]:
    """``caches`` [B, heads, S, head_dim] padded with empty slots to ``slots``."""
    return jax.tree.map(
        lambda c: jnp.pad(c, ((0, 0), (0, 0), (0, slots - c.shape[2]), (0, 0))), caches
    )


def _argmax(logits: jax.Array) -> jax.Array:
    """``argmax`` over the last axis (the first maximum), as int32.

    The maximum, then the lowest index holding it: two plain reductions, 3x faster on CPU
    than ``jnp.argmax``'s paired value/index reduction over an 8k vocabulary.
    """
    top = jnp.max(logits, axis=-1, keepdims=True)
    vocab = logits.shape[-1]
    index = jnp.min(jnp.where(logits == top, jnp.arange(vocab), vocab), axis=-1)
    return jnp.minimum(index, vocab - 1).astype(jnp.int32)  # in range even for NaN rows


def _loop(
    body: Callable[[Any], Any],
    carry: Any,
    finished: Callable[[Any], jax.Array],
    windows: Sequence[int],
    grow: Callable[[Any, int], Any] | None,
) -> Any:
    """Run ``body`` while the step ``carry.t`` is below the last window and ``finished`` is
    false, the state ``carry.state`` grown by ``grow`` at each window (if given)."""
    for size in windows:
        if grow is not None:
            carry = carry._replace(state=grow(carry.state, size))
        carry = jax.lax.while_loop(lambda c, size=size: (c.t < size) & ~finished(c), body, carry)
    return carry


class _Greedy(NamedTuple):
    t: jax.Array  # the step to run next
    out: jax.Array  # [B, max_len]
    token: jax.Array  # [B], chosen at step t - 1
    state: Any
    done: jax.Array  # [B]


def greedy_loop(
    step: Step,
    state: Any,
    scores: jax.Array,
    max_len: int,
    *,
    eos_id: int,
    pad_id: int,
    windows: Sequence[int] | None = None,
    grow: Callable[[Any, int], Any] | None = None,
) -> jax.Array:
    """Greedy decoding: the highest-scoring token at every step.

    This is :func:`beam_search_loop` with one beam (either finishing rule), written as its
    own loop because it is much cheaper: one argmax per step on any monotone scores (raw
    logits will do: no log-softmax, no top-k, no reordering of the state).

    Args:
        step: Gives the scores of step ``t`` after the tokens of step ``t - 1``.
        state: The decoder state after step 0's scores were computed.
        scores: [B, vocab] scores of step 0.
        max_len: Most tokens to generate (EOS included).
        eos_id: The end token.
        pad_id: Written after EOS.
        windows: State sizes to grow through (see ``grow``), the last one ``max_len``;
            default ``(max_len,)``.
        grow: ``grow(state, size)`` before the loop of each window, or None.

    Returns:
        [B, max_len] int32: ids, then EOS, then PAD (no EOS if the cap was hit).
    """

    def choose(c: _Greedy, scores: jax.Array) -> _Greedy:
        token = jnp.where(c.done, pad_id, _argmax(scores))
        out = jax.lax.dynamic_update_slice(c.out, token[:, None], (0, c.t))
        return _Greedy(c.t + 1, out, token, c.state, c.done | (token == eos_id))

    def body(c: _Greedy) -> _Greedy:
        scores, state = step(c.state, c.token, c.t)
        return choose(c._replace(state=state), scores)

    batch = scores.shape[0]
    carry = _Greedy(
        jnp.int32(0),
        jnp.full((batch, max_len), pad_id, jnp.int32),
        jnp.full((batch,), pad_id, jnp.int32),
        state,
        jnp.zeros((batch,), bool),
    )
    carry = _loop(
        body, choose(carry, scores), lambda c: jnp.all(c.done), windows or (max_len,), grow
    )
    return carry.out


class _Beams(NamedTuple):
    t: jax.Array  # the step to run next
    seqs: jax.Array  # [B, K, max_len] live beams
    scores: jax.Array  # [B, K] their total log-probabilities
    done: jax.Array  # [B, K] ended ("stay" rule; never set under "collect")
    tokens: jax.Array  # [B * K], chosen at step t - 1
    state: Any  # rows in beam order, [B * K, ...]
    hyps: jax.Array  # [B, K, max_len] finished hypotheses ("collect")
    hyp_scores: jax.Array  # [B, K] their length-normalized scores
    hyp_count: jax.Array  # [B] hypotheses collected


def beam_search_loop(
    step: Step,
    state: Any,
    logprobs: jax.Array,
    max_len: int,
    beam_size: int,
    *,
    eos_id: int,
    pad_id: int,
    rule: FinishRule = "stay",
    start_scores: jax.Array | None = None,
    prompt_len: int = 1,
    length_penalty: float = 1.0,
    n_best: bool = False,
    windows: Sequence[int] | None = None,
    grow: Callable[[Any, int], Any] | None = None,
) -> jax.Array:
    """Beam search over ``step``'s log-probabilities.

    Each step scores every continuation of the ``K`` beams (``beam score + log p``) and keeps
    the best. Scores are length-normalized for ranking as ``score / length **
    length_penalty``, with ``length = prompt_len - 1 + generated tokens`` (EOS included).
    Beams start from one live beam (the others at ``-inf``), so the K beams do not duplicate
    each other. What happens at EOS is the ``rule``:

    * ``"stay"`` (our codec): a finished beam keeps its score and extends only with PAD at no
      cost; beams compete on raw log-probability and are ranked at the end (the first of
      equal scores first). The search stops when every beam has ended.
    * ``"collect"`` (fairseq2's ``StandardBeamSearchAlgorithm``, which SONAR parity needs):
      each step takes the best ``2K`` continuations; those among the best ``K`` that end in
      EOS become hypotheses with their normalized score, the best ``K`` others go on. A
      sentence is done at ``K`` hypotheses; they are ranked by score (the earliest on ties).

    Args:
        step: Gives the log-probabilities of step ``t`` after the tokens of step ``t - 1``.
        state: The decoder state after step 0, ``B * K`` rows (beam ``j`` of sentence ``i``
            at row ``i * K + j``).
        logprobs: [B * K, vocab] log-probabilities of step 0.
        max_len: Most tokens to generate (EOS included).
        beam_size: Beams per sentence (K).
        eos_id: The end token.
        pad_id: Written after EOS.
        rule: "stay" or "collect" (see above).
        start_scores: [B] score of the prompt each sentence starts from (default 0).
        prompt_len: Tokens before the first generated one (counted in the length, less one).
        length_penalty: Exponent of the length normalization.
        n_best: Return all ``K`` final beams, best first, instead of the best one.
        windows: State sizes to grow through (see ``grow``), the last one ``max_len``;
            default ``(max_len,)``.
        grow: ``grow(state, size)`` before the loop of each window, or None.

    Returns:
        [B, max_len] int32 of the best beam: ids, then EOS, then PAD; with ``n_best``
        [B, K, max_len].
    """
    k = beam_size
    rows, vocab = logprobs.shape
    batch = rows // k
    # A beam ended under "stay" may only append PAD, at no cost.
    finished_row = jnp.full((vocab,), -jnp.inf).at[pad_id].set(0.0)
    row_base = (jnp.arange(batch) * k)[:, None]
    batch_idx = jnp.broadcast_to(jnp.arange(batch)[:, None], (batch, k))
    positions = jnp.arange(max_len)

    def stay(c: _Beams, logp: jax.Array) -> tuple[_Beams, jax.Array, jax.Array]:
        logp = jnp.where(c.done[..., None], finished_row, logp)
        scores, flat = jax.lax.top_k((c.scores[..., None] + logp).reshape(batch, k * vocab), k)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        done = jnp.take_along_axis(c.done, parent, axis=1) | (token == eos_id)
        return c._replace(scores=scores, done=done), parent, token

    def collect(c: _Beams, logp: jax.Array) -> tuple[_Beams, jax.Array, jax.Array]:
        cand = (c.scores[..., None] + logp).reshape(batch, k * vocab)
        top_scores, top_idx = jax.lax.top_k(cand, 2 * k)
        parent, token = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
        is_eos = token == eos_id
        # Hypotheses: EOS among the best K, in rank order, until K are collected.
        eos_top = is_eos[:, :k] & jnp.isfinite(top_scores[:, :k]) & (c.hyp_count < k)[:, None]
        slot = c.hyp_count[:, None] + jnp.cumsum(eos_top, axis=1) - 1
        accept = eos_top & (slot < k)
        ended = jnp.take_along_axis(c.seqs, parent[:, :k, None], axis=1)
        ended = jnp.where(positions == c.t, eos_id, ended)
        length = (c.t + prompt_len).astype(jnp.float32)
        norm = top_scores[:, :k] / length**length_penalty
        slot = jnp.where(accept, slot, k)  # out of range: dropped
        c = c._replace(
            hyps=c.hyps.at[batch_idx, slot].set(ended, mode="drop"),
            hyp_scores=c.hyp_scores.at[batch_idx, slot].set(norm, mode="drop"),
            hyp_count=c.hyp_count + jnp.sum(accept, axis=1, dtype=jnp.int32),
        )
        # Live beams: the best K candidates that are not EOS.
        keep = jnp.argsort(is_eos, axis=1, stable=True)[:, :k]
        scores = jnp.take_along_axis(top_scores, keep, axis=1)
        parent = jnp.take_along_axis(parent, keep, axis=1)
        token = jnp.take_along_axis(token, keep, axis=1)
        return c._replace(scores=scores), parent, token

    prune = stay if rule == "stay" else collect

    def choose(c: _Beams, logprobs: jax.Array) -> _Beams:
        c, parent, token = prune(c, logprobs.reshape(batch, k, vocab))
        seqs = jnp.take_along_axis(c.seqs, parent[..., None], axis=1)
        seqs = jnp.where(positions == c.t, token[..., None], seqs)
        order = (row_base + parent).reshape(rows)
        state = jax.tree.map(lambda s: s[order], c.state)
        return c._replace(t=c.t + 1, seqs=seqs, tokens=token.reshape(rows), state=state)

    def body(c: _Beams) -> _Beams:
        logprobs, state = step(c.state, c.tokens, c.t)
        return choose(c._replace(state=state), logprobs)

    def finished(c: _Beams) -> jax.Array:
        return jnp.all(c.done) if rule == "stay" else jnp.all(c.hyp_count >= k)

    start = jnp.zeros((batch,), jnp.float32) if start_scores is None else start_scores
    carry = _Beams(
        t=jnp.int32(0),
        seqs=jnp.full((batch, k, max_len), pad_id, jnp.int32),
        scores=jnp.where(jnp.arange(k) == 0, start[:, None], -jnp.inf),
        done=jnp.zeros((batch, k), bool),
        tokens=jnp.full((rows,), pad_id, jnp.int32),
        state=state,
        hyps=jnp.full((batch, k, max_len), pad_id, jnp.int32),
        hyp_scores=jnp.full((batch, k), -jnp.inf, jnp.float32),
        hyp_count=jnp.zeros((batch,), jnp.int32),
    )
    c = _loop(body, choose(carry, logprobs), finished, windows or (max_len,), grow)
    if rule == "stay":
        lengths = jnp.sum(c.seqs != pad_id, axis=-1).astype(jnp.float32) + (prompt_len - 1)
        seqs, final = c.seqs, c.scores / jnp.maximum(lengths, 1.0) ** length_penalty
    else:
        seqs, final = c.hyps, c.hyp_scores
    ranked = jnp.take_along_axis(seqs, jnp.argsort(-final, axis=-1, stable=True)[..., None], axis=1)
    return ranked if n_best else ranked[:, 0]


def repeat_bias(
    seq: jax.Array, offset: int, t: jax.Array, n: int, vocab: int, *, eos_id: int, pad_id: int
) -> jax.Array:
    """-inf on every token that would repeat an n-gram of the text so far, 0 elsewhere.

    The text so far is ``seq[:, :offset]`` (earlier sentences, each ended by EOS, PAD-filled)
    then ``seq[:, offset : offset + t]``, the ``t`` tokens generated in this sentence. The
    n-gram's first ``n - 1`` tokens are the last ``n - 1`` generated ones, so a sentence may
    start as an earlier one did and is held back only from its ``n``-th token on. EOS is never
    banned (a repeated ending must still be able to end), and PAD never matches, so the
    unwritten tail of ``seq`` and the padding of the history are inert.

    Args:
        seq: [R, S] int32 ids: the history, then this sentence, then PAD.
        offset: Where this sentence starts in ``seq`` (the history's width H).
        t: The number of tokens generated so far (traced).
        n: The n-gram order (>= 2).
        vocab: The vocabulary size V.
        eos_id: The end token.
        pad_id: The padding token.

    Returns:
        [R, V] float32.
    """
    rows, length = seq.shape
    start = offset + t - (n - 1)
    prefix = jax.lax.dynamic_slice(seq, (0, jnp.maximum(start, 0)), (rows, n - 1))
    windows = length - n + 1
    match = jnp.full((rows, windows), start >= offset)  # the prefix is n - 1 generated tokens
    for k in range(n - 1):
        match &= seq[:, k : k + windows] == prefix[:, k : k + 1]
    following = seq[:, n - 1 :]  # [R, windows]: the token after each window's prefix
    match &= (following != pad_id) & (following != eos_id) & (prefix[:, :1] != pad_id)
    ban = jnp.where(match, -jnp.inf, 0.0).astype(jnp.float32)
    return jnp.zeros((rows, vocab), jnp.float32).at[jnp.arange(rows)[:, None], following].min(ban)


class _NoRepeatState(NamedTuple):
    inner: Any  # the wrapped step's state
    seq: jax.Array  # [rows, H + max_len]: the history, then this sentence's tokens, then PAD


def no_repeat_ngrams(
    step: Step,
    state: Any,
    history: jax.Array,
    n: int,
    max_len: int,
    grow: Callable[[Any, int], Any] | None,
    *,
    eos_id: int,
    pad_id: int,
) -> tuple[Step, _NoRepeatState, Callable[[Any, int], Any] | None]:
    """``step`` that never lets a sequence repeat an n-gram of its history or of itself.

    The returned step records the tokens it is fed in its state (which the beam search
    reorders with the beams, as any state) and adds :func:`repeat_bias` to the scores. Step
    0's scores need no ban: a ban starts at the ``n``-th token.

    Args:
        step: The decoder's step.
        state: Its state after step 0.
        history: [rows, H] ids of each row's earlier sentences (see :func:`repeat_bias`).
        n: The n-gram order (>= 2).
        max_len: Most tokens generated.
        grow: The wrapped state's ``grow``, or None.
        eos_id: The end token.
        pad_id: The padding token.

    Returns:
        The wrapped step, its state and its ``grow``.
    """
    if n < 2:
        raise ValueError(f"no_repeat_ngram must be 0 (off) or >= 2, got {n}")
    offset = history.shape[1]
    rows = history.shape[0]
    seq = jnp.concatenate([history, jnp.full((rows, max_len), pad_id, jnp.int32)], axis=1)

    def wrapped(s: _NoRepeatState, tokens: jax.Array, t: jax.Array) -> tuple[jax.Array, Any]:
        seq = jax.lax.dynamic_update_slice(s.seq, tokens[:, None], (0, offset + t - 1))
        scores, inner = step(s.inner, tokens, t)
        bias = repeat_bias(seq, offset, t, n, scores.shape[-1], eos_id=eos_id, pad_id=pad_id)
        return scores + bias, _NoRepeatState(inner, seq)

    wrapped_grow = None
    if grow is not None:

        def wrapped_grow(s: _NoRepeatState, size: int) -> _NoRepeatState:
            return s._replace(inner=grow(s.inner, size))

    return wrapped, _NoRepeatState(state, seq), wrapped_grow


def codec_step(decoder: SentenceDecoder, memories: tuple[Any, ...], *, log_probs: bool) -> Step:
    """Our decoder's ``step``: the token at position ``t``, through the KV caches (the state).

    The scores never pick a forbidden id (PAD, BOS, ``<mask>``, UNK); with ``log_probs`` they
    are log-probabilities (for the beam search), else the logits (enough for greedy).
    """
    bias = _forbidden_bias(decoder.embed.embedding.shape[0])

    def step(caches: Any, tokens: jax.Array, t: jax.Array) -> tuple[jax.Array, Any]:
        logits, caches = decoder.decode_step(tokens[:, None], memories, caches, t)
        scores = logits[:, -1] + bias
        return (jax.nn.log_softmax(scores, axis=-1) if log_probs else scores), caches

    return step


def _codec_start(
    decoder: SentenceDecoder, concepts: jax.Array, windows: Sequence[int], log_probs: bool
) -> tuple[Step, jax.Array, Any]:
    """Our codec's step, step 0's scores (after BOS) and the caches holding BOS."""
    step = codec_step(decoder, decoder.project_memory(concepts), log_probs=log_probs)
    rows = concepts.shape[0]
    bos = jnp.full((rows,), BOS_ID, jnp.int32)
    scores, caches = step(decoder.init_cache(rows, windows[0]), bos, jnp.int32(0))
    return step, scores, caches


def greedy_search(
    decoder: SentenceDecoder,
    concepts: jax.Array,
    max_len: int,
    windows: Sequence[int] | None = None,
    history: jax.Array | None = None,
    no_repeat_ngram: int = 0,
) -> jax.Array:
    """Greedy decoding with our codec (see :func:`greedy_loop`).

    Args:
        decoder: The sentence decoder.
        concepts: [B, D] vectors.
        max_len: Most tokens to generate (EOS included).
        windows: KV-cache sizes to grow through, the last one ``max_len`` (default
            :func:`cache_windows`; the result does not depend on them).
        history: [B, H] ids of the text before each sentence (see :func:`repeat_bias`;
            default none).
        no_repeat_ngram: n >= 2: never repeat an n-gram of the history or of the sentence
            itself (:func:`no_repeat_ngrams`); 0: off.

    Returns:
        [B, max_len] int32: ids, then EOS, then PAD (no EOS if the cap was hit).
    """
    windows = windows or cache_windows(max_len)
    step, scores, caches = _codec_start(decoder, concepts, windows, log_probs=False)
    grow: Callable[[Any, int], Any] | None = grow_caches
    if no_repeat_ngram:
        history = jnp.zeros((concepts.shape[0], 0), jnp.int32) if history is None else history
        step, caches, grow = no_repeat_ngrams(
            step, caches, history, no_repeat_ngram, max_len, grow, eos_id=EOS_ID, pad_id=PAD_ID
        )
    return greedy_loop(
        step, caches, scores, max_len, eos_id=EOS_ID, pad_id=PAD_ID, windows=windows, grow=grow
    )


def beam_search(
    decoder: SentenceDecoder,
    concepts: jax.Array,
    max_len: int,
    beam_size: int,
    length_penalty: float = 1.0,
    n_best: bool = False,
    history: jax.Array | None = None,
    no_repeat_ngram: int = 0,
) -> jax.Array:
    """Beam search with our codec: the "stay" rule of :func:`beam_search_loop`, beams ranked
    by ``log p / length ** length_penalty``. With ``beam_size=1`` this is exactly greedy
    decoding.

    Args:
        decoder: The sentence decoder.
        concepts: [B, D] vectors.
        max_len: Most tokens to generate (EOS included).
        beam_size: Beams per sentence (K).
        length_penalty: Exponent of the length normalization of final scores.
        n_best: Return all ``K`` final beams, best first, instead of the best one.
        history: [B, H] ids of the text before each sentence (see :func:`repeat_bias`;
            default none).
        no_repeat_ngram: n >= 2: no beam repeats an n-gram of the history or of itself
            (:func:`no_repeat_ngrams`); 0: off.

    Returns:
        [B, max_len] int32 of the best beam: ids, then EOS, then PAD; with ``n_best``
        [B, K, max_len].
    """
    windows = cache_windows(max_len)
    rows = jnp.repeat(concepts, beam_size, axis=0)
    step, logprobs, caches = _codec_start(decoder, rows, windows, log_probs=True)
    grow: Callable[[Any, int], Any] | None = grow_caches
    if no_repeat_ngram:
        history = jnp.zeros((concepts.shape[0], 0), jnp.int32) if history is None else history
        step, caches, grow = no_repeat_ngrams(
            step,
            caches,
            jnp.repeat(history, beam_size, axis=0),
            no_repeat_ngram,
            max_len,
            grow,
            eos_id=EOS_ID,
            pad_id=PAD_ID,
        )
    return beam_search_loop(
        step,
        caches,
        logprobs,
        max_len,
        beam_size,
        eos_id=EOS_ID,
        pad_id=PAD_ID,
        length_penalty=length_penalty,
        n_best=n_best,
        windows=windows,
        grow=grow,
    )
