"""SentencePiece tokenizer of the codec: training from a sentence file, loading, (de)coding.

Special ids are fixed so every model and data file agrees on them: ``PAD_ID = 0``,
``UNK_ID = 1``, ``BOS_ID = 2``, ``EOS_ID = 3`` and ``MASK_ID = 4`` (``<mask>``, used by the
denoising objective). Byte fallback is on and normalization is the identity, so any UTF-8 text
survives ``decode(encode(text))`` up to whitespace runs, which are collapsed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import sentencepiece as spm

from lcm.io import write_bytes_atomic

PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3, 4
# Every id from here on is an ordinary piece (a word piece or a byte), none of them special.
FIRST_ORDINARY_ID = MASK_ID + 1
MASK_PIECE = "<mask>"
_NUM_THREADS = os.cpu_count() or 1


class Tokenizer:
    """A loaded SentencePiece model with the codec's fixed special ids.

    Args:
        model_proto: The serialized SentencePiece model (the bytes of a ``.model`` file).

    Raises:
        ValueError: If the model's special ids differ from the fixed ones.
    """

    def __init__(self, model_proto: bytes):
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        expected = {
            "pad": PAD_ID,
            "unk": UNK_ID,
            "bos": BOS_ID,
            "eos": EOS_ID,
            "mask": MASK_ID,
        }
        actual = {
            "pad": self._sp.pad_id(),
            "unk": self._sp.unk_id(),
            "bos": self._sp.bos_id(),
            "eos": self._sp.eos_id(),
            "mask": self._sp.piece_to_id(MASK_PIECE),
        }
        if actual != expected:
            raise ValueError(
                f"tokenizer special ids {actual} differ from the codec's fixed ids {expected}; "
                "train the tokenizer with encoders.tokenizer.train_tokenizer"
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load a ``.model`` file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer model not found: {path}")
        try:
            return cls(path.read_bytes())
        except RuntimeError as e:  # SentencePiece's parse error names no file
            raise ValueError(f"{path}: not a SentencePiece model ({e})") from None

    @property
    def vocab_size(self) -> int:
        """Number of ids, special ones included."""
        return self._sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without BOS/EOS (multi-threaded)."""
        return self._sp.encode(list(texts), out_type=int, num_threads=_NUM_THREADS)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Texts of id sequences; special ids (PAD, BOS, EOS, MASK) are dropped."""
        specials = {PAD_ID, BOS_ID, EOS_ID, MASK_ID}
        clean = [[int(i) for i in seq if int(i) not in specials] for seq in ids]
        if not clean:  # SentencePiece reads an empty batch as one empty sequence: ''
            return []
        return self._sp.decode(clean, num_threads=_NUM_THREADS)

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model (what :meth:`save` writes)."""
        return self._proto

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ``.model`` file atomically (temp name, then rename)."""
        write_bytes_atomic(Path(path), self._proto)


def train_tokenizer(
    sentence_file: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    vocab_size: int = 8192,
    model_type: Literal["unigram", "bpe"] = "unigram",
    max_sentences: int = 2_000_000,
    character_coverage: float = 0.9995,
    seed: int = 0,
) -> Tokenizer:
    """Train a SentencePiece model on a file with one sentence per line.

    Args:
        sentence_file: UTF-8 text, one sentence a line.
        out_path: Where to write the ``.model`` file.
        vocab_size: Number of ids, including the 5 special ones and 256 byte pieces.
        model_type: "unigram" or "bpe".
        max_sentences: Train on a random sample of at most this many lines.
        character_coverage: Share of characters covered by pieces; the rest use bytes.
        seed: Sampling seed (SentencePiece's own RNG).

    Returns:
        The trained tokenizer.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(seed)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        prefix = os.path.join(tmp, "sp")
        spm.SentencePieceTrainer.train(
            input=os.fspath(sentence_file),
            model_prefix=prefix,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            max_sentence_length=8192,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            user_defined_symbols=[MASK_PIECE],
            byte_fallback=True,
            split_digits=True,
            # Identity normalization: decode(encode(x)) must give x back, not its NFKC form.
            normalization_rule_name="identity",
            num_threads=_NUM_THREADS,
            minloglevel=2,
        )
        tokenizer = Tokenizer(Path(prefix + ".model").read_bytes())
    tokenizer.save(out_path)
    return tokenizer
