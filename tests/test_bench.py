"""lcm.bench (``lcm bench``): the meshes of each sharding, a scaling run from an installed
copy of the packages outside the checkout, the shipped bench files, and the performance parts."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

import encoders
from lcm.bench import run as bench
from trainers.config import load_train_config

PACKAGES = ("lcm", "encoders", "trainers")  # [tool.setuptools.packages.find] of pyproject.toml


def test_plan_meshes() -> None:
    shardings = ["data", "fsdp", "fsdp+model"]
    assert bench.plan_meshes(shardings, 1) == [("data", (1, 1, 1))]  # all the same mesh
    assert bench.plan_meshes(shardings, 8) == [
        ("data", (8, 1, 1)),
        ("fsdp", (1, 8, 1)),
        ("fsdp+model", (1, 4, 2)),
    ]
    assert bench.plan_meshes(["fsdp+model"], 3) == []
    with pytest.raises(ValueError, match="unknown sharding"):
        bench.plan_meshes(["pipeline"], 2)


def _shipped(path: Path, package_data: dict[str, list[str]]) -> bool:
    """Whether a pip install ships ``path`` (a file under one of PACKAGES): a module, or
    package data of its package (or of a package above it, for patterns with a folder)."""
    if path.suffix == ".py":
        return True
    rel = path.relative_to(REPO)
    for depth in range(1, len(rel.parts)):
        package, inside = ".".join(rel.parts[:depth]), "/".join(rel.parts[depth:])
        patterns = package_data.get("*", []) + package_data.get(package, [])
        if any(
            fnmatch.fnmatchcase(inside, p) and p.count("/") == inside.count("/") for p in patterns
        ):
            return True
    return False


def _install_copy(site: Path) -> None:
    """What ``pip install`` lays out in site-packages: the modules of PACKAGES and the package
    data that pyproject.toml declares; nothing else of the checkout (configs/, tests/, tools/)."""
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    for root in PACKAGES:
        for path in (REPO / root).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and _shipped(path, package_data):
                target = site / path.relative_to(REPO)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)


def test_bench_files_ship_with_the_package() -> None:
    """Every data file of lcm.bench is package data, and the named bench configs load."""
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    files = [p for p in (REPO / "lcm/bench").rglob("*") if p.is_file() and p.suffix != ".pyc"]
    assert {p.name for p in files} >= {"sentences.txt", "base_lcm_512.yaml", "torch_peer.py"}
    assert all(_shipped(p, package_data) for p in files), files
    for name, path in bench.TRAIN_CONFIGS.items():
        assert path.parent == bench.HERE / "configs"
        assert load_train_config(path).family == name.removesuffix("_1b")
    lines = bench.SENTENCES.read_text(encoding="utf-8").splitlines()
    sentences, origin = bench._sentences(None, Path("/nonexistent/codec-data"), 100)
    assert origin == str(bench.SENTENCES) and len(sentences) == 100
    assert sentences[: len(lines)] == lines and len(lines) >= 32


def test_random_codec_has_the_default_architecture() -> None:
    """``--codec random`` without ``--codec-config``: the shipped codec's model config and
    tokenizer, random weights."""
    default = encoders.load("default")
    codec = bench.random_codec(None, None, "float32")
    assert codec.config == default.config
    assert codec.tokenizer.vocab_size == default.tokenizer.vocab_size
    sentences = ["The bridge was closed for repairs."]
    assert codec.tokenizer.encode(sentences) == default.tokenizer.encode(sentences)


def test_scaling_report_runs_without_a_checkout(tmp_path: Path) -> None:
    """``lcm bench scaling`` from an installed copy of the packages, in a directory outside the
    checkout: the built-in tiny Base-LCM, each device count in a ``python -m lcm.bench``
    worker process."""
    site, cwd = tmp_path / "site-packages", tmp_path / "elsewhere"
    _install_copy(site)
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import lcm.bench; print(lcm.bench.__file__)"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=True,
    )
    assert Path(where.stdout.strip()) == site / "lcm/bench/__init__.py"
    out = tmp_path / "scaling.json"
    cmd = [sys.executable, "-m", "lcm.cli", "bench", "scaling", "--quick", "--devices", "2"]
    cmd += ["--shardings", "data,fsdp", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Scaling report: tiny Base-LCM (built in)" in proc.stdout
    assert "correctness-grade only" in proc.stdout and "| 2 | fsdp | (1, 2, 1) |" in proc.stdout
    data, fsdp = json.loads(out.read_text())["records"]
    assert data["param_arrays_sharded"] == 0 and fsdp["param_arrays_sharded"] > 0
    assert fsdp["param_bytes_per_device"] < data["param_bytes_per_device"]
    assert fsdp["opt_bytes_per_device"] < data["opt_bytes_per_device"]
    assert data["param_bytes"] == 4 * 21_712  # float32 parameters of tiny_base_lcm()
    assert data["step_ms"] > 0 and data["tokens_per_s"] > 0  # concepts, for an LCM


def test_bench_help_lists_the_parts() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lcm.bench", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    assert out.startswith("usage: lcm bench")
    for part in ("all", "peak", "train", "generate", "codec", "startup", "scaling"):
        assert part in out


# ---------------------------------------------------------------- performance parts (issue 7)

TINY = [str(REPO / "configs/lcm/base_lcm_tiny.yaml"), str(REPO / "configs/lcm/two_tower_tiny.yaml")]
NO_DROPOUT = {
    "base_lcm": ["model.decoder.dropout=0.0"],
    "two_tower": ["model.context.dropout=0.0", "model.denoiser.dropout=0.0"],
}
needs_torch = pytest.mark.skipif(not bench.torch_available(), reason="PyTorch (bench extra)")


def _loss_fn(cfg):
    """Model, its parameters and ``params -> loss`` on the first batch of ``cfg``, with every
    parameter perturbed (so no zero-initialized AdaLN gate hides a path)."""
    import jax
    import numpy as np
    from flax import nnx

    from lcm.data.concepts import ConceptSource

    model = bench.init_model(cfg)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    noise = np.random.default_rng(1)
    pure = jax.tree.map(
        lambda x: x + 0.1 * noise.normal(size=x.shape).astype(np.float32),
        nnx.to_pure_dict(params),
    )
    batch = ConceptSource(cfg.data, batch_size=cfg.batch_size, seed=0).batch(0)

    def loss(p, rng):
        return nnx.merge(graphdef, p, rest).loss(batch, rng)[0]

    return pure, batch, loss


@pytest.mark.parametrize("config", TINY, ids=lambda c: Path(c).stem)
def test_train_flops_match_xla_cost_analysis(config: str) -> None:
    """The analytic count is within 3% of XLA's own count of the loss gradient (which adds
    the elementwise work on top of the matmuls)."""
    import jax

    cfg = load_train_config(config, ["model.d_model=128"])
    params, batch, loss = _loss_fn(cfg)
    grad = jax.jit(jax.grad(loss)).lower(params, jax.random.key(0)).compile()
    rows, seq, dim = batch["concepts"].shape
    analytic = bench.train_flops(cfg, dim, rows, seq)
    assert 0.97 < analytic / bench._xla_flops(grad) <= 1.0


@needs_torch
@pytest.mark.parametrize("config", TINY, ids=lambda c: Path(c).stem)
def test_torch_peer_matches_jax(config: str) -> None:
    """Same weights copied across: same parameter count, loss, gradients, and parameters
    after one clipped AdamW step."""
    import jax
    import numpy as np
    import optax
    import torch

    from lcm.bench import torch_peer
    from lcm.models.common import drop_mask
    from trainers.optim import make_optimizer

    task = load_train_config(config).family
    cfg = load_train_config(config, [*NO_DROPOUT[task], "optim.warmup_steps=0"])
    params, batch, loss = _loss_fn(cfg)
    rng = jax.random.key(3)
    peer = torch_peer.build_model(cfg, batch["concepts"].shape[-1])
    assert torch_peer.num_params(peer) == sum(x.size for x in jax.tree.leaves(params))
    torch_peer.load_jax_params(peer, params)
    noise = None
    if cfg.family == "two_tower":  # the draws of TwoTowerLCM.loss, handed to the peer
        _, r_t, r_noise, r_drop, _ = jax.random.split(rng, 5)
        seg = batch["segment_ids"]
        t = jax.random.randint(r_t, seg.shape, 0, cfg.model.schedule.num_steps)
        noise = {
            "t": torch.from_numpy(np.array(t)).long(),
            "noise": torch.from_numpy(
                np.array(jax.random.normal(r_noise, batch["concepts"].shape))
            ),
            "dropped": torch.from_numpy(
                np.array(drop_mask(r_drop, seg.shape, cfg.model.cfg_drop_prob))
            ),
        }
    value, grads = jax.jit(jax.value_and_grad(loss))(params, rng)
    step = torch_peer.TrainStep(peer, cfg.optim, cfg.steps)
    t_loss = step(torch_peer.to_torch(batch), noise)
    np.testing.assert_allclose(float(t_loss), float(value), rtol=1e-5)

    def torch_layout(name: str, x) -> tuple[str, np.ndarray]:
        """A JAX parameter's peer name and layout (kernel [in, (k,) out] -> weight)."""
        x = np.asarray(x)
        if name.endswith("kernel"):
            return name[: -len("kernel")] + "weight", x.reshape(x.shape[0], -1).T
        return name, x

    # The peer clipped its gradients in place (by max_norm / (norm + 1e-6)) before its step.
    norm = float(optax.tree.norm(grads))
    clipped = jax.tree.map(lambda g: g * min(1.0, cfg.optim.clip_norm / norm), grads)
    flat_grads = torch_peer.flatten_params(clipped)
    tx = make_optimizer(cfg.optim, cfg.steps)
    stepped = jax.jit(lambda p, g: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))
    stepped = torch_peer.flatten_params(stepped(params, grads))
    named = dict(peer.named_parameters())
    for name, g in flat_grads.items():
        t_name, g = torch_layout(name, g)
        # The peer already took its step: compare its gradient and its new parameter.
        np.testing.assert_allclose(named[t_name].grad.numpy(), g, rtol=1e-3, atol=1e-5)
        # Adam's first update is lr * g / (|g| + eps), about lr * sign(g): compare where the
        # gradient is well above the float noise of the two backward passes.
        _, p = torch_layout(name, stepped[name])
        sure = np.abs(g) > 1e-4
        assert sure.mean() > 0.5
        np.testing.assert_allclose(
            named[t_name].detach().numpy()[sure], p[sure], rtol=1e-5, atol=1e-6
        )


