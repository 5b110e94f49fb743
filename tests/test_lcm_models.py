"""The four LCM families: causality, packing isolation, KV-cache generation, training."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache as xla_cache
from lcm_helpers import random_model

from lcm.models.base_lcm import BaseLCM, BaseLCMConfig
from lcm.models.common import earlier_in_segment
from lcm.models.config import TransformerConfig
from lcm.models.diffusion.ddim import DDIMConfig
from lcm.models.generate import generate
from lcm.models.likelihood_lcm import LikelihoodLCM, LikelihoodLCMConfig
from lcm.models.one_tower import OneTowerConfig, OneTowerLCM
from lcm.models.protocols import SamplingOptions
from lcm.models.quant import QuantConfig, QuantLCM
from lcm.models.rvq import fit_rvq
from lcm.models.two_tower import TwoTowerConfig, TwoTowerLCM
from trainers.config import TrainConfig, load_train_config
from trainers.loop import train
from trainers.mesh import LOGICAL_RULES

D, T = 8, 10
TC = TransformerConfig(num_layers=2, num_heads=2, mlp_dim=32)
VARIANTS = ["base_lcm", "two_tower", "one_tower", "quant_lcm_d", "quant_lcm_c"]
# The likelihood LCM's loss needs a codec (tests/test_likelihood_lcm.py); its network and
# generation are checked here with the others'.
NETWORKS = [*VARIANTS, "likelihood_lcm"]
# Guidance, guidance rescale and stochastic DDIM steps all on: the hardest case to match.
OPTIONS = SamplingOptions(
    ddim=DDIMConfig(
        steps=4,
        eta=0.7,
        guidance_scale=1.5,
        guidance_rescale=0.5,
        initial_noise_scale=1.0,
        epsilon_scaling=1.0,
    ),
    temperature=1.0,
)


@pytest.fixture(scope="module")
def codebooks() -> np.ndarray:
    return fit_rvq(np.random.default_rng(0).normal(size=(256, D)), 3, 8, iters=5)


def make(name: str, codebooks: np.ndarray, tc: TransformerConfig = TC) -> nnx.Module:
    rngs = nnx.Rngs(0)
    if name == "base_lcm":
        return BaseLCM(BaseLCMConfig(d_model=16, decoder=tc), D, rngs)
    if name == "two_tower":
        return TwoTowerLCM(TwoTowerConfig(d_model=16, context=tc, denoiser=tc), D, rngs)
    if name == "one_tower":
        return OneTowerLCM(OneTowerConfig(d_model=16, decoder=tc), D, rngs)
    if name == "likelihood_lcm":
        return LikelihoodLCM(LikelihoodLCMConfig(d_model=16, decoder=tc), D, rngs)
    cfg = QuantConfig(variant=name[-1], d_model=16, decoder=tc, num_codebooks=3, codebook_size=8)
    return QuantLCM(cfg, codebooks, rngs)


def build(name: str, codebooks: np.ndarray, tc: TransformerConfig = TC) -> nnx.Module:
    return random_model(lambda: make(name, codebooks, tc), codebooks)


class Compiled:
    """A randomized model with its protocol methods jitted once (tests share the compiles)."""

    def __init__(self, model: nnx.Module):
        self.model = model
        graphdef, weights = nnx.split(model)

        def call(name: str, *static: object) -> Callable[..., Any]:
            fn = jax.jit(lambda w, *a: getattr(nnx.merge(graphdef, w), name)(*a, *static))
            return lambda *args: fn(weights, *args)

        self.predict_next = call("predict_next", OPTIONS)
        self.start = call("start", T)
        self.next_concept = call("next_concept", OPTIONS)
        self.extend = call("extend")


@pytest.fixture(scope="module")
def compiled(codebooks: np.ndarray) -> dict[str, Compiled]:
    return {name: Compiled(build(name, codebooks)) for name in NETWORKS}


def docs_batch(b: int = 2, seed: int = 0) -> dict[str, jax.Array]:
    """``b`` rows, one full document of T concepts each."""
    concepts = jax.random.normal(jax.random.key(seed), (b, T, D))
    return {
        "concepts": concepts,
        "segment_ids": jnp.ones((b, T), jnp.int32),
        "positions": jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (b, T)),
        "mask": jnp.ones((b, T), bool),
    }


@pytest.mark.parametrize(
    "path", sorted((REPO / "configs" / "lcm").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_lcm_config_parses(path: Path) -> None:
    cfg = load_train_config(path)
    assert cfg.family in {
        "base_lcm",
        "two_tower",
        "one_tower",
        "quant_lcm",
        "likelihood_lcm",
        "token_lm",
    }


@pytest.mark.parametrize("name", NETWORKS)
def test_no_rng_state_and_logical_axis_names(name: str, codebooks: np.ndarray) -> None:
    model = build(name, codebooks)
    assert not jax.tree.leaves(nnx.split(model, nnx.RngState, ...)[1])
    specs = nnx.get_partition_spec(nnx.split(model, nnx.Param, ...)[1])
    for spec in jax.tree.leaves(specs, is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec)):
        assert all(n is None or n in LOGICAL_RULES for n in spec), spec


@pytest.mark.parametrize("name", NETWORKS)
def test_changing_concept_t_plus_1_never_changes_outputs_up_to_t(
    name: str, compiled: dict[str, Compiled]
) -> None:
    m = compiled[name]
    context = nnx.jit(lambda model, b: model._context(b))

    def outputs(b: dict[str, jax.Array], rng: jax.Array) -> list[jax.Array]:
        """The predictions, and for Quant-LCM (discrete draws) its context vectors too."""
        out = [m.predict_next(b, rng)]
        return [*out, context(m.model, b)] if name.startswith("quant") else out

    batch = docs_batch()
    rng = jax.random.key(3)
    base = outputs(batch, rng)
    for j in (1, 5, T - 1):
        changed = dict(batch, concepts=batch["concepts"].at[:, j].add(3.0))
        for out, ref in zip(outputs(changed, rng), base):
            np.testing.assert_allclose(out[:, :j], ref[:, :j], atol=1e-5, err_msg=f"j={j}")
        # Not vacuous: the change does reach the later positions (continuous outputs).
        assert not np.allclose(out[:, j:], ref[:, j:], atol=1e-4), f"j={j}: no effect"


@pytest.mark.parametrize("name", ["two_tower", "one_tower"])
def test_training_denoiser_sees_only_earlier_clean_concepts(
    name: str, codebooks: np.ndarray
) -> None:
    """The training path: the estimate of concept t ignores clean concepts >= t."""
    model = build(name, codebooks)
    batch = docs_batch()
    x_t = jax.random.normal(jax.random.key(5), (2, T, D))
    t = jnp.full((2, T), 30)
    seg, pos = batch["segment_ids"], batch["positions"]

    @nnx.jit
    def denoise(model: nnx.Module, b: dict[str, jax.Array]) -> jax.Array:
        if name == "two_tower":
            memories = model.denoiser.project_context(model.encode(b))
            return model.denoiser(x_t, t, memories, earlier_in_segment(seg, pos, seg, pos))
        return model._denoise(b, x_t, t, pos, jnp.zeros((2, T), bool))

    base = denoise(model, batch)
    for j in (0, 4, T - 1):
        out = denoise(model, dict(batch, concepts=batch["concepts"].at[:, j].add(3.0)))
        np.testing.assert_allclose(out[:, : j + 1], base[:, : j + 1], atol=1e-5)
        if j < T - 1:
            assert not np.allclose(out[:, j + 1 :], base[:, j + 1 :], atol=1e-4)


@pytest.mark.parametrize("name", NETWORKS)
def test_packed_documents_do_not_see_each_other(name: str, compiled: dict[str, Compiled]) -> None:
    x = jax.random.normal(jax.random.key(1), (2, T, D))
    # Row 0 holds a 4-concept document, then a 6-concept one; in the second batch row 0 holds
    # the 6-concept one alone (row 1 is filler; sampling depends on the row index).
    packed = {
        "concepts": x,
        "segment_ids": jnp.array([[1] * 4 + [2] * 6, [1] * T], jnp.int32),
        "positions": jnp.array([list(range(4)) + list(range(6)), list(range(T))], jnp.int32),
        "mask": jnp.ones((2, T), bool),
    }
    alone = {
        "concepts": x.at[0].set(jnp.concatenate([x[0, 4:], jnp.zeros((4, D))])),
        "segment_ids": packed["segment_ids"].at[0].set(jnp.array([1] * 6 + [0] * 4)),
        "positions": packed["positions"].at[0].set(jnp.array(list(range(6)) + [0] * 4)),
        "mask": packed["mask"].at[0, 6:].set(False),
    }
    rng = jax.random.key(4)
    a = compiled[name].predict_next(packed, rng)[0, 4:]
    b = compiled[name].predict_next(alone, rng)[0, :6]
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", NETWORKS)
def test_kv_cache_generation_equals_the_parallel_pass(
    name: str, compiled: dict[str, Compiled]
) -> None:
    """Encoding the context incrementally (prompt, then one concept per step) and sampling
    the next concept reproduces the teacher-forced parallel prediction at every position."""
    m = compiled[name]
    batch = docs_batch()
    rng = jax.random.key(9)
    full = m.predict_next(batch, rng)
    state = m.start(batch["concepts"][:, :3])
    for p in range(3, T):
        got = m.next_concept(state, rng)
        np.testing.assert_allclose(got, full[:, p - 1], atol=2e-5, err_msg=f"position {p}")
        state = m.extend(state, batch["concepts"][:, p])


def test_generate_continues_and_stops(compiled: dict[str, Compiled]) -> None:
    model = compiled["base_lcm"].model
    prompt = docs_batch()["concepts"][:, :3]
    out = generate(model, prompt, 4, jax.random.key(0), OPTIONS)
    assert out.concepts.shape == (2, 4, D) and list(out.lengths) == [4, 4]
    stop = out.concepts[0, 1]
    again = generate(model, prompt, 4, jax.random.key(0), OPTIONS, stop, stop_threshold=0.99999)
    np.testing.assert_allclose(again.concepts, out.concepts, atol=1e-6)  # same keys, same draws
    assert again.lengths[0] == 2


def test_unconditional_denoiser_ignores_the_context(compiled: dict[str, Compiled]) -> None:
    batch = docs_batch()
    x_t = jax.random.normal(jax.random.key(5), (2, T, D))
    blind = jnp.zeros((2, T, T), bool)

    @nnx.jit
    def denoise(model: TwoTowerLCM, b: dict[str, jax.Array]) -> jax.Array:
        return model.denoiser(x_t, 10, model.denoiser.project_context(model.encode(b)), blind)

    model = compiled["two_tower"].model
    other = dict(batch, concepts=batch["concepts"] * -2.0)
    np.testing.assert_allclose(denoise(model, batch), denoise(model, other), atol=1e-6)


def loss_and_grads(model: nnx.Module, rng: jax.Array) -> tuple[jax.Array, Any]:
    """The training loss of ``model`` on :func:`docs_batch` and its parameter gradients."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p: Any) -> jax.Array:
        return nnx.merge(graphdef, p, rest).loss(docs_batch(), rng)[0]

    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("name", VARIANTS)
