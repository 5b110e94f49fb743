"""N-gram blocking in the codec's decoding: ``repeat_bias`` and ``decode(no_repeat_ngram=...)``,
checked against plain-Python references (a ban set built by list slicing, and greedy decoding
by teacher-forced full passes without a KV cache)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from codec_fixtures import MEMORIZED, overfitted_codec

from encoders.codec import HISTORY_WIDTHS, Codec
from encoders.generate import _FORBIDDEN, beam_search, greedy_search, repeat_bias
from encoders.tokenizer import BOS_ID, EOS_ID, PAD_ID

MAX_LEN = 40


@pytest.fixture(scope="module")
def codec() -> Codec:
    return overfitted_codec()


def banned_by_reference(history: list[int], generated: list[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram of ``history + generated`` whose first n - 1
    tokens are the last n - 1 of ``generated`` (EOS may always follow)."""
    if len(generated) < n - 1:
        return set()
    text = history + generated
    prefix = text[len(text) - (n - 1) :]
    return {
        text[k + n - 1]
        for k in range(len(text) - n + 1)
        if text[k : k + n - 1] == prefix and text[k + n - 1] != EOS_ID
    }


def ngrams(ids: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[k : k + n]) for k in range(len(ids) - n + 1)]


def split_sentences(history: list[int]) -> list[list[int]]:
    out, cur = [], []
    for t in history:
        if t == EOS_ID:
            out.append(cur)
            cur = []
        elif t != PAD_ID:
            cur.append(t)
    return out


@pytest.mark.parametrize("n", [2, 3, 4])
def test_repeat_bias_bans_what_the_reference_bans(n: int) -> None:
    rng = np.random.default_rng(n)
    vocab, rows, width, length = 8, 6, 12, 24
    # A small alphabet makes repeats frequent; ids 4.. stand for text (0-3 are special).
    history = np.full((rows, width), PAD_ID, np.int32)
    lists = []
    for r in range(rows):
        # Row 0 has no history, row 1 one sentence, the others two (each ended by EOS, as
        # Codec._history_ids writes them).
        ids: list[int] = []
        for _ in range(min(r, 2)):
            ids += [*rng.integers(4, vocab, size=int(rng.integers(0, 5))), EOS_ID]
        history[r, : len(ids)] = ids
        lists.append([int(i) for i in ids])
    generated = rng.integers(4, vocab, size=(rows, length)).astype(np.int32)
    fn = jax.jit(repeat_bias, static_argnames=("offset", "n", "vocab", "eos_id", "pad_id"))
    bans = 0
    for t in range(length):
        seq = np.concatenate([history, np.where(np.arange(length) < t, generated, PAD_ID)], 1)
        bias = np.asarray(
            fn(seq, offset=width, t=t, n=n, vocab=vocab, eos_id=EOS_ID, pad_id=PAD_ID)
        )
        for r in range(rows):
            expected = banned_by_reference(lists[r], [int(i) for i in generated[r, :t]], n)
            assert set(np.flatnonzero(np.isinf(bias[r]))) == expected, (t, r)
            assert np.all(bias[r][~np.isinf(bias[r])] == 0)
            bans += len(expected)
    assert bans > 10  # the data exercised the ban


def reference_greedy(codec: Codec, vec: np.ndarray, history: list[int], n: int) -> list[int]:
    """Greedy decoding by full teacher-forced passes (no KV cache), banning in Python."""
    decoder = codec.model.decoder
    forward = jax.jit(lambda tokens, v: decoder(tokens, v)[:, -1])
    out: list[int] = []
    while len(out) < MAX_LEN:
        logits = np.array(forward(jnp.asarray([[BOS_ID, *out]]), vec[None]))[0]
        logits[list(_FORBIDDEN)] = -np.inf
        logits[sorted(banned_by_reference(history, out, n))] = -np.inf
        token = int(np.argmax(logits))
        out.append(token)
        if token == EOS_ID:
            break
    return out


