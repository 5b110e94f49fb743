"""The high-level inference API: text in, text out, everything between in concept space.

::

    from lcm import Pipeline

    pipe = Pipeline.load("default")  # the shipped codec + LCM; no network, no ../shared
    pipe.summarize(document)  # -> str
    pipe.expand("interactive viewer for large log files")  # -> str
    pipe.generate(["First sentence.", "Second one."])  # -> list[str]

Each call segments its text into sentences, encodes them with the codec into concepts,
normalizes them, lets the LCM continue (after a task marker concept for summarize/expand,
see :mod:`lcm.data.tasks`) until the end-of-text concept, and decodes the generated concepts
back into sentences.

With ``reencode`` (the default of the families trained through the decoder), each generated
concept is decoded at once and the encoding of its sentence, not the prediction, continues
the context: the model then reads real sentences' concepts, as in training.

Input rules: text must be ``str`` (bytes raise ``TypeError``: decode them first); an empty or
whitespace-only text raises ``ValueError``; a text longer than the model's context is cut
(with a ``UserWarning``): summarize and expand keep its first sentences, generate keeps the
last ones.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import encoders
from encoders.codec import check_decoding
from lcm.eval.tasks import ngrams, words
from lcm.generate import (
    Continuation,
    GenerationConfig,
    generate_continuations,
    stream_continuation,
)
from lcm.models.directory import LCMModel, load_lcm
from lcm.models.protocols import (
    EXPAND_SENTENCES,
    GENERATE_SENTENCES,
    MAX_SENTENCES,
    SUMMARIZE_SENTENCES,
    check_max_sentences,
)
from lcm.text.segment import text_sentences

DEFAULT_DIR = Path(__file__).resolve().parent / "default"
CODEC_SUBDIR = "codec"  # an LCM directory may carry the codec it was trained with
# A text-stopping family ends a document at a sentence whose word 4-grams mostly (this share)
# occurred earlier in it: the text-level twin of the cosine repetition stop.
REPEAT_STOP = 0.5
MAX_SENTENCE_CHARS = 256  # the segmenter's cap (the codec's training sentences were cut so)
# The n-gram order that decoding blocks by default: no sentence repeats a token n-gram of the
# sentences generated before it in the same text (``Codec.decode(no_repeat_ngram=...)``).
NO_REPEAT_NGRAM = 0


def _sentences(text: Any, what: str) -> list[str]:
    """The sentences of ``text`` (see the module docstring for the rules)."""
    if isinstance(text, (bytes, bytearray)):
        raise TypeError(f"{what} must be str, got bytes: decode it first (e.g. .decode('utf-8'))")
    if not isinstance(text, str):
        raise TypeError(f"{what} must be str, got {type(text).__name__}")
    sentences = text_sentences(text, MAX_SENTENCE_CHARS)
    if not sentences:
        raise ValueError(f"{what} is empty (no sentence in it)")
    return sentences


class Pipeline:
    """A codec and an LCM working together.

    Args:
        codec: The sentence codec (``encoders.Codec``) whose space the LCM was trained in.
        lcm: The opened LCM model directory.
        generation: Default generation options (``max_sentences`` is set per call).
        beam_size: How the codec decodes the generated concepts: 1 greedy, more beam search.
        rerank: Decode each concept into the beam whose encoding lies nearest to it (see
            ``Codec.decode``; needs ``beam_size > 1``).
        reencode: Feed back the encoding of each generated concept's decoded sentence
            instead of the concept (see the module docstring). None: the model family's
            choice (``feeds_back_sentences``; on for the likelihood LCM, off otherwise).
        no_repeat_ngram: Decode each generated sentence without any token n-gram of this
            order that the text's earlier generated sentences hold (0: off; else >= 2).
            None: :data:`NO_REPEAT_NGRAM` where the codec's decode supports blocking, else 0.

    Raises:
        ValueError: The codec and the LCM live in different spaces, or bad decoding options.
    """

    def __init__(
        self,
        codec: Any,
        lcm: LCMModel,
        generation: GenerationConfig | None = None,
        *,
        beam_size: int = 1,
        rerank: bool = False,
        reencode: bool | None = None,
        no_repeat_ngram: int | None = None,
    ):
        check_decoding(beam_size, rerank, no_repeat_ngram or 0)
        if codec.dim != lcm.config.concept_dim:
            raise ValueError(
                f"codec vectors have D={codec.dim} but the LCM expects "
                f"D={lcm.config.concept_dim}: they come from different concept spaces"
            )
        self.codec = codec
        self.lcm = lcm
        self.generation = generation or GenerationConfig()
        self.beam_size = beam_size
        self.rerank = rerank
        blocks = _decode_blocks(codec)
        if no_repeat_ngram is None:
            no_repeat_ngram = NO_REPEAT_NGRAM if blocks else 0
        elif no_repeat_ngram and not blocks:
            raise ValueError(
                f"no_repeat_ngram={no_repeat_ngram}: {type(codec).__name__}.decode cannot block "
                "repeated n-grams; pass no_repeat_ngram=0"
            )
        self.no_repeat_ngram = no_repeat_ngram
        self._eot = lcm.normalizer.normalize(lcm.eot)
        self._markers: dict[str, np.ndarray] = {}
        # Families trained through the decoder end a document where their concept *decodes*
        # to the end-of-text sentence (or repeats the previous sentence): their predictions
        # need not lie near the end-of-text concept, nor far from each other, by cosine.
        self._text_stops = bool(getattr(lcm.model, "stops_on_decoded_text", False))
        if reencode is None:
            reencode = bool(getattr(lcm.model, "feeds_back_sentences", False))
        self.reencode = reencode

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike[str] = "default",
        *,
        codec: str | os.PathLike[str] | None = None,
        generation: GenerationConfig | None = None,
        beam_size: int = 1,
        rerank: bool = False,
        reencode: bool | None = None,
        no_repeat_ngram: int | None = None,
    ) -> Pipeline:
        """Open the shipped pipeline (``"default"``) or an LCM model directory.

        Args:
            name_or_path: "default" or an LCM model directory (``lcm export`` output).
            codec: The codec to use: a codec directory or "default". Default: the
                directory's own ``codec/`` subdirectory if it has one, else the shipped codec.
            generation: Default generation options.
            beam_size: How concepts are decoded (see :class:`Pipeline`).
            rerank: Rerank the beams by their encodings (see :class:`Pipeline`).
            reencode: Feed back the decoded sentences' encodings (see :class:`Pipeline`).
            no_repeat_ngram: Block repeated n-grams in decoding (see :class:`Pipeline`).

        Raises:
            FileNotFoundError: The model (or codec) is missing.
        """
        check_decoding(beam_size, rerank, no_repeat_ngram or 0)  # before anything is loaded
        if str(name_or_path) == "default":
            if not (DEFAULT_DIR / "config.yaml").is_file():
                raise FileNotFoundError(
                    f"the default LCM is not shipped in this installation ({DEFAULT_DIR}); "
                    "pass an LCM model directory (`lcm export RUN_DIR OUT_DIR`)"
                )
            path = DEFAULT_DIR
        else:
            path = Path(name_or_path).expanduser()
        lcm = load_lcm(path)
        if codec is None:
            codec = path / CODEC_SUBDIR if (path / CODEC_SUBDIR).is_dir() else "default"
        return cls(
            encoders.load(codec),
            lcm,
            generation,
            beam_size=beam_size,
            rerank=rerank,
            reencode=reencode,
            no_repeat_ngram=no_repeat_ngram,
        )

    # -- public API -------------------------------------------------------------------------

    def summarize(
        self, document: str, max_sentences: int = SUMMARIZE_SENTENCES, **options: Any
    ) -> str:
        """A summary of ``document``: its sentences, the summary marker, then generation.

        Args:
            document: The text (paragraphs separated by blank lines are fine).
            max_sentences: Longest summary in sentences.
            **options: :class:`GenerationConfig` fields for this call (e.g. ``seed``).
        """
        return self.summarize_many([document], max_sentences, **options)[0]

    def expand(self, summary: str, max_sentences: int = EXPAND_SENTENCES, **options: Any) -> str:
        """A document expanding ``summary`` (one or a few sentences)."""
        return self.expand_many([summary], max_sentences, **options)[0]

    def generate(
        self, prefix: Sequence[str], max_sentences: int = GENERATE_SENTENCES, **options: Any
    ) -> list[str]:
        """Continue a document given as its sentences; returns the new sentences only.

        Raises:
            TypeError: ``prefix`` is a single str (pass a list of sentences).
            ValueError: ``prefix`` is empty or holds an empty sentence.
        """
        if isinstance(prefix, (str, bytes)):
            raise TypeError("generate() takes a list of sentences, not a single string")
        sentences = [s.strip() if isinstance(s, str) else s for s in prefix]
        if not sentences:
            raise ValueError("generate() needs at least one sentence to continue")
        config = self._config(max_sentences, options)
        room = self.lcm.config.max_seq_len - max_sentences - 1
        if len(sentences) > room:
            warnings.warn(
                f"the prefix has {len(sentences)} sentences, the model's context holds {room} "
                f"more with {max_sentences} to generate: keeping the last {room}",
                stacklevel=2,
            )
            sentences = sentences[-room:]
        prompt = self._normalized(self.codec.encode(sentences))
        continuations = generate_continuations(
            self.lcm.model, [prompt], config, self._eot, self._feedback()
        )
        return self._decode(continuations)[0]

    def stream(
        self, task: str, text: str, max_sentences: int | None = None, **options: Any
    ) -> Iterator[str]:
        """Run ``task`` ("summarize" or "expand") on ``text``, one sentence at a time.

        Each sentence is yielded as soon as it is generated and decoded; together they are
        what :meth:`summarize` / :meth:`expand` return (``max_sentences``: theirs by default).
        """
        if max_sentences is None:
            max_sentences = MAX_SENTENCES.get(task, EXPAND_SENTENCES)  # _task_prompts checks
        config = self._config(max_sentences, options)
        (prompt,) = self._task_prompts(task, [text], max_sentences)
        # What was yielded: the text stops and n-gram blocking look at all of it.
        history: list[str] = []
        feedback = self._feedback()
        for concept in stream_continuation(self.lcm.model, prompt, config, self._eot, feedback):
            if feedback is not None:
                sentence = feedback.sentences[0]
            else:
                vector = self.lcm.normalizer.denormalize(concept[None])
                sentence = self.decode(np.asarray(vector, np.float32), [history])[0]
            if self._text_stops:
                kept = self._until_text_stop([*history, sentence])
                if len(kept) == len(history):
                    return
                if kept[-1] != sentence:  # the end-of-text sentence was decoded inside it
                    yield kept[-1]
                    return
            history.append(sentence)
            yield sentence

    def summarize_many(
        self, documents: Sequence[str], max_sentences: int = SUMMARIZE_SENTENCES, **options: Any
    ) -> list[str]:
        """:meth:`summarize` for several documents, generated together in batches."""
        return self._task("summarize", documents, max_sentences, options)

    def expand_many(
        self, summaries: Sequence[str], max_sentences: int = EXPAND_SENTENCES, **options: Any
    ) -> list[str]:
        """:meth:`expand` for several summaries, generated together in batches."""
        return self._task("expand", summaries, max_sentences, options)

    def decode(
        self, vectors: np.ndarray, history: Sequence[Sequence[str]] | None = None
    ) -> list[str]:
        """Sentences of concept vectors [N, D] (codec space), with this pipeline's decoding.

        Args:
            vectors: [N, D] concepts.
            history: With n-gram blocking on, the sentences that precede each vector's in
                its text (N lists); None: none do.
        """
        options: dict[str, Any] = {}
        if self.beam_size > 1:  # any codec with a plain decode(vectors) will do otherwise
            options.update(beam_size=self.beam_size, rerank=self.rerank)
        if self.no_repeat_ngram:
            options.update(no_repeat_ngram=self.no_repeat_ngram, history=history)
        return self.codec.decode(vectors, **options)

    # -- internals --------------------------------------------------------------------------

    def _config(self, max_sentences: int, options: dict[str, Any]) -> GenerationConfig:
        max_sentences = check_max_sentences(max_sentences)
        config = dataclasses.replace(self.generation, max_sentences=max_sentences, **options)
        if self._text_stops and not self.reencode:
            # See __init__: the predictions' cosines mean little, the decoded text decides
            # (_until_text_stop). Re-encoded sentences are real concepts: their cosines hold.
            config = dataclasses.replace(config, stop_threshold=1.0, repetition_threshold=None)
        return config

    def _feedback(self) -> _Reencoder | None:
        return _Reencoder(self) if self.reencode else None

    def _until_text_stop(self, sentences: list[str], previous: str | None = None) -> list[str]:
        """``sentences`` up to the first that is (or ends in) the end-of-text sentence, or
        that mostly repeats the text before it: at least :data:`REPEAT_STOP` of its word
        4-grams already occurred (``previous`` precedes the first sentence)."""
        eot = self.lcm.config.eot_text.strip()
        out: list[str] = []
        seen = set(ngrams(words(previous), 4)) if previous else set()
        for sentence in sentences:
            text = sentence.strip()
            grams = ngrams(words(text), 4)
            repeats = bool(grams) and sum(g in seen for g in grams) >= REPEAT_STOP * len(grams)
            if text == eot or text == previous or repeats:
                break
            if text.endswith(eot):  # a sentence and the end of the text in one concept
                head = text[: -len(eot)].strip()
                if head and head != previous:
                    out.append(head)
                break
            out.append(sentence)
            previous = text
            seen.update(grams)
        return out

    def _normalized(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(self.lcm.normalizer.normalize(vectors), np.float32)

    def _marker(self, task: str) -> np.ndarray:
        if task not in self.lcm.config.markers:
            raise ValueError(
                f"{self.lcm.path} was not trained for {task!r} (its tasks: "
                f"{sorted(self.lcm.config.markers) or 'none'})"
            )
        if task not in self._markers:
            vector = self.codec.encode([self.lcm.config.markers[task]])
            self._markers[task] = self._normalized(vector)[0]
        return self._markers[task]

    def _task_prompts(
        self, task: str, texts: Sequence[str], max_sentences: int
    ) -> list[np.ndarray]:
        """Normalized prompts: each text's sentences (cut to the context), then the marker."""
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"{task}_many() takes a list of texts, not a single string")
        marker = self._marker(task)
        room = self.lcm.config.max_seq_len - max_sentences - 2  # marker and end of text
        if room < 1:
            raise ValueError(
                f"max_sentences={max_sentences} leaves no room for input in the model's "
                f"context of {self.lcm.config.max_seq_len} concepts"
            )
        inputs = []
        for i, text in enumerate(texts):
            sentences = _sentences(text, f"{task} input {i}" if len(texts) > 1 else "the input")
            if len(sentences) > room:
                warnings.warn(
                    f"{task} input {i} has {len(sentences)} sentences; the model's context "
                    f"holds {room} with {max_sentences} to generate: keeping the first {room}",
                    stacklevel=4,
                )
                sentences = sentences[:room]
            inputs.append(sentences)
        # One codec call for every sentence of every input.
        flat = self._normalized(self.codec.encode([s for sents in inputs for s in sents]))
        prompts, start = [], 0
        for sents in inputs:
            prompts.append(np.concatenate([flat[start : start + len(sents)], marker[None]]))
            start += len(sents)
        return prompts

    def _task(
        self, task: str, texts: Sequence[str], max_sentences: int, options: dict[str, Any]
    ) -> list[str]:
        config = self._config(max_sentences, options)
        prompts = self._task_prompts(task, texts, max_sentences)
        continuations = generate_continuations(
            self.lcm.model, prompts, config, self._eot, self._feedback()
        )
        return [" ".join(sents) for sents in self._decode(continuations)]

    def _decode(self, continuations: list[Continuation]) -> list[list[str]]:
        """The sentences of each continuation (one codec call for all of them)."""
        if all(c.sentences is not None for c in continuations):  # decoded while generating
            decoded = [list(c.sentences) for c in continuations]
        elif self.no_repeat_ngram:
            # Position by position: each sentence is blocked against those decoded before it.
            vectors = [self.lcm.normalizer.denormalize(c.concepts) for c in continuations]
            decoded = [[] for _ in continuations]
            for k in range(max(map(len, vectors), default=0)):
                rows = [r for r, vs in enumerate(vectors) if len(vs) > k]
                texts = self.decode(
                    np.stack([vectors[r][k] for r in rows]), [decoded[r] for r in rows]
                )
                for r, text in zip(rows, texts):
                    decoded[r].append(text)
        else:
            vectors = [self.lcm.normalizer.denormalize(c.concepts) for c in continuations]
            flat = [v for vs in vectors for v in vs]
            texts = self.decode(np.stack(flat)) if flat else []
            decoded, start = [], 0
            for vs in vectors:
                decoded.append(list(texts[start : start + len(vs)]))
                start += len(vs)
        return [self._until_text_stop(s) if self._text_stops else s for s in decoded]


class _Reencoder:
    """The pipeline's :class:`lcm.generate.Feedback`: decode the predicted concepts, encode
    the sentences. A prediction that decodes to nothing is fed back as it is (no sentence
    encodes to it). ``sentences`` holds the latest call's sentences."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.sentences: list[str] = []

    def __call__(
        self, concepts: np.ndarray, history: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, list[str]]:
        pipe = self.pipeline
        vectors = np.asarray(pipe.lcm.normalizer.denormalize(concepts), np.float32)
        self.sentences = pipe.decode(vectors, history) if len(vectors) else []
        fed = np.array(concepts, np.float32)
        rows = [i for i, s in enumerate(self.sentences) if s.strip()]
        if rows:
            fed[rows] = pipe._normalized(pipe.codec.encode([self.sentences[i] for i in rows]))
        return fed, list(self.sentences)


def _decode_blocks(codec: Any) -> bool:
    """Whether ``codec.decode`` takes ``no_repeat_ngram`` (ours does; the SONAR port not yet)."""
    try:
        return "no_repeat_ngram" in inspect.signature(codec.decode).parameters
    except (TypeError, ValueError):  # no signature to read
        return False