def test_remat_wraps_every_block(name: str, codebooks: np.ndarray) -> None:
    """``remat`` reaches every stack: one rematerialized call per block in the loss."""
    model = make(name, codebooks, dataclasses.replace(TC, remat=True))
    graphdef, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(lambda s: nnx.merge(graphdef, s).loss(docs_batch(), jax.random.key(0)))
    remats = sum(e.primitive.name.startswith("remat") for e in jaxpr(state).eqns)
    stacks = 2 if name == "two_tower" else 1  # contextualizer and denoiser
    assert remats == stacks * TC.num_layers


def test_remat_gives_the_same_loss_and_gradients(codebooks: np.ndarray) -> None:
    """Two-Tower (a masked stack and a denoiser stack), with dropout so keys cross remat."""
    tc = dataclasses.replace(TC, dropout=0.1)
    rng = jax.random.key(7)
    loss, grads = loss_and_grads(build("two_tower", codebooks, tc), rng)
    remat = dataclasses.replace(tc, remat=True)
    loss_r, grads_r = loss_and_grads(build("two_tower", codebooks, remat), rng)
    np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grads_r, grads
    )


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def tiny_config(variant: str, run_dir: Path, *overrides: str) -> TrainConfig:
    return load_train_config(
        REPO / "configs" / "lcm" / f"{variant}_tiny.yaml",
        [f"run_dir={run_dir}", "steps=30", "log_every=1", "checkpoint.every=10", *overrides],
    )


