"""``encoders.load``: one entry point for every codec kind.

It sits above :mod:`encoders.codec` and :mod:`encoders.sonar`, so that neither imports the
other back: a model directory whose config says ``family: sonar`` opens as a
:class:`~encoders.sonar.SonarCodec`, any other as a :class:`~encoders.codec.Codec`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import jax

from encoders.codec import CONFIG_FILE, DEFAULT_DIR, Codec, EncodePrecision
from encoders.sonar import SonarCodec
from lcm.config import read_yaml


def load(
    name_or_path: str | os.PathLike[str] = "default",
    *,
    batch_size: int = 128,
    source_lang: str | None = None,
    target_lang: str | None = None,
    encode_precision: EncodePrecision = "float32",
    devices: Sequence[jax.Device] | None = None,
) -> Codec:
    """Load a codec: ``"default"`` (shipped inside the package) or a model directory path.

    A directory written by ``lcm convert-sonar`` opens as an :class:`encoders.sonar.SonarCodec`
    (same interface, plus languages).

    Args:
        name_or_path: ``"default"`` or a model directory.
        batch_size: Most sentences per jitted call.
        source_lang: Language of the sentences ``encode`` reads (SONAR codecs only, e.g.
            "fra_Latn"; default: the model's, "eng_Latn" for SONAR).
        target_lang: Language ``decode`` writes (SONAR codecs only).
        encode_precision: "float32", or "bfloat16" for faster encoding with bfloat16 matrix
            products (see :class:`Codec`).
        devices: The devices ``encode`` spreads its chunks over (:attr:`Codec.devices`;
            default: JAX's default device).

    Raises:
        FileNotFoundError: If the default codec is not shipped yet or the path is missing.
        ValueError: For a language option on a codec without languages, or an unknown one.
    """
    codec = _load(name_or_path, batch_size, source_lang, target_lang)
    codec.encode_precision = encode_precision
    codec.devices = devices
    return codec


def _load(
    name_or_path: str | os.PathLike[str],
    batch_size: int,
    source_lang: str | None,
    target_lang: str | None,
) -> Codec:
    """:func:`load` before the precision setting."""
    if source_lang is not None or target_lang is not None:
        codec = _load(name_or_path, batch_size, None, None)
        if not isinstance(codec, SonarCodec):
            raise ValueError(
                f"{name_or_path}: source_lang/target_lang apply to SONAR codecs only (this "
                "codec has one language)"
            )
        codec.set_languages(source=source_lang, target=target_lang)
        return codec
    if str(name_or_path) == "default":
        if not (DEFAULT_DIR / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"the default codec is not shipped yet ({DEFAULT_DIR} holds no model). Train "
                "one: `python tools/prepare_codec_data.py --corpus CORPUS_DIR --out "
                "~/data/codec`, then `lcm train configs/encoders/codec_small.yaml`; export it "
                "with encoders.train.export into a model directory and pass that path to "
                "encoders.load() (or place it at encoders/default/)"
            )
        name_or_path = DEFAULT_DIR
    path = Path(name_or_path).expanduser()
    config = path / CONFIG_FILE
    if config.is_file() and read_yaml(config).get("family") == "sonar":
        return SonarCodec.load(path, batch_size=batch_size)
    return Codec.load(path, batch_size=batch_size)
