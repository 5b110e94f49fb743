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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from lcm.config import save_yaml
from lcm.io import write_text_atomic
from trainers.checkpoint import Checkpointer
from trainers.config import TrainConfig
from trainers.mesh import batch_sharding, make_mesh
from trainers.optim import (
    frozen_labels,
    learning_rate_schedule,
    make_optimizer,
    stop_frozen_gradients,
)
from trainers.run_dir import RunLock, check_resume, has_checkpoints, set_aside
from trainers.state import StateLayout, plan_train_state, with_initial_weights
from trainers.task import BatchSource, DataContext
from trainers.tasks import get_task

log = logging.getLogger(__name__)

# Fault injection for tests of preemption: SIGKILL this process right after that step.
KILL_AFTER_STEP_ENV = "LCM_DEBUG_KILL_AFTER_STEP"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the run after a step, with a checkpoint of that step.

    Attributes:
        step: The step saved.
    """

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


class _StopOnInterrupt:
    """While active, the first SIGINT only asks the loop to stop after the current step; a
    second one interrupts at once (the previous handler)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclasses.dataclass
class TrainResult:
    """What a finished run returns."""

    run_dir: Path
    step: int
    resumed_from: int | None
    last_metrics: dict[str, float]


def _cast_floats(tree: Any, dtype: jnp.dtype) -> Any:
    """Cast the floating-point leaves of ``tree`` to ``dtype`` (integers and bools untouched)."""
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def make_train_step(
    graphdef: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    cfg: TrainConfig,
    shardings: Any,
) -> Callable[[dict[str, Any], dict[str, jax.Array]], tuple[dict[str, Any], dict[str, Any]]]:
    """Build the jitted, state-donating train step.

    With ``cfg.compute_dtype == "bfloat16"`` the forward and backward passes see bf16 copies of
    the float32 master parameters and of the floating batch arrays (models compute their loss
    reductions in float32). With ``cfg.grad_accum > 1`` the batch is split into strided
    micro-batches (so each device keeps an equal share of every micro-batch) whose gradients
    are averaged under ``lax.scan``.
    """
    train_key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    compute_dtype = jnp.dtype(cfg.compute_dtype)
    accum = cfg.grad_accum

    def micro_loss(
        params: Any, buffers: Any, batch: dict[str, jax.Array], rng: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        params = stop_frozen_gradients(params, cfg.optim.frozen)
        if compute_dtype != jnp.float32:
            params, batch = _cast_floats(params, compute_dtype), _cast_floats(batch, compute_dtype)
        model = nnx.merge(graphdef, params, buffers)
        loss, metrics = model.loss(batch, rng)
        return loss.astype(jnp.float32), metrics

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def accumulated_grads(
        params: Any, buffers: Any, batch: dict[str, jax.Array], rng: jax.Array
    ) -> tuple[tuple[jax.Array, dict[str, jax.Array]], Any]:
        if accum == 1:
            return grad_fn(params, buffers, batch, rng)
        # [B, ...] -> [accum, B / accum, ...] taking every accum-th row into a micro-batch.
        micro = jax.tree.map(
            lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1), batch
        )

        def body(carry: Any, inputs: tuple[Any, jax.Array]) -> tuple[Any, None]:
            mb, i = inputs
            out = grad_fn(params, buffers, mb, jax.random.fold_in(rng, i))
            return jax.tree.map(jnp.add, carry, out), None

        first = jax.tree.map(lambda x: x[0], micro)
        zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, params, buffers, first, rng))
        total, _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
        (loss, metrics), grads = jax.tree.map(lambda x: x / accum, total)
        if "tokens" in metrics:  # a count adds up over micro-batches
            metrics = {**metrics, "tokens": metrics["tokens"] * accum}
        return (loss, metrics), grads

    def train_step(
        state: dict[str, Any], batch: dict[str, jax.Array]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        step = state["step"]
        rng = jax.random.fold_in(train_key, step)
        (loss, metrics), grads = accumulated_grads(state["params"], state["buffers"], batch, rng)
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
        """Drop records past ``step`` (written by a run that died after its last checkpoint),
        and any line a crash left half-written (with a warning)."""
        if not self.write or not self.path.exists():
            return
        kept = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: dropped line %d, a partial record (%r)", self.path, number, line)
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line)
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))