def test_blocked_greedy_equals_the_uncached_python_reference(codec: Codec) -> None:
    n = 3
    # Random vectors make a tiny codec loop: unblocked it repeats itself, so the ban acts.
    vecs = np.random.default_rng(3).normal(size=(4, 32)).astype(np.float32) * 3
    history_text = [[], MEMORIZED[:1], MEMORIZED[1:3], MEMORIZED[3:6]]
    hist = codec._history_ids(history_text, len(vecs))
    decoder = codec.model.decoder
    plain = np.asarray(jax.jit(lambda v: greedy_search(decoder, v, MAX_LEN))(vecs))
    blocked = np.asarray(
        jax.jit(lambda v, h: greedy_search(decoder, v, MAX_LEN, history=h, no_repeat_ngram=n))(
            vecs, hist
        )
    )
    repeats = 0
    for r in range(len(vecs)):
        history = [int(t) for t in hist[r] if t != PAD_ID]
        row = [int(t) for t in blocked[r]]
        row = row[: row.index(EOS_ID) + 1] if EOS_ID in row else row
        assert row == reference_greedy(codec, vecs[r], history, n)
        ids = [t for t in row if t != EOS_ID]
        seen = set(g for s in split_sentences(history) for g in ngrams(s, n))
        assert not seen & set(ngrams(ids, n)) and len(set(ngrams(ids, n))) == len(ngrams(ids, n))
        unblocked = [int(t) for t in plain[r] if t not in (PAD_ID, EOS_ID)]
        repeats += len(ngrams(unblocked, n)) - len(set(ngrams(unblocked, n)))
    assert repeats > 0  # without the ban the same vectors repeat n-grams


def test_blocked_beams_repeat_nothing_and_one_beam_is_blocked_greedy(codec: Codec) -> None:
    n = 3
    vecs = np.random.default_rng(4).normal(size=(3, 32)).astype(np.float32) * 3
    hist = codec._history_ids([MEMORIZED[:2], [], MEMORIZED[2:5]], len(vecs))
    decoder = codec.model.decoder

    def beams(k: int) -> np.ndarray:
        fn = jax.jit(
            lambda v, h: beam_search(
                decoder, v, MAX_LEN, k, n_best=True, history=h, no_repeat_ngram=n
            )
        )
        return np.asarray(fn(vecs, hist))

    greedy = jax.jit(lambda v, h: greedy_search(decoder, v, MAX_LEN, history=h, no_repeat_ngram=n))
    np.testing.assert_array_equal(beams(1)[:, 0], greedy(vecs, hist))
    for r, rows in enumerate(beams(4)):
        history = [int(t) for t in hist[r] if t != PAD_ID]
        seen = set(g for s in split_sentences(history) for g in ngrams(s, n))
        for row in rows:
            ids = [int(t) for t in row if t not in (PAD_ID, EOS_ID)]
            grams = ngrams(ids, n)
            assert not seen & set(grams) and len(set(grams)) == len(grams)


def test_decode_option_and_its_history(codec: Codec) -> None:
    vecs = codec.encode(MEMORIZED)
    # Memorized sentences have no repeated 3-gram: blocking with no history changes nothing.
    assert codec.decode(vecs, no_repeat_ngram=3) == MEMORIZED
    assert codec.decode(vecs, beam_size=3, no_repeat_ngram=3) == MEMORIZED
    # With itself as history a sentence cannot come back whole.
    again = codec.decode(vecs[:2], no_repeat_ngram=3, history=[[MEMORIZED[0]], [MEMORIZED[1]]])
    assert again[0] != MEMORIZED[0] and again[1] != MEMORIZED[1]
    # An unrelated history leaves a sentence alone.
    other = codec.decode(vecs[:1], no_repeat_ngram=3, history=[[MEMORIZED[3]]])
    assert other == MEMORIZED[:1]
    ids = codec._history_ids([["a b"] * 400, []], 2)
    assert ids.shape == (2, HISTORY_WIDTHS[-1]) and (ids[1] == PAD_ID).all()
    assert ids[0, -1] == EOS_ID  # the most recent tokens are kept


@pytest.mark.parametrize(
    "options, match",
    [
        ({"no_repeat_ngram": 1}, "no_repeat_ngram must be 0"),
        ({"no_repeat_ngram": -2}, "no_repeat_ngram must be 0"),
        ({"no_repeat_ngram": True}, "no_repeat_ngram must be 0"),
        ({"no_repeat_ngram": 3, "history": [["x"]]}, "one list of sentences per vector"),
        ({"no_repeat_ngram": 3, "history": ["x", "y"]}, r"history\[0\] is a str"),
    ],
)
def test_decode_rejects_bad_blocking_options(codec: Codec, options, match) -> None:
    vecs = codec.encode(MEMORIZED[:2])
    with pytest.raises(ValueError, match=match):
        codec.decode(vecs, **options)
