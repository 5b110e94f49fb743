"""Generation in concept space: continue documents, batched, with stop criteria.

One generator for every model family (Base-LCM regresses the next concept, the diffusion
LCMs sample it with DDIM and classifier-free guidance, Quant-LCM samples codebook units); the
causal towers keep KV caches, so each new concept costs one incremental pass.

Prompts of different lengths share a batch: each is left-padded to a common length (rounded
up to a multiple of 8 so that similar lengths reuse one compiled program) and the padding is
masked out, which leaves every document's result what it would be alone. A document's
randomness depends only on ``(seed, position)``, never on its row or its batch companions.

A document stops at the first generated concept that

- is close to the end-of-text concept (cosine >= ``stop_threshold``, default 0.9),
- or repeats the previous concept (cosine >= ``repetition_threshold``, default 0.9; None
  turns this off),
- or when ``max_sentences`` concepts have been generated.

The stopping concept itself (end of text, or the repetition) is not part of the output.
Cosines are taken between normalized concepts (the space the model predicts in, centred by
the normalizer), where unrelated sentences are far apart.

With a :class:`Feedback` (``feedback=``), each predicted concept is replaced before it enters
the context and before the stop criteria see it: the pipeline decodes it into a sentence and
feeds back that sentence's encoding, as SONAR-LLM generates. The context then holds only
concepts of real sentences, the kind the model was trained on, whatever its predictions look
like; the continuation keeps the decoded sentences.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcm.models.diffusion.ddim import DDIMConfig
from lcm.models.generate import compiled_feedback_steps, compiled_steps
from lcm.models.protocols import SamplingOptions

StopReason = Literal["eot", "repetition", "max_sentences"]
LENGTH_BUCKET = 8
_DDIM = DDIMConfig()  # the sampler's defaults are DDIMConfig's


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """Options of :func:`generate_continuations` (defaults follow the LCM paper).

    Attributes:
        max_sentences: Most concepts generated per document.
        stop_threshold: Cosine to the end-of-text concept that ends a document.
        repetition_threshold: Cosine to the previous concept that ends a document (a
            repetition: MSE-trained models tend to settle on one concept); None: off.
        steps: Diffusion denoising steps.
        guidance_scale: Classifier-free guidance weight (diffusion models).
        guidance_rescale: Guidance rescale factor (diffusion models).
        initial_noise_scale: Standard deviation of the starting noise (diffusion models).
        epsilon_scaling: Divide the predicted noise by this (diffusion models).
        eta: DDIM eta: 0 deterministic, 1 DDPM-like.
        temperature: Unit sampling temperature of Quant-LCM (0 = greedy).
        seed: Randomness of the sampled families.
        batch_size: Documents generated together.
    """

    max_sentences: int = 16
    stop_threshold: float = 0.9
    repetition_threshold: float | None = 0.9
    steps: int = _DDIM.steps
    guidance_scale: float = _DDIM.guidance_scale
    guidance_rescale: float = _DDIM.guidance_rescale
    initial_noise_scale: float = _DDIM.initial_noise_scale
    epsilon_scaling: float = _DDIM.epsilon_scaling
    eta: float = _DDIM.eta
    temperature: float = 1.0
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.max_sentences < 1:
            raise ValueError(f"max_sentences must be >= 1, got {self.max_sentences}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("stop_threshold", "repetition_threshold"):
            value = getattr(self, name)
            if value is not None and not -1.0 <= value <= 1.0:
                raise ValueError(f"{name} is a cosine in [-1, 1], got {value}")

    def sampling_options(self) -> SamplingOptions:
        """The per-concept sampling options the models read."""
        ddim = DDIMConfig(
            steps=self.steps,
            eta=self.eta,
            guidance_scale=self.guidance_scale,
            guidance_rescale=self.guidance_rescale,
            initial_noise_scale=self.initial_noise_scale,
            epsilon_scaling=self.epsilon_scaling,
        )
        return SamplingOptions(ddim=ddim, temperature=self.temperature)


class Feedback(Protocol):
    """Replaces predicted concepts before they enter the context (see the module docstring)."""

    def __call__(
        self, concepts: np.ndarray, history: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, list[str]]:
        """Normalized predictions [n, D] and the sentences each of the n documents has
        generated so far -> (the normalized concepts to feed back [n, D], the n sentences
        they stand for)."""
        ...


@dataclasses.dataclass(frozen=True)
class Continuation:
    """The generated part of one document.

    Attributes:
        concepts: [n, D] normalized concepts (0 <= n <= max_sentences; the stop concept
            is not included); with a :class:`Feedback`, the concepts fed back.
        stop_reason: Why generation ended.
        sentences: With a :class:`Feedback`, the n sentences of ``concepts``; else None.
    """

    concepts: np.ndarray
    stop_reason: StopReason
    sentences: tuple[str, ...] | None = None


def _round_up(n: int, multiple: int) -> int:
    return multiple * math.ceil(n / multiple)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def check_prompts(prompts: Sequence[np.ndarray], dim: int) -> list[np.ndarray]:
    """Prompts as float32 ``[P_i, dim]`` arrays, checked.

    Raises:
        ValueError: No prompts, an empty prompt, a wrong shape or a non-finite value.
    """
    if len(prompts) == 0:
        raise ValueError("no prompts to continue")
    out = []
    for i, prompt in enumerate(prompts):
        p = np.asarray(prompt, np.float32)
        if p.ndim != 2 or p.shape[1] != dim:
            raise ValueError(f"prompt {i} has shape {p.shape}; need [n, {dim}] concepts")
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty; a continuation needs at least one concept")
        if not np.all(np.isfinite(p)):
            raise ValueError(f"prompt {i} holds NaN or infinite values")
        out.append(p)
    return out


def generate_continuations(
    model: nnx.Module,
    prompts: Sequence[np.ndarray],
    config: GenerationConfig | None = None,
    stop: np.ndarray | None = None,
    feedback: Feedback | None = None,
) -> list[Continuation]:
    """Continue each prompt until a stop criterion holds.

    Args:
        model: A next-concept model (``start``/``next_concept``/``extend``).
        prompts: Normalized prompt concepts, one ``[P_i, D]`` array per document.
        config: Generation options (default :class:`GenerationConfig`).
        stop: [D] the normalized end-of-text concept, or None (no end-of-text stop).
        feedback: Replaces each prediction before it is fed back and tested for a stop
            (None: the predictions themselves); it is called for unfinished documents only.

    Returns:
        One :class:`Continuation` per prompt, in order.

    Raises:
        ValueError: Bad prompts (see :func:`check_prompts`) or a ``stop`` of the wrong shape.
    """
    config = config or GenerationConfig()
    dim = int(model.concept_dim)
    prompts = check_prompts(prompts, dim)
    stop_unit = _stop_unit(stop, dim)
    graphdef, weights = nnx.split(model)
    out: list[Continuation] = []
    for lo in range(0, len(prompts), config.batch_size):
        chunk = prompts[lo : lo + config.batch_size]
        out.extend(_generate_batch(graphdef, weights, chunk, config, stop_unit, feedback))
    return out


def stream_continuation(
    model: nnx.Module,
    prompt: np.ndarray,
    config: GenerationConfig | None = None,
    stop: np.ndarray | None = None,
    feedback: Feedback | None = None,
) -> Iterator[np.ndarray]:
    """Continue one prompt, yielding each normalized concept [D] as soon as it exists (with a
    :class:`Feedback`, the concept fed back; its sentence is the feedback's latest).

    Same stop criteria and results as :func:`generate_continuations` for this prompt.
    """
    config = config or GenerationConfig()
    (prompt,) = check_prompts([prompt], int(model.concept_dim))
    stop_unit = _stop_unit(stop, int(model.concept_dim))
    graphdef, weights = nnx.split(model)
    previous = _unit(prompt[-1:])
    step_feedback = None
    if feedback is not None:
        said: list[str] = []  # the sentences so far (a stop ends the loop before more calls)

        def step_feedback(predicted: np.ndarray) -> np.ndarray:
            fed, sentences = feedback(predicted, [list(said)])
            said.extend(sentences)
            return fed

    for now in _concept_steps(graphdef, weights, [prompt], config, step_feedback):
        unit = _unit(now)
        if _stop_reason(unit[0], previous[0], stop_unit, config) is not None:
            return
        yield now[0]
        previous = unit


def _stop_unit(stop: np.ndarray | None, dim: int) -> np.ndarray | None:
    if stop is None:
        return None
    stop = np.asarray(stop, np.float32).reshape(-1)
    if stop.shape != (dim,) or not np.all(np.isfinite(stop)):
        raise ValueError(f"stop concept must be a finite [{dim}] vector, got {stop.shape}")
    return _unit(stop)


def _stop_reason(
    unit: np.ndarray, previous: np.ndarray, stop_unit: np.ndarray | None, config: GenerationConfig
) -> StopReason | None:
    """Why the concept with direction ``unit`` [D] ends its document, if it does."""
    if stop_unit is not None and float(unit @ stop_unit) >= config.stop_threshold:
        return "eot"
    threshold = config.repetition_threshold
    if threshold is not None and float(unit @ previous) >= threshold:
        return "repetition"
    return None


def _concept_steps(
    graphdef: nnx.GraphDef,
    weights: nnx.State,
    prompts: list[np.ndarray],
    config: GenerationConfig,
    feedback: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """Yield the next concept of every prompt, ``[len(prompts), D]``, up to max_sentences;
    ``feedback`` (if any) maps the predictions to what is yielded and fed back."""
    n, dim = len(prompts), prompts[0].shape[1]
    rows = 1 << (n - 1).bit_length()  # a power of two: few batch shapes to compile
    width = _round_up(max(len(p) for p in prompts), LENGTH_BUCKET)
    max_len = _round_up(width + config.max_sentences, LENGTH_BUCKET)
    padded = np.zeros((rows, width, dim), np.float32)
    first = np.zeros(rows, np.int32)
    for r in range(rows):
        p = prompts[r] if r < n else prompts[0]  # filler rows repeat a real prompt
        padded[r, width - len(p) :] = p
        first[r] = width - len(p)
    options = config.sampling_options()
    start, step = compiled_steps(graphdef, options, max_len)
    state = start(weights, jnp.asarray(padded), jnp.asarray(first))
    keys = jnp.stack([jax.random.key(config.seed)] * rows)  # same stream for every document
    if feedback is None:
        for _ in range(config.max_sentences):
            concept, state = step(weights, state, keys)
            yield np.asarray(concept)[:n]  # the one host transfer per generated sentence
        return
    predict, extend = compiled_feedback_steps(graphdef, options)
    for _ in range(config.max_sentences):
        fed = np.asarray(feedback(np.asarray(predict(weights, state, keys))[:n]), np.float32)
        state = extend(weights, state, jnp.asarray(np.concatenate([fed, padded[n:, -1]])))
        yield fed


def _generate_batch(
    graphdef: nnx.GraphDef,
    weights: nnx.State,
    prompts: list[np.ndarray],
    config: GenerationConfig,
    stop_unit: np.ndarray | None,
    feedback: Feedback | None = None,
) -> list[Continuation]:
    n, dim = len(prompts), prompts[0].shape[1]
    generated: list[list[np.ndarray]] = [[] for _ in range(n)]
    texts: list[list[str]] = [[] for _ in range(n)]
    reasons: list[StopReason | None] = [None] * n
    now_texts: dict[int, str] = {}
    step_feedback = None
    if feedback is not None:

        def step_feedback(predicted: np.ndarray) -> np.ndarray:
            # Finished documents are not decoded; their (ignored) context gets the prediction.
            active = [r for r in range(n) if reasons[r] is None]
            fed = predicted.copy()
            vectors, sentences = feedback(predicted[active], [list(texts[r]) for r in active])
            fed[active] = vectors
            now_texts.clear()
            now_texts.update(zip(active, sentences))
            return fed

    previous = _unit(np.stack([p[-1] for p in prompts]))
    for now in _concept_steps(graphdef, weights, prompts, config, step_feedback):
        unit = _unit(now)
        for r in range(n):
            if reasons[r] is None:
                reasons[r] = _stop_reason(unit[r], previous[r], stop_unit, config)
                if reasons[r] is None:
                    generated[r].append(now[r])
                    if feedback is not None:
                        texts[r].append(now_texts[r])
        previous = unit
        if all(reason is not None for reason in reasons):
            break
    return [
        Continuation(
            np.stack(g) if g else np.zeros((0, dim), np.float32),
            reason or "max_sentences",
            tuple(t) if feedback is not None else None,
        )
        for g, t, reason in zip(generated, texts, reasons)
    ]
