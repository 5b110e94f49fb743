"""The likelihood LCM: the decoder's log-likelihood, frozen scoring, training and resume."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from codec_fixtures import MEMORIZED, overfitted_codec
from conftest import REPO
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache as xla_cache

from encoders.tokenizer import BOS_ID, EOS_ID
from lcm.data.embed import embed_shards
from lcm.data.normalizer import Normalizer
from lcm.data.sentence_targets import SentenceTargetDataConfig, SentenceTargetSource
from lcm.data.shards import ShardWriter, read_shards
from lcm.generate import GenerationConfig, generate_continuations
from lcm.models.config import TransformerConfig
from lcm.models.directory import load_lcm
from lcm.models.generate import generate
from lcm.models.likelihood_lcm import LikelihoodLCM, LikelihoodLCMConfig
from lcm.models.protocols import SamplingOptions
from lcm.nn.frozen import Frozen
from lcm.nn.weights import flat_weights
from lcm.pipeline import NO_REPEAT_NGRAM, Pipeline
from trainers.config import TrainConfig, load_train_config
from trainers.loop import train
from trainers.state import load_trained_model
from trainers.tasks import get_task

STEPS = 30


def reference_log_likelihood(codec, vector: np.ndarray, sentence: str) -> float:
    """Score a sentence one token at a time through the KV-cached decoding path (not the
    teacher-forced pass that ``Codec.log_likelihood`` uses)."""
    decoder = codec.model.decoder
    ids = [*codec.tokenizer.encode([sentence])[0], EOS_ID]
    memories = decoder.project_memory(jnp.asarray(vector)[None])
    caches = decoder.init_cache(1, len(ids) + 1)
    total, previous = 0.0, BOS_ID
    for i, token in enumerate(ids):
        logits, caches = decoder.decode_step(
            jnp.array([[previous]], jnp.int32), memories, caches, jnp.int32(i)
        )
        total += float(jax.nn.log_softmax(logits[0, 0].astype(jnp.float32))[token])
        previous = token
    return total


def test_codec_log_likelihood_matches_incremental_decoding() -> None:
    codec = overfitted_codec()
    vectors = codec.encode(MEMORIZED)
    got = codec.log_likelihood(vectors, MEMORIZED)
    want = [reference_log_likelihood(codec, v, s) for v, s in zip(vectors, MEMORIZED)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The memorized sentences are likely under their own vectors, unlikely under another's.
    assert np.all(got > -1.0)
    assert np.all(codec.log_likelihood(vectors[::-1], MEMORIZED) < got - 3.0)


def test_codec_log_likelihood_rejects_bad_input() -> None:
    codec = overfitted_codec()
    vectors = codec.encode(MEMORIZED[:2])
    with pytest.raises(ValueError, match="2 vectors for 1 sentences"):
        codec.log_likelihood(vectors, MEMORIZED[:1])
    with pytest.raises(ValueError, match="empty or whitespace"):
        codec.log_likelihood(vectors, ["A sentence.", " "])


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Documents of the memorized sentences in cyclic order (each sentence predicts the next
    one), embedded by the tiny codec, with their normalizer; and that codec's directory."""
    root = tmp_path_factory.mktemp("likelihood")
    codec = overfitted_codec()
    codec.save(root / "codec")
    rng = np.random.default_rng(0)
    with ShardWriter(root / "text") as writer:
        for i in range(48):
            start, n = i % len(MEMORIZED), int(rng.integers(3, 7))
            sentences = [MEMORIZED[(start + j) % len(MEMORIZED)] for j in range(n)]
            writer.write(f"doc-{i:03d}", sentences)
    embed_shards(root / "text", root / "concepts", codec, progress=False)
    vectors = np.concatenate([r["embeddings"] for r in read_shards(root / "concepts")])
    Normalizer.fit(vectors).save(root / "concepts" / "normalizer.npz")
    xla_cache.reset_cache()  # the trainer runs below share compiled steps through a cache
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = [getattr(jax.config, name) for name in names]
    jax.config.update(names[0], str(root / "xla-cache"))
    jax.config.update(names[1], 0.0)
    yield {"root": root, "codec": root / "codec", "concepts": root / "concepts"}
    for name, value in zip(names, old):
        jax.config.update(name, value)
    xla_cache.reset_cache()