def test_perf_parts_report(tmp_path: Path) -> None:
    """``all --quick`` on the tiny configs and the tiny codec: every part reports, the JSON
    has the fields the tables of docs/performance.md are made of, and the goals are evaluated."""
    from codec_fixtures import prepared_data

    out = tmp_path / "bench.json"
    argv = [
        "all",
        "--quick",
        "--configs",
        ",".join(TINY),
        "--codec",
        "random",
        "--codec-config",
        str(REPO / "configs/encoders/codec_tiny.yaml"),
        "--tokenizer",
        str(prepared_data() / "tokenizer.model"),
        "--sentences",
        str(REPO / "tests/fixtures/tiny.txt"),
        "--out",
        str(out),
    ]
    small = ["train_rounds=2", "gen_concepts=4", "gen_prompt=2", "gen_repeats=1"]
    small += ["codec_sentences=64", "codec_decode=16", "codec_repeats=1"]
    for item in small:
        argv += ["--size", item]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["peak"]["jax_gflops"] > 0 and report["host"]["platform"] == "cpu"
    with_torch = bench.torch_available()
    for record, task in zip(report["train"], ["base_lcm", "two_tower"]):
        assert record["model"] == task and record["batch_size"] == bench.QUICK.train_batch
        assert record["timed_steps"] == 2 * bench.QUICK.steps_per_round
        assert record["jax"]["concepts_per_s"] > 0 and 0 < record["jax"]["mfu"]
        assert 0.9 < record["model_gflop_per_step"] / record["xla_gflop_per_step"] < 1.1 or (
            record["model_gflop_per_step"] < record["xla_gflop_per_step"]  # tiny: elementwise
        )
        assert record["time_to_first_step_s"] >= record["compile_s"] > 0
        assert (record["torch"] is not None) == with_torch
        if with_torch:
            assert record["ratio"] == pytest.approx(
                record["torch"]["step_ms"] / record["jax"]["step_ms"]
            )
    for record in report["generate"]:
        one, many = record["batches"]
        assert (one["batch"], many["batch"]) == (1, 32)
        assert record["batch_ratio"] == pytest.approx(
            many["sentences_per_s"] / one["sentences_per_s"]
        )
        assert record["time_to_first_sentence_s"] > 0
        for b in (one, many):  # timed apart; at smoke sizes it may be all of a call
            assert b["prefill_ms"] > 0
            loop = b["decode_loop_sentences_per_s"]
            assert loop is None or loop > b["sentences_per_s"]
        loops = [b["decode_loop_sentences_per_s"] for b in (one, many)]
        if None not in loops:
            assert record["decode_loop_batch_ratio"] == pytest.approx(loops[1] / loops[0])
        else:
            assert record["decode_loop_batch_ratio"] is None
    assert report["generate"][1]["ddim_steps"] == 40
    codec = report["codec"]
    assert codec["sentences"] == 64 and codec["decode_sentences"] == 16 and not codec["trained"]
    assert codec["encode_sentences_per_s"] > 0 and codec["decode_sentences_per_s"] > 0
    assert [(b["beam_size"], b["rerank"]) for b in codec["decode_beam"]] == list(
        bench.BEAM_DECODINGS
    )
    assert all(b["sentences_per_s"] > 0 for b in codec["decode_beam"])
    goals = {g["goal"]: g for g in report["goals"]}
    assert (
        "codec: encode sentences/s" in goals
        and "two_tower: generation batch 32 / batch 1 sentences/s" in goals
    )
    assert all(g["met"] == (g["measured"] >= g["target"]) for g in goals.values())
    assert not any("MFU" in g for g in goals)  # only the d_model=512 configs have an MFU goal


def test_startup_cold_and_warm(tmp_path: Path) -> None:
    """Fresh processes share one new compilation cache: the warm start skips compilation."""
    records = bench.bench_startup([str(REPO / "configs/lcm/base_lcm_tiny.yaml")], [], None)
    assert [r["what"] for r in records] == ["train", "generate"]
    for r in records:
        assert 0 < r["warm"] < r["cold"]