@pytest.fixture(scope="module")
def persistent_xla_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A persistent XLA cache for this module's trainer runs.

    Each ``train()`` jits its step anew, so a resumed run recompiles exactly what the first
    run compiled; with the cache it loads the executable instead (tens of seconds saved).
    """
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = {name: getattr(jax.config, name) for name in names}
    xla_cache.reset_cache()
    jax.config.update(names[0], str(tmp_path_factory.mktemp("xla-cache")))
    jax.config.update(names[1], 0.0)
    yield
    for name, value in old.items():
        jax.config.update(name, value)
    xla_cache.reset_cache()


@pytest.fixture(scope="module")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, persistent_xla_cache: None
) -> Callable[[str], Path]:
    """``variant -> run dir`` of its tiny config trained for 30 steps (once per module)."""
    root = tmp_path_factory.mktemp("runs")
    done: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in done:
            train(tiny_config(variant, root / variant), progress=False)
            done[variant] = root / variant
        return done[variant]

    return get


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_config_trains_checkpoints_and_resumes(
    variant: str, tiny_run: Callable[[str], Path], tmp_path: Path
) -> None:
    full_dir = tiny_run(variant)
    # A run preempted after its step-20 checkpoint: the same files, without step 30.
    shutil.copytree(full_dir, tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "30")
    resumed = train(tiny_config(variant, tmp_path / "cut"), progress=False)
    assert resumed.resumed_from == 20 and resumed.step == 30
    full, cut = read_metrics(full_dir), read_metrics(tmp_path / "cut")
    losses = [r["loss"] for r in full]
    assert len(full) == 30 and [r["loss"] for r in cut] == losses  # bit-identical
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses
    if "tower" in variant:  # classifier-free-guidance dropout at the configured rate
        rate = np.mean([r["cfg_dropped"] for r in full])
        assert rate == pytest.approx(0.15, abs=0.03)


def test_trainer_step_with_remat_matches_the_plain_run(
    tiny_run: Callable[[str], Path], tmp_path: Path
) -> None:
    remat = ["model.context.remat=true", "model.denoiser.remat=true"]
    train(tiny_config("two_tower", tmp_path, *remat), progress=False, stop_at=3)
    got = [r["loss"] for r in read_metrics(tmp_path)]
    want = [r["loss"] for r in read_metrics(tiny_run("two_tower"))][:3]
    assert got == pytest.approx(want, rel=1e-5)


def test_eval_cli_scores_trained_runs(
    tiny_run: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lcm.cli.eval import main as eval_main

    runs = [str(tiny_run("base_lcm")), str(tiny_run("two_tower"))]
    argv = [*runs, "--split", "all", "--max-rows", "16", "--ddim-steps", "4"]
    assert eval_main([*argv, "--json", str(tmp_path / "scores.json")]) == 0
    table = capsys.readouterr().out
    assert "| run | family | step | l2 | l2-r | CA |" in table and "| base_lcm | 30 |" in table
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert [s["family"] for s in scores] == ["base_lcm", "two_tower"]
    for s in scores:
        assert s["count"] > 50 and s["l2_round_trip"] is None  # no codec given
        assert 0.5 < s["contrastive_accuracy"] <= 1.0
    assert scores[0]["l2"] < scores[0]["l2_copy"]  # better than repeating the last concept
