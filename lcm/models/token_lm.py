"""The token-level peer: a decoder-only Transformer over the codec's tokens (smaLlama's row).

It is what a user would train instead of an LCM, so the comparison tables carry it as a
baseline: the same causal stack as the LCMs (pre-norm RMSNorm, RoPE, SwiGLU), over token
embeddings tied to the output logits, trained on the same task documents written as text
("document [SUMMARY]: summary", "summary [EXPAND]: document", plain documents) through the
same trainer, and evaluated by ``lcm eval-task`` (:class:`TokenLMPipeline`).

Generation is greedy, with a KV cache, from left-padded prompts.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from encoders.generate import greedy_loop
from encoders.tokenizer import EOS_ID, PAD_ID
from lcm.config import ConfigError, from_dict, read_yaml, save_yaml, to_dict
from lcm.data.tasks import TASK_MARKERS
from lcm.data.token_tasks import TokenTaskDataConfig, TokenTaskSource
from lcm.io import write_bytes_atomic
from lcm.models.common import causal_segment_mask, masked_mean
from lcm.models.config import TransformerConfig
from lcm.models.family import parameter_count, scoring_codec
from lcm.models.layers import causal_transformer
from lcm.models.protocols import (
    EXPAND_SENTENCES,
    GENERATE_SENTENCES,
    SUMMARIZE_SENTENCES,
    check_max_sentences,
)
from lcm.nn import TokenEmbedding
from lcm.nn.weights import build_with_weights, load_weights, save_weights
from lcm.text.segment import text_sentences
from trainers.task import DataContext, Task


@dataclasses.dataclass(frozen=True)
class TokenLMConfig:
    """Model section of the ``token_lm`` family.

    Attributes:
        d_model: Width.
        rope_base: RoPE base.
        decoder: The causal Transformer.
        vocab_size: Token vocabulary (the codec tokenizer's).
        codec: The codec whose tokenizer the model reads and writes ("default" or a path).
    """

    d_model: int = 256
    rope_base: float = 10000.0
    decoder: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    vocab_size: int = 8192
    codec: str = "default"


class TokenLM(nnx.Module):
    """Next-token prediction over packed token rows.

    Args:
        cfg: Model config.
        rngs: Initialization RNGs.
    """

    def __init__(self, cfg: TokenLMConfig, rngs: nnx.Rngs):
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model, rngs=rngs)
        self.decoder = causal_transformer(cfg.d_model, cfg.decoder, cfg.rope_base, rngs)

    def __call__(self, batch: dict[str, jax.Array], rng: jax.Array | None = None) -> jax.Array:
        """Next-token logits [B, T, vocab] of ``tokens`` [B, T] (packed by ``segment_ids``)."""
        mask = causal_segment_mask(batch["segment_ids"])
        h = self.decoder(self.embed(batch["tokens"]), mask, batch["positions"], rng)
        return self.embed.attend(h)

    def loss(
        self, batch: dict[str, jax.Array], rng: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy of each token given the earlier ones of its document, over the
        positions whose next token is a target (``loss_mask`` of that token)."""
        tokens, seg = batch["tokens"], batch["segment_ids"]
        logits = self(batch, rng).astype(jnp.float32)
        nxt = jnp.concatenate([tokens[:, 1:], jnp.zeros_like(tokens[:, :1])], axis=1)
        same = jnp.concatenate([seg[:, 1:] == seg[:, :-1], jnp.zeros_like(seg[:, :1], bool)], 1)
        wanted = jnp.concatenate(
            [batch["loss_mask"][:, 1:], jnp.zeros_like(seg[:, :1], bool)], axis=1
        )
        valid = (seg > 0) & same & wanted
        gold = jnp.take_along_axis(logits, nxt[..., None], axis=-1)[..., 0]
        nll = jax.nn.logsumexp(logits, axis=-1) - gold
        loss = masked_mean(nll, valid)
        correct = (jnp.argmax(logits, axis=-1) == nxt).astype(jnp.float32)
        return loss, {
            "nll": loss,
            "accuracy": masked_mean(correct, valid),
            "tokens": jnp.sum(valid).astype(jnp.float32),
        }

    def greedy(self, prompt: jax.Array, first: jax.Array, max_new: int) -> jax.Array:
        """Greedy continuation of left-padded prompts.

        Args:
            prompt: [B, P] ids, row ``b`` real from slot ``first[b]`` on (PAD before).
            first: [B] int32.
            max_new: Tokens to generate.

        Returns:
            [B, max_new] int32 ids; after a row's first EOS, PAD.
        """
        b, p = prompt.shape
        caches = self.decoder.init_cache(b, p + max_new)
        h, caches = self.decoder.decode(
            self.embed(prompt), caches, jnp.int32(0), first, last_only=True
        )

        def step(caches: Any, tokens: jax.Array, t: jax.Array) -> tuple[jax.Array, Any]:
            # The token of step t - 1 sits at position p + t - 1.
            h, caches = self.decoder.decode(self.embed(tokens[:, None]), caches, p + t - 1, first)
            return self.embed.attend(h[:, 0]), caches

        scores = self.embed.attend(h[:, -1])
        return greedy_loop(step, caches, scores, max_new, eos_id=EOS_ID, pad_id=PAD_ID)


def _greedy_impl(
    graphdef: nnx.GraphDef, state: nnx.State, prompt: jax.Array, first: jax.Array, max_new: int
) -> jax.Array:
    return nnx.merge(graphdef, state).greedy(prompt, first, max_new)


class TokenLMPipeline:
    """Summarize and expand with a token LM, as :class:`~lcm.pipeline.Pipeline` does with an
    LCM (the methods ``lcm eval-task`` calls).

    Args:
        model: The trained model.
        codec: The codec whose tokenizer it uses (also the round-trip baseline's).
        markers: Task -> marker text (``"[SUMMARY]:"``, ``"[EXPAND]:"``).
        max_prompt: Most prompt tokens (longer inputs keep their end, next to the marker).
        batch_size: Prompts per generation call.
    """

    TOKENS_PER_SENTENCE = 48  # generation budget per requested sentence ...
    MAX_NEW = 256  # ... and in all (the longest test documents are about 250 tokens)

    def __init__(
        self,
        model: TokenLM,
        codec: Any,
        markers: dict[str, str],
        *,
        max_prompt: int = 192,
        batch_size: int = 32,
    ):
        self.codec = codec
        self.markers = markers
        self.max_prompt = max_prompt
        self.batch_size = batch_size
        graphdef, self._state = nnx.split(model)
        self._greedy = jax.jit(functools.partial(_greedy_impl, graphdef), static_argnames="max_new")

    def decode(self, vectors: np.ndarray) -> list[str]:
        """The codec's greedy decoding (for the round-trip baseline)."""
        return self.codec.decode(vectors)

    def _run(self, texts: Sequence[str], task: str | None, max_sentences: int) -> list[str]:
        """Greedy outputs for ``texts`` followed by ``task``'s marker (None: plain text)."""

        max_sentences = check_max_sentences(max_sentences)
        tok = self.codec.tokenizer
        marker = "" if task is None else " " + self.markers[task]
        prompts = [ids[-self.max_prompt :] for ids in tok.encode([f"{t}{marker}" for t in texts])]
        max_new = min(self.TOKENS_PER_SENTENCE * max_sentences, self.MAX_NEW)
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            width = max(len(x) for x in chunk)
            rows = np.full((self.batch_size, width), PAD_ID, np.int32)
            first = np.full(self.batch_size, width - 1, np.int32)
            rows[:, -1] = EOS_ID  # filler rows: one token
            for i, ids in enumerate(chunk):
                rows[i, width - len(ids) :] = ids
                first[i] = width - len(ids)
            ids = np.asarray(self._greedy(self._state, rows, first, max_new=max_new))
            for row in ids[: len(chunk)].tolist():
                row = row[: row.index(EOS_ID)] if EOS_ID in row else row
                text = tok.decode([row])[0].strip()
                out.append(" ".join(text_sentences(text)[:max_sentences]) if text else "")
        return out

    def summarize(self, document: str, max_sentences: int = SUMMARIZE_SENTENCES, **_: Any) -> str:
        """A summary of ``document`` (greedy)."""
        return self._run([document], "summarize", max_sentences)[0]

    def expand(self, summary: str, max_sentences: int = EXPAND_SENTENCES, **_: Any) -> str:
        """A document expanding ``summary`` (greedy)."""
        return self._run([summary], "expand", max_sentences)[0]

    def generate(
        self, prefix: Sequence[str], max_sentences: int = GENERATE_SENTENCES, **_: Any
    ) -> list[str]:
        """The sentences that continue ``prefix`` (greedy, plain text)."""

        return text_sentences(self._run([" ".join(prefix)], None, max_sentences)[0])

    def summarize_many(
        self, documents: Sequence[str], max_sentences: int = SUMMARIZE_SENTENCES, **_: Any
    ) -> list:
        """Summaries of ``documents`` (sampling options of LCMs do not apply: greedy)."""
        return self._run(documents, "summarize", max_sentences)

    def expand_many(
        self, summaries: Sequence[str], max_sentences: int = EXPAND_SENTENCES, **_: Any
    ) -> list:
        """Documents expanding ``summaries`` (greedy)."""
        return self._run(summaries, "expand", max_sentences)


FAMILY = "token_lm"


def save_token_lm(
    path: str | os.PathLike[str], model: TokenLM, cfg: TokenLMConfig, markers: dict[str, str],
    card: str,
) -> None:  # fmt: skip
    """Write a token-LM directory: ``config.yaml`` (family, model section, task markers),
    ``weights.npz`` and ``card.md``; the tokenizer is the codec's (``model.codec``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_weights(model, path / "weights.npz")
    write_bytes_atomic(path / "card.md", card.encode())
    config = {"family": FAMILY, "model": to_dict(cfg), "markers": dict(markers)}
    save_yaml(config, path / "config.yaml")  # last: its presence marks a complete directory


def is_token_lm(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a token-LM directory (not an LCM one)."""
    config = Path(path).expanduser() / "config.yaml"
    return config.is_file() and read_yaml(config).get("family") == FAMILY


def load_token_lm(path: str | os.PathLike[str]) -> tuple[TokenLM, TokenLMConfig, dict[str, str]]:
    """Open a token-LM directory: ``(model, config, markers)``.

    Raises:
        FileNotFoundError: A file is missing.
        ConfigError: Unknown or mistyped config keys.
        ValueError: Missing, unexpected or wrongly shaped weights.
    """
    path = Path(path).expanduser()
    raw = read_yaml(path / "config.yaml")
    try:
        cfg = from_dict(TokenLMConfig, raw.get("model", {}), prefix="model.")
    except ConfigError as e:
        raise ConfigError(f"{path / 'config.yaml'}: {e}") from e
    weights = load_weights(path / "weights.npz")
    model = build_with_weights(
        lambda: TokenLM(cfg, nnx.Rngs(0)), weights, source=str(path / "weights.npz")
    )
    return model, cfg, dict(raw.get("markers", {}))


def _build_token_lm(model: TokenLMConfig, data: TokenTaskDataConfig, rngs: nnx.Rngs) -> TokenLM:
    vocab = scoring_codec(model.codec).tokenizer.vocab_size
    if vocab != model.vocab_size:
        raise ValueError(
            f"model.vocab_size is {model.vocab_size} but the tokenizer of codec "
            f"{model.codec!r} has {vocab} ids"
        )
    return TokenLM(model, rngs)


def _token_source(
    data: TokenTaskDataConfig, model: TokenLMConfig, ctx: DataContext
) -> TokenTaskSource:
    return TokenTaskSource(
        data,
        tokenize=scoring_codec(model.codec).tokenizer.encode,
        batch_size=ctx.batch_size,
        seed=ctx.seed,
        process_index=ctx.process_index,
        process_count=ctx.process_count,
    )


def _export_token_lm(
    model: nnx.Module, model_cfg: TokenLMConfig, data: TokenTaskDataConfig, out_dir: str
) -> None:
    n_params = parameter_count(model)
    card = (
        f"# token_lm (lcm-jax): the token-level peer\n\n- {n_params:,} parameters, rows of "
        f"{data.max_len} tokens, the tokenizer of codec `{model_cfg.codec}`\n- data: "
        f"`{data.pairs}` (split {data.split}, plain documents: {data.plain})\n"
    )
    save_token_lm(out_dir, model, model_cfg, TASK_MARKERS, card)


TASK = Task(
    name="token_lm",
    model_config=TokenLMConfig,
    data_config=TokenTaskDataConfig,
    build_model=_build_token_lm,
    build_data=_token_source,
    export=_export_token_lm,
)