def global_batch(local: dict[str, np.ndarray], sharding: jax.sharding.NamedSharding) -> Any:
    """Assemble the global, sharded batch from this process's rows."""
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()
    }


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A run ready for its first step (everything but the state itself).

    Attributes:
        mesh: The device mesh.
        source: This process's batch source.
        layout: The sharded layout of the train state (``layout.init()`` creates it).
        step: The jitted, state-donating ``(state, batch) -> (state, metrics)``.
        data_sharding: Sharding of the global batch.
    """

    mesh: jax.sharding.Mesh
    source: BatchSource
    layout: StateLayout
    step: Callable[[dict[str, Any], dict[str, jax.Array]], tuple[dict[str, Any], dict[str, Any]]]
    data_sharding: jax.sharding.NamedSharding

    def batch(self, step: int) -> dict[str, jax.Array]:
        """The global batch of ``step``, assembled from this process's rows."""
        return global_batch(self.source.batch(step), self.data_sharding)


def prepare(cfg: TrainConfig) -> Prepared:
    """Mesh, data, state layout and train step of ``cfg`` (no state is allocated).

    :func:`train` runs on this; so do tools that time or inspect the step, so they measure
    exactly the step a run takes.
    """
    task = get_task(cfg.family)
    mesh = make_mesh(cfg.mesh)
    ctx = DataContext(
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    source = task.build_data(cfg.data, cfg.model, ctx)
    tx = make_optimizer(cfg.optim, cfg.steps)
    layout = plan_train_state(task, cfg, mesh, tx)
    step = make_train_step(
        layout.graphdef, tx, learning_rate_schedule(cfg.optim, cfg.steps), cfg, layout.shardings
    )
    return Prepared(mesh, source, layout, step, batch_sharding(mesh))


def train(
    cfg: TrainConfig,
    *,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
    time_limit_s: float | None = None,
) -> TrainResult:
    """Run (or resume) a training run described by ``cfg``.

    Args:
        cfg: The resolved training config.
        resume: Continue from the latest readable checkpoint in ``<run_dir>/checkpoints``;
            ``False`` starts afresh, moving a previous run's files to
            ``<run_dir>/previous-<time>/`` (nothing is deleted).
        progress: Show a tqdm bar (process 0 only).
        stop_at: Stop after this step with a checkpoint (the schedule still spans
            ``cfg.steps``), e.g. to train a long run in time-boxed pieces.
        time_limit_s: Stop at the first logging step after this many seconds of wall time
            (setup and compilation included), with a checkpoint. Resuming continues exactly,
            because the data order depends on the step alone.

    Returns:
        The final step, the step resumed from (if any) and the last logged metrics.

    Raises:
        NonFiniteLossError: The loss became NaN or inf; the message names the step.
        RunLockedError: Another live process trains in ``run_dir``.
        ConfigError: ``run_dir`` holds checkpoints of a config that differs in more than the
            schedule length and bookkeeping (:func:`trainers.run_dir.check_resume`).
        TrainingInterrupted: Ctrl-C; a checkpoint of the step reached was saved.
    """
    # --- setup: the run directory is locked and checked before anything in it changes
    started = time.monotonic()
    run_dir = Path(cfg.run_dir)
    is_main = jax.process_index() == 0
    lock = RunLock(run_dir)
    if is_main:
        lock.acquire()
    try:
        return _train_locked(cfg, run_dir, started, resume, progress, stop_at, time_limit_s)
    finally:
        lock.release()


def _train_locked(
    cfg: TrainConfig,
    run_dir: Path,
    started: float,
    resume: bool,
    progress: bool,
    stop_at: int | None,
    time_limit_s: float | None,
) -> TrainResult:
    """:func:`train` once the run directory is locked."""
    is_main = jax.process_index() == 0
    if not resume and _all_agree(has_checkpoints(run_dir)):
        if is_main:
            set_aside(run_dir)
        _barrier("set aside the previous run")
    checkpointer = Checkpointer(
        run_dir / "checkpoints",
        every=cfg.checkpoint.every,
        keep=cfg.checkpoint.keep,
        async_save=cfg.checkpoint.async_save,
    )
    try:
        existing = checkpointer.all_steps()
        if existing and (run_dir / "config.yaml").is_file():
            check_resume(run_dir / "config.yaml", cfg)
    except BaseException:
        checkpointer.close()
        raise
    if is_main:
        save_yaml(cfg, run_dir / "config.yaml")
    # --- mesh, data, model and optimizer
    try:
        run = prepare(cfg)
    except BaseException:
        checkpointer.close()
        raise
    if cfg.optim.frozen:
        params = run.layout.abstract["params"]
        labels = jax.tree.leaves(frozen_labels(params, cfg.optim.frozen))
        sizes = [p.size for p in jax.tree.leaves(params)]
        n_frozen = sum(n for n, label in zip(sizes, labels) if label == "frozen")
        log.info("frozen %s: %d of %d parameters", list(cfg.optim.frozen), n_frozen, sum(sizes))
    # --- restore
    metrics_log = MetricsLog(run_dir / "metrics.jsonl", cfg.batch_size, write=is_main)
    start, resumed_from = 0, None
    restored = checkpointer.restore_latest(run.layout.abstract) if resume else None
    if restored is None:
        state = run.layout.init()
        if cfg.init_from:
            state = with_initial_weights(run.layout, state, cfg.init_from)
            log.info("initialized %s from %s", run_dir, cfg.init_from)
        metrics_log.truncate_after(0)  # a fresh run starts a fresh log
    else:
        resumed_from, state, meta = restored
        start = int(meta.get("data_step", resumed_from))
        metrics_log.truncate_after(resumed_from)
        log.info("resumed %s from step %d", run_dir, resumed_from)
    # --- loop
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    kill_after = int(os.environ.get(KILL_AFTER_STEP_ENV, "-1"))
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc=f"train {cfg.family}",
        disable=not (progress and is_main),
        dynamic_ncols=True,
    )
    # The next batch is assembled on a thread while the device runs the current step; the
    # order stays a pure function of the step.
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
    interrupt = _StopOnInterrupt()
    interrupted = False
    try:
        with jax.set_mesh(run.mesh), interrupt:
            upcoming = prefetch.submit(run.batch, start)
            for step in range(start, end):
                batch = upcoming.result()
                if step + 1 < end:
                    upcoming = prefetch.submit(run.batch, step + 1)
                state, metrics = run.step(state, batch)
                done = step + 1
                metrics_log.add(done, metrics)
                bar.update(1)
                log_now = done % cfg.log_every == 0
                out_of_time = (
                    log_now
                    and time_limit_s is not None
                    and _all_agree(time.monotonic() - started > time_limit_s)
                )
                # Every process stops at the same step: agreed on at logging steps when
                # there are several (a collective per step would cost them all).
                interrupted = (
                    interrupt.requested
                    if jax.process_count() == 1
                    else log_now and _all_agree(interrupt.requested)
                )
                save_now = (
                    checkpointer.should_save(done) or done == end or out_of_time or interrupted
                )
                if log_now or save_now:
                    record = metrics_log.flush()
                    if record is not None:
                        bar.set_postfix(_postfix(record), refresh=False)
                if save_now:
                    checkpointer.save(done, state, {"data_step": done, "family": cfg.family})
                if done == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                if out_of_time:
                    log.info("time limit of %.0f s reached at step %d", time_limit_s, done)
                    end = done
                    break
                if interrupted:
                    end = done
                    break
        checkpointer.wait()
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
        bar.close()
        checkpointer.close()
    if interrupted:
        raise TrainingInterrupted(end)
    return TrainResult(
        run_dir=run_dir,
        step=max(start, end),
        resumed_from=resumed_from,
        last_metrics=metrics_log.last,
    )


def _barrier(name: str) -> None:
    """Wait for every process (a no-op for one)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _all_agree(flag: bool) -> bool:
    """Process 0's ``flag`` on every process, so that all stop at the same step."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def _postfix(record: dict[str, float]) -> dict[str, str]:
    out = {"loss": f"{record['loss']:.4g}"}
    if "tokens_per_s" in record:
        out["tok/s"] = f"{record['tokens_per_s']:.0f}"
    else:
        out["ex/s"] = f"{record['items_per_s']:.0f}"
    return out
