"""The one training loop: setup -> mesh -> data -> model/optimizer -> restore -> loop.

The step is a pure jitted function ``(state, batch) -> (state, metrics)`` with the state
donated and the step's randomness from ``fold_in(key, step)``. Metrics stay on device until a
log or checkpoint boundary, so logging never blocks dispatch; every fetched loss is checked
for NaN/inf and the run stops naming the exact step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from lcm.config import save_yaml
from trainers.checkpoint import Checkpointer
from trainers.config import TrainConfig
from trainers.mesh import batch_sharding, make_mesh, replicated, state_shardings
from trainers.optim import learning_rate_schedule, make_optimizer
from trainers.task import DataContext, Task
from trainers.tasks import get_task

log = logging.getLogger(__name__)

# Fault injection for tests of preemption: SIGKILL this process right after that step.
KILL_AFTER_STEP_ENV = "LCM_DEBUG_KILL_AFTER_STEP"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite."""


@dataclasses.dataclass
class TrainResult:
    """What a finished run returns."""

    run_dir: Path
    step: int
    resumed_from: int | None
    last_metrics: dict[str, float]


@dataclasses.dataclass
class ModelState:
    """The pieces of a split model that the jitted step closes over or carries.

    Attributes:
        graphdef: Static structure of the model (split once, reused by every step).
        abstract: Abstract train state (ShapeDtypeStruct leaves with shardings).
        shardings: NamedSharding tree matching the train state.
    """

    graphdef: Any
    abstract: Any
    shardings: Any


def init_train_state(
    task: Task, cfg: TrainConfig, mesh: jax.sharding.Mesh, tx: optax.GradientTransformation
) -> tuple[dict[str, Any], ModelState]:
    """Create the sharded train state without ever materializing an unsharded model.

    The model is first built abstractly (``nnx.eval_shape``) to read its structure and the
    logical axis names of its parameters; the real initialization then runs under ``jit`` with
    ``out_shardings``, so every device creates only its own shards.

    Returns:
        ``({"step", "params", "buffers", "opt_state"}, ModelState)``.
    """
    init_key = jax.random.fold_in(jax.random.key(cfg.seed), 0)

    def build() -> nnx.Module:
        return task.build_model(cfg.model, cfg.data, nnx.Rngs(init_key))

    abstract_model = nnx.eval_shape(build)
    graphdef, abstract_params, abstract_buffers = nnx.split(abstract_model, nnx.Param, ...)
    if jax.tree.leaves(nnx.split(abstract_model, nnx.RngState, ...)[1]):
        raise TypeError(
            f"task {task.name!r}: the model holds RNG state; take randomness from the `rng` "
            "argument of loss() instead, so the train step stays a pure function"
        )
    param_specs = nnx.to_pure_dict(nnx.get_partition_spec(abstract_params))
    abstract_params = nnx.to_pure_dict(abstract_params)
    param_shardings = state_shardings(param_specs, abstract_params, mesh)
    buffer_shardings = jax.tree.map(lambda _: replicated(mesh), nnx.to_pure_dict(abstract_buffers))

    def init() -> tuple[Any, Any]:
        _, params, buffers = nnx.split(build(), nnx.Param, ...)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(buffers)

    with jax.set_mesh(mesh):
        params, buffers = jax.jit(init, out_shardings=(param_shardings, buffer_shardings))()
        opt_state = jax.jit(tx.init)(params)
    state = {
        "step": jax.device_put(jnp.zeros((), jnp.int32), replicated(mesh)),
        "params": params,
        "buffers": buffers,
        "opt_state": opt_state,
    }
    shardings = jax.tree.map(lambda x: x.sharding, state)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    return state, ModelState(graphdef=graphdef, abstract=abstract, shardings=shardings)