def tiny_config(data: dict[str, Path], run_dir: Path, *overrides: str) -> TrainConfig:
    c = data["concepts"]
    return load_train_config(
        REPO / "configs" / "lcm" / "likelihood_lcm_tiny.yaml",
        [
            f"run_dir={run_dir}",
            f"steps={STEPS}",
            "log_every=1",
            f"model.codec={data['codec']}",
            f"data.shards={c}",
            f"data.normalizer={c / 'normalizer.npz'}",
            *overrides,
        ],
    )


def test_targets_are_the_next_sentences(fixture_data: dict[str, Path]) -> None:
    codec = overfitted_codec()
    c = fixture_data["concepts"]
    cfg = SentenceTargetDataConfig(
        source="shards", shards=str(c), normalizer=str(c / "normalizer.npz"), max_seq_len=16,
        valid_fraction=0.0, targets_per_row=4, target_tokens=24,
    )  # fmt: skip
    source = SentenceTargetSource(cfg, tokenize=codec.target_ids, batch_size=4, seed=0)
    # Targets are cut to data.target_tokens ids, as the table stores them.
    texts = {tuple(ids): s for s, ids in zip(MEMORIZED, codec.target_ids(MEMORIZED, 24))}
    texts[tuple(codec.target_ids(["End of text."], 24)[0])] = "End of text."
    vectors = dict(zip([*MEMORIZED, "End of text."], codec.encode([*MEMORIZED, "End of text."])))
    norm = Normalizer.load(c / "normalizer.npz")
    for step in range(3):
        batch = source.batch(step)
        again = source.batch(step)
        assert all(np.array_equal(batch[k], again[k]) for k in batch)  # pure in the step
        for row in range(4):
            for pos, ids in zip(batch["target_positions"][row], batch["target_tokens"][row]):
                if ids[0] == 0:
                    continue
                sentence = texts[tuple(int(x) for x in ids if x)]
                # The target is the sentence whose concept sits at the next position.
                np.testing.assert_allclose(
                    norm.denormalize(batch["concepts"][row, pos + 1]), vectors[sentence],
                    atol=1e-4,
                )  # fmt: skip
                assert batch["segment_ids"][row, pos + 1] == batch["segment_ids"][row, pos]


@pytest.fixture(scope="module")
def tiny_run(fixture_data: dict[str, Path]) -> Path:
    run_dir = fixture_data["root"] / "run"
    train(tiny_config(fixture_data, run_dir), progress=False)
    return run_dir


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if line.strip()]


def test_loss_falls_and_the_decoder_stays_frozen(
    tiny_run: Path, fixture_data: dict[str, Path]
) -> None:
    got = losses(tiny_run)
    assert len(got) == STEPS and np.mean(got[-5:]) < 0.7 * np.mean(got[:5]), got
    _, model, step = load_trained_model(tiny_run)
    assert step == STEPS

    # The decoder is no parameter (no gradient, no optimizer state) and is bit-identical.
    def names(state: nnx.State) -> set[str]:
        return {"/".join(map(str, path)) for path, _ in nnx.to_flat_state(state)}

    params, frozen = names(nnx.state(model, nnx.Param)), names(nnx.state(model, Frozen))
    assert params and frozen and not params & frozen
    assert all(name.startswith("scorer/") for name in frozen)
    trained = flat_weights(model)
    codec_decoder = flat_weights(overfitted_codec().model.decoder)
    assert {f"scorer/decoder/{name}" for name in codec_decoder} <= frozen
    for name, value in codec_decoder.items():
        assert np.array_equal(trained[f"scorer/decoder/{name}"], value), name
    norm = Normalizer.load(fixture_data["concepts"] / "normalizer.npz")
    assert np.array_equal(trained["scorer/center"], norm.center)
    # ... while the backbone trained.
    untrained = flat_weights(LikelihoodLCM(model_cfg(), model.concept_dim, nnx.Rngs(0)))
    assert not np.array_equal(trained["postnet/kernel"], untrained["postnet/kernel"])


