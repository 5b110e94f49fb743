"""SONAR behind the :class:`~encoders.codec.Codec` interface: its tokenizer and codec."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import sentencepiece as spm
from flax import nnx

from encoders.codec import (
    CARD_FILE,
    CONFIG_FILE,
    DECODE_CACHE_BYTES,
    LENGTH_BUCKETS,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    Codec,
    EncodePrecision,
    _encode_impl,
    _ladder,
    _log_likelihood_impl,
    beam_call_rows,
    check_cache_fits,
    check_sentences,
    closest_candidates,
)
from encoders.sonar.model import (
    BOS_IDX,
    DATA_TAGS,
    EOS_IDX,
    PAD_IDX,
    SONAR_LANGS,
    UNK_IDX,
    SonarCodecConfig,
    SonarModel,
)
from encoders.sonar.search import sonar_beam_search, sonar_greedy_search
from lcm.config import ConfigError, from_dict, read_yaml
from lcm.io import write_bytes_atomic
from lcm.nn.weights import build_with_weights, load_weights

logger = logging.getLogger(__name__)


def add_nllb_control_symbols(model_proto: bytes, langs: Sequence[str]) -> bytes:
    """The NLLB SentencePiece model as fairseq2's NLLB tokenizer loads it.

    Like fairseq2n's ``sp_model_proto_loader``: append ``__lang__`` for each language, then
    the three data tags, as CONTROL pieces; then ``<pad>``, moved to index 0 (every other id
    shifts by one) and made the model's pad piece.

    Args:
        model_proto: The bytes of the NLLB ``.model`` file (``sentencepiece.source.256000.model``).
        langs: The languages, in token order.

    Returns:
        The serialized model (needs the ``protobuf`` package).

    Raises:
        ImportError: Without protobuf.
        ValueError: If the model already defines one of the added symbols.
    """
    try:
        from sentencepiece import sentencepiece_model_pb2 as sp_pb2
    except ImportError as e:
        raise ImportError(
            "editing a SentencePiece model needs protobuf: pip install 'lcm-jax[sonar]'"
        ) from e
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(model_proto)
    symbols = [f"__{lang}__" for lang in langs] + list(DATA_TAGS)
    existing = {p.piece for p in proto.pieces}
    clash = [s for s in [*symbols, "<pad>"] if s in existing]
    if clash:
        raise ValueError(
            f"the SentencePiece model already defines {clash[0]!r} ({len(clash)} of the symbols "
            "fairseq2 adds): pass the plain NLLB model or one converted with all of them"
        )
    control = sp_pb2.ModelProto.SentencePiece.CONTROL
    for symbol in symbols:
        piece = proto.pieces.add()
        piece.piece, piece.type = symbol, control
    proto.trainer_spec.pad_piece = "<pad>"
    pieces = [
        sp_pb2.ModelProto.SentencePiece.FromString(p.SerializeToString()) for p in proto.pieces
    ]
    del proto.pieces[:]
    pad = proto.pieces.add()
    pad.piece, pad.type = "<pad>", control
    proto.pieces.extend(pieces)
    return proto.SerializeToString()


class SonarTokenizer:
    """fairseq2's NLLB tokenizer: SentencePiece with ``__lang__`` tags and PAD at id 0.

    Args:
        model_proto: A SentencePiece model in that layout (see :meth:`from_nllb`).
        langs: Its languages, in token order.

    Raises:
        ValueError: If the special ids are not PAD 0, UNK 1, BOS 2, EOS 3, or a language has
            no control symbol.
    """

    def __init__(self, model_proto: bytes, langs: Sequence[str]):
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        sp = self._sp
        actual = {"pad": sp.pad_id(), "unk": sp.unk_id(), "bos": sp.bos_id(), "eos": sp.eos_id()}
        expected = {"pad": PAD_IDX, "unk": UNK_IDX, "bos": BOS_IDX, "eos": EOS_IDX}
        if actual != expected:
            raise ValueError(
                f"tokenizer special ids {actual} are not fairseq2's NLLB layout {expected}; "
                "build it from the NLLB model with SonarTokenizer.from_nllb"
            )
        self.langs = tuple(langs)
        self._lang_ids = {}
        for lang in self.langs:
            idx = sp.piece_to_id(f"__{lang}__")
            if idx == sp.unk_id() or not sp.is_control(idx):
                raise ValueError(f"tokenizer has no control symbol __{lang}__")
            self._lang_ids[lang] = idx

    @classmethod
    def from_nllb(
        cls, path: str | os.PathLike[str], langs: Sequence[str] = SONAR_LANGS
    ) -> SonarTokenizer:
        """Load the NLLB SentencePiece model and add fairseq2's symbols (or take a model that
        already has them, such as a converted directory's ``tokenizer.model``).

        Raises:
            FileNotFoundError: If there is no such file.
            ValueError: If it is not a SentencePiece model of the expected layout.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model not found: {path}")
        data = path.read_bytes()
        try:
            sp = spm.SentencePieceProcessor(model_proto=data)
        except RuntimeError as e:
            raise ValueError(f"{path}: not a SentencePiece model ({e})") from e
        if sp.piece_to_id("<pad>") == PAD_IDX and sp.is_control(PAD_IDX):
            return cls(data, langs)  # already in fairseq2's layout
        return cls(add_nllb_control_symbols(data, langs), langs)

    @property
    def vocab_size(self) -> int:
        """Number of ids (SentencePiece pieces, tags and PAD)."""
        return self._sp.get_piece_size()

    def lang_id(self, lang: str) -> int:
        """The ``__lang__`` token id of ``lang`` (e.g. "fra_Latn").

        Raises:
            ValueError: For a language the tokenizer does not have.
        """
        try:
            return self._lang_ids[lang]
        except KeyError:
            near = [x for x in self.langs if x.split("_")[0] == str(lang).split("_")[0]]
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(
                f"unknown language {lang!r}: SONAR names languages like 'eng_Latn' (ISO 639-3 "
                f"and script; {len(self.langs)} known){hint}"
            ) from None

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """SentencePiece ids of each text, without language tag or EOS."""
        return self._sp.encode(list(texts), out_type=int, num_threads=os.cpu_count() or 1)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Texts of id sequences; control symbols (tags, PAD, EOS) decode to nothing."""
        seqs = [[int(i) for i in seq] for seq in ids]
        return self._sp.decode(seqs) if seqs else []  # SentencePiece: [] -> '' otherwise

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model (what :meth:`save` writes)."""
        return self._proto

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ``.model`` file atomically."""
        write_bytes_atomic(Path(path), self._proto)


def _generate_impl(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    concepts: jax.Array,
    lang: jax.Array,
    max_len: int,
    beam_size: int,
    n_best: bool = False,
) -> jax.Array:
    decoder = nnx.merge(graphdef, state).decoder
    if beam_size == 1 and not n_best:
        return sonar_greedy_search(decoder, concepts, lang, max_len)
    return sonar_beam_search(decoder, concepts, lang, max_len, beam_size, n_best=n_best)


class SonarCodec(Codec):
    """A converted SONAR model behind the :class:`~encoders.codec.Codec` interface.

    ``encode`` and ``decode`` work as for any codec (same input rules, batching and
    compilation buckets), in the source and target languages (default: the model's,
    "eng_Latn"); both take a per-call ``lang`` too. Vectors are SONAR's own: D = 1024 for the
    ``basic`` models.

    Args:
        model: The SONAR model.
        tokenizer: Its tokenizer (same vocabulary size).
        batch_size: Most sentences per jitted call.
        source_lang: Language ``encode`` reads.
        target_lang: Language ``decode`` writes.
        encode_precision: As for :class:`~encoders.codec.Codec`.

    Raises:
        ValueError: If the tokenizer's size or languages do not match the model's.
    """

    config: SonarCodecConfig
    tokenizer: SonarTokenizer

    def __init__(
        self,
        model: SonarModel,
        tokenizer: SonarTokenizer,
        *,
        batch_size: int = 128,
        source_lang: str | None = None,
        target_lang: str | None = None,
        encode_precision: EncodePrecision = "float32",
    ):
        cfg = model.config
        if tokenizer.vocab_size != cfg.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} ids but the model has {cfg.vocab_size} "
                "token embeddings (was it converted with this model's SentencePiece model?)"
            )
        if tokenizer.langs != cfg.langs:
            raise ValueError("tokenizer languages differ from the model config's langs")
        self.config = cfg
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._graphdef, self._state = nnx.split(model)
        self._encode = jax.jit(functools.partial(_encode_impl, self._graphdef))
        self._generate = jax.jit(
            functools.partial(_generate_impl, self._graphdef),
            static_argnames=("max_len", "beam_size", "n_best"),
        )
        self._log_likelihood = jax.jit(
            functools.partial(_log_likelihood_impl, self._graphdef), static_argnames="prefix"
        )
        self._lengths = _ladder(LENGTH_BUCKETS, cfg.max_len)
        self.encode_precision = encode_precision
        self.source_lang = self.target_lang = cfg.default_lang
        self.set_languages(source=source_lang, target=target_lang)

    def set_languages(self, *, source: str | None = None, target: str | None = None) -> None:
        """Change the default source and/or target language (None keeps the current one).

        Raises:
            ValueError: For an unknown language.
        """
        if source is not None:
            self.tokenizer.lang_id(source)
            self.source_lang = source
        if target is not None:
            self.tokenizer.lang_id(target)
            self.target_lang = target

    @property
    def decoder_prefix(self) -> tuple[int, ...]:
        """``(</s>, __lang__)`` of the current :attr:`target_lang`, as fairseq2 starts."""
        return (EOS_IDX, self.tokenizer.lang_id(self.target_lang))

    @property
    def max_decode_len(self) -> int:
        """Most generated tokens, EOS included: the decoder's positions minus the prompt."""
        dec = self.config.decoder
        return 0 if dec is None else dec.max_seq_len - 2

    def encode(self, sentences: Sequence[str], *, lang: str | None = None) -> np.ndarray:
        """Encode sentences into SONAR vectors.

        Each becomes ``__lang__ pieces </s>``, cut to the encoder's positions (514 for SONAR,
        as its pipeline does; one warning per call says how many were cut).

        Args:
            sentences: N strings (non-blank).
            lang: Their language (default: ``source_lang``).

        Returns:
            [N, D] float32.

        Raises:
            TypeError: If ``sentences`` is a single ``str`` or holds a non-string.
            ValueError: For a blank sentence, an unknown language, or a model with no encoder.
        """
        if self.config.encoder is None:
            raise ValueError(
                "this SONAR model has no encoder: convert an encoder checkpoint too "
                "(lcm convert-sonar ENCODER.pt DECODER.pt OUT_DIR ...)"
            )
        sentences = check_sentences(sentences)
        lang_id = self.tokenizer.lang_id(lang or self.source_lang)
        cap = self.config.encoder.max_seq_len
        ids = self.tokenizer.encode(sentences)
        rows = [[lang_id, *x, EOS_IDX][:cap] for x in ids]
        n_long = sum(len(x) + 2 > cap for x in ids)
        if n_long:
            logger.warning("encode(): truncated %d sentence(s) to %d tokens", n_long, cap)
        return self._encode_rows(rows)

    def decode(
        self,
        vectors: np.ndarray | Sequence[Sequence[float]],
        *,
        beam_size: int = 1,
        max_len: int | None = None,
        lang: str | None = None,
        rerank: bool = False,
    ) -> list[str]:
        """Decode SONAR vectors into sentences.

        Args:
            vectors: [N, D] real, finite values.
            beam_size: 1 for greedy decoding, more for fairseq2's beam search.
            max_len: Most tokens per sentence, EOS included (default and upper limit:
                :attr:`max_decode_len`, 510 for SONAR, as its pipeline generates). Each call
                holds at most :data:`DECODE_CACHE_BYTES` of KV cache: fewer sentences per
                call than ``batch_size`` when long outputs or wide beams need it.
            lang: Language to write (default: ``target_lang``).
            rerank: Of the ``beam_size`` hypotheses, return the one whose own encoding (in
                ``lang``) lies nearest to the vector (see :meth:`Codec.decode`).

        Returns:
            N sentences.

        Raises:
            ValueError: For bad vectors or options, an unknown language, or no decoder.
        """
        if self.config.decoder is None:
            raise ValueError(
                "this SONAR model has no decoder: convert a decoder checkpoint too "
                "(lcm convert-sonar ENCODER.pt DECODER.pt OUT_DIR ...)"
            )
        vecs, max_len = self._check_decode_args(vectors, beam_size, max_len, rerank)
        if rerank and self.config.encoder is None:
            raise ValueError(
                "rerank=True encodes the candidates, but this SONAR model has no encoder: "
                "convert an encoder checkpoint too"
            )
        lang = lang or self.target_lang
        lang_id = np.int32(self.tokenizer.lang_id(lang))
        dec = self.config.decoder
        row_bytes = 2 * 4 * dec.num_layers * (max_len + 2) * dec.model_dim * beam_size
        check_cache_fits(row_bytes, beam_size)
        rows = max(
            1, min(beam_call_rows(beam_size, self.batch_size), DECODE_CACHE_BYTES // row_bytes)
        )
        seqs = self._generate_rows(
            vecs, lang_id, max_len=max_len, beam_size=beam_size, batch_size=rows, n_best=rerank
        )
        texts = self.tokenizer.decode(seqs)
        if not rerank:
            return texts
        return closest_candidates(vecs, texts, functools.partial(self.encode, lang=lang))

    def _default_card(self, n_params: int) -> str:
        cfg = self.config
        parts = [
            f"{name} {c.arch}: {c.num_layers} layers, d {c.model_dim}, {c.num_heads} heads, "
            f"FFN {c.ffn_inner_dim}"
            for name, c in (("encoder", cfg.encoder), ("decoder", cfg.decoder))
            if c is not None
        ]
        return (
            "# SONAR text model (converted)\n\n"
            + "; ".join(parts)
            + f". D {cfg.concept_dim}, vocabulary {cfg.vocab_size}, {len(cfg.langs)} "
            f"languages, {n_params:,} parameters.\n"
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 128,
        source_lang: str | None = None,
        target_lang: str | None = None,
    ) -> SonarCodec:
        """Open a directory written by ``lcm convert-sonar`` (or :meth:`save`).

        Raises:
            FileNotFoundError: If the directory or one of its files is missing.
            ValueError: For a config that is not a SONAR one, or mismatched weights.
        """
        path = Path(path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"SONAR model directory not found: {path}")
        for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
            if not (path / name).is_file():
                raise FileNotFoundError(
                    f"{path}: missing {name} (a SONAR model directory holds {CONFIG_FILE}, "
                    f"{WEIGHTS_FILE}, {TOKENIZER_FILE} and {CARD_FILE})"
                )
        try:
            cfg = from_dict(SonarCodecConfig, read_yaml(path / CONFIG_FILE))
        except ConfigError as e:
            raise ConfigError(f"{path / CONFIG_FILE}: {e}") from e
        tokenizer = SonarTokenizer((path / TOKENIZER_FILE).read_bytes(), cfg.langs)
        weights = load_weights(path / WEIGHTS_FILE)
        model = build_with_weights(
            lambda: SonarModel(cfg, nnx.Rngs(0)), weights, source=str(path / WEIGHTS_FILE)
        )
        return cls(
            model,
            tokenizer,
            batch_size=batch_size,
            source_lang=source_lang,
            target_lang=target_lang,
        )