def make_train_step(
    graphdef: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    seed: int,
    shardings: Any,
) -> Callable[[dict[str, Any], dict[str, jax.Array]], tuple[dict[str, Any], dict[str, Any]]]:
    """Build the jitted, state-donating train step."""
    train_key = jax.random.fold_in(jax.random.key(seed), 1)

    def train_step(
        state: dict[str, Any], batch: dict[str, jax.Array]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        step = state["step"]
        rng = jax.random.fold_in(train_key, step)

        def loss_fn(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            model = nnx.merge(graphdef, params, state["buffers"])
            return model.loss(batch, rng)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "lr": jnp.asarray(schedule(step), jnp.float32),
        }
        new_state = {**state, "step": step + 1, "params": params, "opt_state": opt_state}
        return new_state, metrics

    return jax.jit(train_step, donate_argnums=0, out_shardings=(shardings, None))


class MetricsLog:
    """Collects per-step device metrics; fetches, checks and writes them at boundaries.

    Only process 0 writes ``metrics.jsonl``; every process checks the loss for NaN/inf.
    """

    def __init__(self, path: Path, batch_size: int, write: bool):
        self.path = path
        self.batch_size = batch_size
        self.write = write
        self._pending: list[tuple[int, dict[str, jax.Array]]] = []
        self._t0 = time.perf_counter()
        self.last: dict[str, float] = {}

    def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
        """Record the device metrics of completed step ``step`` (no host sync)."""
        self._pending.append((step, metrics))

    def flush(self) -> dict[str, float] | None:
        """Fetch pending metrics, raise on a non-finite loss, append one averaged record."""
        if not self._pending:
            return None
        steps = [s for s, _ in self._pending]
        fetched = jax.device_get([m for _, m in self._pending])
        self._pending.clear()
        for step, m in zip(steps, fetched):
            if not np.isfinite(m["loss"]):
                raise NonFiniteLossError(
                    f"loss is {float(m['loss'])} at step {step}; stopping "
                    "(lower optim.lr, check the data, or enable gradient clipping)"
                )
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        self._t0 = time.perf_counter()
        record: dict[str, float] = {"step": steps[-1]}
        for key in fetched[0]:
            values = np.asarray([m[key] for m in fetched], dtype=np.float64)
            # Counts add up over the interval; everything else is averaged.
            record[key] = float(values.sum() if key == "tokens" else values.mean())
        record["steps_per_s"] = len(steps) / elapsed
        record["items_per_s"] = len(steps) * self.batch_size / elapsed
        if "tokens" in record:
            record["tokens_per_s"] = record["tokens"] / elapsed
        if self.write:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        self.last = record
        return record

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (written by a run that died after its last checkpoint)."""
        if not self.write or not self.path.exists():
            return
        kept = [
            line
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.path)


def _global_batch(local: dict[str, np.ndarray], sharding: jax.sharding.NamedSharding) -> Any:
    """Assemble the global, sharded batch from this process's rows."""
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()
    }


def train(
    cfg: TrainConfig,
    *,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
) -> TrainResult:
    """Run (or resume) a training run described by ``cfg``.

    Args:
        cfg: The resolved training config.
        resume: Continue from the latest readable checkpoint in ``<run_dir>/checkpoints``.
        progress: Show a tqdm bar (process 0 only).
        stop_at: Stop after this step with a checkpoint (the schedule still spans
            ``cfg.steps``), e.g. to train a long run in time-boxed pieces.

    Returns:
        The final step, the step resumed from (if any) and the last logged metrics.

    Raises:
        NonFiniteLossError: The loss became NaN or inf; the message names the step.
    """
    # --- setup
    task = get_task(cfg.task)
    run_dir = Path(cfg.run_dir)
    is_main = jax.process_index() == 0
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / "config.yaml")
    # --- mesh
    mesh = make_mesh(cfg.mesh)
    # --- data
    ctx = DataContext(
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    source = task.build_data(cfg.data, cfg.model, ctx)
    # --- model and optimizer
    tx = make_optimizer(cfg.optim, cfg.steps)
    state, model_state = init_train_state(task, cfg, mesh, tx)
    # --- restore
    checkpointer = Checkpointer(
        run_dir / "checkpoints",
        every=cfg.checkpoint.every,
        keep=cfg.checkpoint.keep,
        async_save=cfg.checkpoint.async_save,
    )
    metrics_log = MetricsLog(run_dir / "metrics.jsonl", cfg.batch_size, write=is_main)
    start, resumed_from = 0, None
    restored = checkpointer.restore_latest(model_state.abstract) if resume else None
    if restored is not None:
        resumed_from, state, meta = restored
        start = int(meta.get("data_step", resumed_from))
        metrics_log.truncate_after(resumed_from)
        log.info("resumed %s from step %d", run_dir, resumed_from)
    elif is_main:
        metrics_log.truncate_after(0)
    # --- loop
    step_fn = make_train_step(
        model_state.graphdef,
        tx,
        learning_rate_schedule(cfg.optim, cfg.steps),
        cfg.seed,
        model_state.shardings,
    )
    data_sharding = batch_sharding(mesh)
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    kill_after = int(os.environ.get(KILL_AFTER_STEP_ENV, "-1"))
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc=f"train {cfg.task}",
        disable=not (progress and is_main),
        dynamic_ncols=True,
    )
    try:
        with jax.set_mesh(mesh):
            for step in range(start, end):
                batch = _global_batch(source.batch(step), data_sharding)
                state, metrics = step_fn(state, batch)
                done = step + 1
                metrics_log.add(done, metrics)
                bar.update(1)
                save_now = checkpointer.should_save(done) or done == end
                if done % cfg.log_every == 0 or save_now:
                    record = metrics_log.flush()
                    if record is not None:
                        bar.set_postfix(_postfix(record), refresh=False)
                if save_now:
                    checkpointer.save(done, state, {"data_step": done, "task": cfg.task})
                if done == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
        checkpointer.wait()
    finally:
        bar.close()
        checkpointer.close()
    return TrainResult(
        run_dir=run_dir,
        step=max(start, end),
        resumed_from=resumed_from,
        last_metrics=metrics_log.last,
    )


def _postfix(record: dict[str, float]) -> dict[str, str]:
    out = {"loss": f"{record['loss']:.4g}"}
    if "tokens_per_s" in record:
        out["tok/s"] = f"{record['tokens_per_s']:.0f}"
    else:
        out["ex/s"] = f"{record['items_per_s']:.0f}"
    return out
