"""The shipped default codec and LCM load offline and run end to end."""

from __future__ import annotations

import numpy as np

import encoders
from lcm import Pipeline


def test_default_codec_and_lcm_work_together() -> None:
    codec = encoders.load("default")
    vectors = codec.encode(["A package of tools for the command line."])
    assert vectors.shape == (1, 256) and np.all(np.isfinite(vectors))
    pipe = Pipeline.load("default")
    assert pipe.lcm.config.concept_dim == codec.dim
    assert (pipe.lcm.path / "card.md").read_text().strip()
    text = pipe.expand("interactive viewer for large log files", max_sentences=2)
    assert isinstance(text, str) and text.strip()