def model_cfg() -> LikelihoodLCMConfig:
    return LikelihoodLCMConfig(
        d_model=32, decoder=TransformerConfig(num_layers=2, num_heads=2, mlp_dim=64)
    )


def test_resume_is_bit_identical(
    tiny_run: Path, fixture_data: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copytree(tiny_run, tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / str(STEPS))
    resumed = train(tiny_config(fixture_data, tmp_path / "cut"), progress=False)
    assert resumed.resumed_from == STEPS - 10 and resumed.step == STEPS
    assert losses(tmp_path / "cut") == losses(tiny_run)


def test_export_holds_the_backbone_only_and_generates(
    tiny_run: Path, fixture_data: dict[str, Path], tmp_path: Path
) -> None:
    cfg, trained, _ = load_trained_model(tiny_run)
    get_task("likelihood_lcm").export(trained, cfg.model, cfg.data, str(tmp_path / "model"))
    opened = load_lcm(tmp_path / "model")
    assert opened.config.family == "likelihood_lcm" and opened.model.scorer is None
    assert not any(k.startswith("scorer/") for k in flat_weights(opened.model))
    exported = flat_weights(opened.model)
    assert all(np.array_equal(v, flat_weights(trained)[k]) for k, v in exported.items())
    # Generation from the exported model: the shared generator, with its KV cache.
    codec = overfitted_codec()
    prompt = opened.normalizer.normalize(codec.encode(MEMORIZED[:2]))[None]
    out = generate(opened.model, jnp.asarray(prompt), 3, jax.random.key(0), SamplingOptions())
    assert out.concepts.shape == (1, 3, codec.dim)


def test_the_pipeline_stops_a_likelihood_lcm_on_the_decoded_text(
    tiny_run: Path, tmp_path: Path
) -> None:

    cfg, trained, _ = load_trained_model(tiny_run)
    get_task("likelihood_lcm").export(trained, cfg.model, cfg.data, str(tmp_path / "model"))
    pipe = Pipeline(overfitted_codec(), load_lcm(tmp_path / "model"), reencode=False)
    assert pipe._text_stops and pipe._config(3, {}).repetition_threshold is None
    cut = pipe._until_text_stop
    a, b = "The cat sat on the mat.", "Install the package with pip."
    assert cut([a, b, "End of text.", a]) == [a, b]  # the end-of-text sentence
    assert cut([a, "Install the package End of text.", b]) == [a, "Install the package"]
    assert cut([a, a, b]) == [a]  # an exact repeat
    assert cut([a, "So the cat sat on the mat again.", b]) == [a]  # mostly repeated 4-grams
    assert cut([b], previous=b) == []
    outs = pipe.summarize_many(MEMORIZED[:3], 4) + pipe.expand_many(MEMORIZED[:2], 6)
    assert all("End of text." not in out for out in outs)


def test_init_from_a_directory_without_the_decoder_keeps_the_codecs(
    tiny_run: Path, fixture_data: dict[str, Path], tmp_path: Path
) -> None:
    cfg, trained, _ = load_trained_model(tiny_run)
    get_task("likelihood_lcm").export(trained, cfg.model, cfg.data, str(tmp_path / "model"))
    run = tmp_path / "run"
    train(tiny_config(fixture_data, run, "steps=1", f"init_from={tmp_path / 'model'}"))
    _, model, _ = load_trained_model(run)
    weights = flat_weights(model)
    for name, value in flat_weights(overfitted_codec().model.decoder).items():
        assert np.array_equal(weights[f"scorer/decoder/{name}"], value), name


def test_the_pipeline_feeds_a_likelihood_lcm_the_encodings_of_its_sentences(
    tiny_run: Path, tmp_path: Path
) -> None:

    cfg, trained, _ = load_trained_model(tiny_run)
    get_task("likelihood_lcm").export(trained, cfg.model, cfg.data, str(tmp_path / "model"))
    codec, lcm = overfitted_codec(), load_lcm(tmp_path / "model")
    pipe = Pipeline(codec, lcm)
    assert pipe.reencode  # the family's default; the cosine stops hold on real concepts
    assert pipe._config(3, {}).repetition_threshold == GenerationConfig().repetition_threshold
    # Reference, written out: predict, decode, encode, append; three times.
    norm = lcm.normalizer
    context = np.asarray(norm.normalize(codec.encode(MEMORIZED[:2])), np.float32)
    once = GenerationConfig(max_sentences=1, stop_threshold=1.0, repetition_threshold=None)
    want = []
    for _ in range(3):
        (step,) = generate_continuations(lcm.model, [context], once)
        (sentence,) = codec.decode(np.asarray(norm.denormalize(step.concepts), np.float32))
        want.append(sentence)
        encoded = np.asarray(norm.normalize(codec.encode([sentence])), np.float32)
        context = np.concatenate([context, encoded])
    got = pipe.generate(MEMORIZED[:2], 3, stop_threshold=1.0, repetition_threshold=None)
    assert got == want
    # Without re-encoding the model reads its own predictions, and the text differs.
    plain = Pipeline(codec, lcm, reencode=False)
    assert plain.generate(MEMORIZED[:2], 3) != want
    # The stream yields what the batch call returns.
    streamed = list(pipe.stream("expand", MEMORIZED[0], 4))
    assert " ".join(streamed) == pipe.expand(MEMORIZED[0], 4)


class _PlainDecodeCodec:
    """A codec whose decode takes vectors only (as the SONAR port's does not block n-grams)."""

    def __init__(self, codec):
        self.codec, self.dim = codec, codec.dim

    def encode(self, sentences):
        return self.codec.encode(sentences)

    def decode(self, vectors):
        return self.codec.decode(vectors)


@pytest.mark.parametrize("reencode", [True, False])
def test_the_pipeline_blocks_ngrams_of_the_sentences_before(
    tiny_run: Path, tmp_path: Path, reencode: bool
) -> None:

    cfg, trained, _ = load_trained_model(tiny_run)
    get_task("likelihood_lcm").export(trained, cfg.model, cfg.data, str(tmp_path / "model"))
    codec, lcm = overfitted_codec(), load_lcm(tmp_path / "model")
    n, steps = 2, 4
    pipe = Pipeline(codec, lcm, reencode=reencode, no_repeat_ngram=n)
    free = GenerationConfig(max_sentences=1, stop_threshold=1.0, repetition_threshold=None)
    norm = lcm.normalizer
    context = np.asarray(norm.normalize(codec.encode(MEMORIZED[:2])), np.float32)
    # Reference, written out: each sentence decoded with the ones before it as history.
    want: list[str] = []
    if reencode:
        for _ in range(steps):
            (step,) = generate_continuations(lcm.model, [context], free)
            vector = np.asarray(norm.denormalize(step.concepts), np.float32)
            want += codec.decode(vector, no_repeat_ngram=n, history=[list(want)])
            encoded = np.asarray(norm.normalize(codec.encode(want[-1:])), np.float32)
            context = np.concatenate([context, encoded])
    else:
        (whole,) = generate_continuations(lcm.model, [context], replace(free, max_sentences=steps))
        for vector in np.asarray(norm.denormalize(whole.concepts), np.float32):
            want += codec.decode(vector[None], no_repeat_ngram=n, history=[list(want)])
    options = {"stop_threshold": 1.0, "repetition_threshold": None}
    got = pipe.generate(MEMORIZED[:2], steps, **options)
    assert got == want
    plain = Pipeline(codec, lcm, reencode=reencode, no_repeat_ngram=0).generate(
        MEMORIZED[:2], steps, **options
    )
    assert plain != got  # the tiny model repeats itself; blocking changed its text
    # The stream blocks as the batch call does.
    streamed = list(pipe.stream("expand", MEMORIZED[0], 4))
    assert " ".join(streamed) == pipe.expand(MEMORIZED[0], 4)
    # A codec whose decode cannot block: off by default, an error when asked for.
    assert Pipeline(_PlainDecodeCodec(codec), lcm).no_repeat_ngram == 0
    assert Pipeline(codec, lcm).no_repeat_ngram == NO_REPEAT_NGRAM
    with pytest.raises(ValueError, match="cannot block repeated n-grams"):
        Pipeline(_PlainDecodeCodec(codec), lcm, no_repeat_ngram=3)
    with pytest.raises(ValueError, match="no_repeat_ngram must be 0"):
        Pipeline(codec, lcm, no_repeat_ngram=1)
