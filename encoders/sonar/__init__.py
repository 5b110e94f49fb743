"""SONAR's text encoder and decoder in Flax NNX, numerically equal to fairseq2's.

SONAR (Duquenne et al., 2023; github.com/facebookresearch/SONAR) maps a sentence in any of 202
languages to one 1024-dim vector and back. This package rebuilds its text models exactly as
``sonar.models.sonar_text.factory`` builds them with fairseq2 (read from sonar-space 0.5.0 and
fairseq2 0.8.1), so that converted SONAR weights (``lcm convert-sonar``, see
:mod:`encoders.sonar.convert`) give SONAR's vectors and sentences with no fairseq2 at run time:

* Encoder (``SonarTextEncoderFactory``): token embedding scaled by ``sqrt(d)`` plus fixed
  sinusoidal positions; pre-LN Transformer layers (LayerNorm eps 1e-5 with bias; multi-head
  attention with biased q/k/v/output projections; ReLU feed-forward with biases); a final
  LayerNorm; masked mean pooling, ``sum(states) * 1 / (length + 1e-7)``.
* Decoder (``SonarTextDecoderFactory``): the same frontend; pre-LN layers of causal
  self-attention, encoder-decoder attention to the sentence vector as a memory of length 1,
  and a ReLU feed-forward; a final LayerNorm; an output projection tied to the embedding.
* Positions (fairseq2 ``SinusoidalPositionEncoder``): position ``p`` gets
  ``[sin(s * w), cos(s * w)]`` with ``w_i = exp(-i * ln(10000) / (d/2 - 1))`` and
  ``s = p + 1 + pad_idx``: SONAR passes fairseq's pad index 1 as ``_legacy_pad_idx``, so the
  first position is step 2. The encoder config (``_from_fairseq``) also grows its length by
  ``pad_idx + 1``: 514 positions; the decoder has 512.
* Tokens (fairseq2's NLLB tokenizer, :class:`SonarTokenizer`): the NLLB SentencePiece model
  with one ``__lang__`` control symbol per language, three data tags, and ``<pad>`` inserted
  at id 0, so PAD 0, UNK 1, BOS 2, EOS 3. A sentence is encoded as ``__lang__ pieces </s>``
  (truncated to the encoder's 514 positions); the decoder starts from ``</s> __lang__`` and
  generates until ``</s>``, never PAD, with EOS forced at its last position (fairseq2's
  ``BeamSearchSeq2SeqGenerator``; beam size 1 is greedy decoding).

Encoder-decoder attention over one memory vector is computed as ``output(value(v))``: a
softmax over a single key is exactly 1, so that sublayer's query and key projections and its
layer norm cannot change the output (the converter checks them and leaves them out).

The package keeps only what fairseq2 parity requires: ``model`` (sinusoidal positions, and
the layers as our :class:`~lcm.nn.Block` and :class:`~lcm.nn.Attention` with fairseq2's
biased projections, ReLU feed-forward, LayerNorm eps and parameter names), ``search`` (the
prompt prefill, positions and step scores that the shared search of :mod:`encoders.generate`
runs with fairseq2's finishing rule), ``codec`` (the NLLB tokenizer and :class:`SonarCodec`)
and ``convert`` (``lcm convert-sonar``).
"""

from encoders.sonar.codec import SonarCodec, SonarTokenizer, add_nllb_control_symbols
from encoders.sonar.model import (
    BOS_IDX,
    DECODER_ARCHS,
    DEFAULT_LANG,
    ENCODER_ARCHS,
    EOS_IDX,
    PAD_IDX,
    SONAR_LANGS,
    UNK_IDX,
    SonarCodecConfig,
    SonarModel,
    SonarTextDecoder,
    SonarTextEncoder,
    SonarTransformerConfig,
    sinusoid_table,
)
from encoders.sonar.search import sonar_beam_search, sonar_greedy_search

__all__ = [
    "BOS_IDX",
    "DECODER_ARCHS",
    "DEFAULT_LANG",
    "ENCODER_ARCHS",
    "EOS_IDX",
    "PAD_IDX",
    "SONAR_LANGS",
    "UNK_IDX",
    "SonarCodec",
    "SonarCodecConfig",
    "SonarModel",
    "SonarTextDecoder",
    "SonarTextEncoder",
    "SonarTokenizer",
    "SonarTransformerConfig",
    "add_nllb_control_symbols",
    "sinusoid_table",
    "sonar_beam_search",
    "sonar_greedy_search",
]
