"""Sentence encoders and decoders: the concept space the LCMs live in.

``encoders.load("default")`` returns the shipped :class:`Codec`; ``encoders.load(path)`` opens
a model directory::

    codec = encoders.load("default")
    vecs = codec.encode(["A sentence.", "Another one."])  # float32 [N, D]
    texts = codec.decode(vecs, beam_size=1)

A directory written by ``lcm convert-sonar`` opens as an :class:`encoders.sonar.SonarCodec`:
SONAR's own encoder and decoder (1024-dim vectors, 202 languages), same interface.
"""

from encoders.codec import Codec
from encoders.loader import load

__all__ = ["Codec", "load"]
