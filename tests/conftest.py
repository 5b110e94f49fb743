"""Shared test setup: run on CPU, quietly, from the repository root."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # noqa: E402

import jax  # noqa: E402

# One persistent XLA cache per test session: tests (and the subprocesses they start, through
# the environment) that compile the same program share the result.
_CACHE = os.environ.setdefault("LCM_COMPILATION_CACHE", tempfile.mkdtemp(prefix="lcm-test-xla-"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

REPO = Path(__file__).resolve().parents[1]
