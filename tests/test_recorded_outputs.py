"""Refactors keep outputs: every output recorded in tests/recorded_outputs.py, recomputed."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from recorded_outputs import FIXTURE, compute


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def now() -> dict[str, Any]:
    return compute()


def test_the_same_outputs_are_produced(
    recorded: dict[str, np.ndarray], now: dict[str, Any]
) -> None:
    assert sorted(now) == sorted(recorded)


def test_parameter_paths_and_shapes_are_unchanged(
    recorded: dict[str, np.ndarray], now: dict[str, Any]
) -> None:
    before = json.loads(str(recorded["param_shapes"]))
    after = json.loads(str(now["param_shapes"]))
    for model in before:
        assert after[model] == before[model], model


def test_texts_are_unchanged(recorded: dict[str, np.ndarray], now: dict[str, Any]) -> None:
    texts = [k for k, v in recorded.items() if v.dtype.kind == "U" and k != "param_shapes"]
    assert len(texts) == 6
    for key in texts:
        assert list(now[key]) == list(recorded[key]), key


def test_numbers_are_unchanged(recorded: dict[str, np.ndarray], now: dict[str, Any]) -> None:
    # Bit-identical on the machine that recorded them; another CPU may round a last bit
    # differently (other vector widths in XLA's kernels), hence the float32-epsilon bound.
    numbers = [k for k, v in recorded.items() if v.dtype.kind == "f"]
    assert len(numbers) > 10
    for key in numbers:
        np.testing.assert_allclose(now[key], recorded[key], rtol=2e-6, atol=2e-6, err_msg=key)
