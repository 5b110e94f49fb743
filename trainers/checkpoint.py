"""Checkpoints behind one small class: orbax ``CheckpointManager``, async and atomic.

A checkpoint holds the train state (parameters, optimizer state, step) and a small JSON
record (data position, config name). Orbax writes each step to a temporary directory and
renames it when complete, so a run killed mid-save leaves the previous checkpoint intact.
Restoring goes against the abstract *sharded* state, so each process reads only its shards.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


# Fault injection for tests of preemption: "STEP:SECONDS" SIGKILLs this process SECONDS after
# the save of STEP starts, while the (asynchronous) write is under way.
KILL_DURING_SAVE_ENV = "LCM_DEBUG_KILL_DURING_SAVE"


def _maybe_kill_during_save(step: int) -> None:
    spec = os.environ.get(KILL_DURING_SAVE_ENV, "")
    if not spec or int(spec.split(":")[0]) != step:
        return
    delay = float(spec.split(":")[1]) if ":" in spec else 0.0
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL))
    timer.daemon = True
    timer.start()


# What orbax says when a restore target's layout differs from a checkpoint's (a changed
# model), as opposed to damaged files.
_LAYOUT_MISMATCH = (
    "is not compatible with the stored shape",
    "tree structures do not match",
    "dtype",
)


def _is_layout_mismatch(error: Exception) -> bool:
    text = str(error)
    return isinstance(error, ValueError) and any(m in text for m in _LAYOUT_MISMATCH)


class CheckpointError(RuntimeError):
    """No usable checkpoint could be restored."""


class Checkpointer:
    """Save every ``every`` steps (plus on demand), keep the last ``keep``, restore the latest.

    Args:
        directory: Where step directories live (created if missing).
        every: Save interval in steps (0 disables periodic saves).
        keep: How many checkpoints to keep.
        async_save: Write in a background thread so training is not blocked.
    """

    def __init__(self, directory: str | Path, every: int, keep: int, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.every = every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def should_save(self, step: int) -> bool:
        """Whether ``step`` is on the periodic save schedule."""
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Start saving ``state`` (a pytree of jax arrays) and ``meta`` (JSON) for ``step``."""
        _maybe_kill_during_save(step)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

    def all_steps(self) -> list[int]:
        """Steps of the completed checkpoints, ascending."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """Restore the newest readable checkpoint; fall back to older ones if it is corrupt.

        Args:
            abstract_state: Pytree of ``jax.ShapeDtypeStruct`` with shardings: the target layout.

        Returns:
            ``(step, state, meta)``, or None when there is no checkpoint at all.

        Raises:
            CheckpointError: Checkpoints exist but none of them can be read.
        """
        steps = self.all_steps()
        errors = []
        for step in reversed(steps):
            try:
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state),
                        meta=ocp.args.JsonRestore(),
                    ),
                )
            except Exception as e:  # orbax raises many types for a damaged directory
                if _is_layout_mismatch(e):
                    # Not damage: the model asks for other shapes or another tree than the
                    # checkpoint holds. Moving it aside would lose a good run.
                    first = str(e).strip().splitlines()[0]
                    raise CheckpointError(
                        f"checkpoint at step {step} in {self.directory} does not fit this "
                        f"model ({first}): the model's code or config changed since it was "
                        "written. Nothing was moved; resume with the code and config that "
                        "wrote it, or train into a new run_dir"
                    ) from None
                errors.append(f"step {step}: {type(e).__name__}: {e}")
                moved = self._quarantine(step)
                log.warning(
                    "checkpoint at step %d is unreadable (%s: %s); moved it to %s and trying "
                    "an older one",
                    step,
                    type(e).__name__,
                    e,
                    moved,
                )
                continue
            return step, restored["state"], dict(restored["meta"])
        if errors:
            raise CheckpointError(
                f"no readable checkpoint in {self.directory}:\n  " + "\n  ".join(errors)
            )
        return None

    def _quarantine(self, step: int) -> Path:
        """Rename a damaged step directory out of the way, keeping it for inspection."""
        src = self.directory / str(step)
        dst = self.directory / f"{step}.corrupt-{int(time.time())}"
        if jax.process_index() == 0 and src.exists():
            os.replace(src, dst)
        self._manager.reload()
        return dst

    def wait(self) -> None:
        """Block until pending asynchronous saves are committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release the manager (also when a save failed: its
        background writers must stop before the interpreter does)."""
        try:
            self._manager.wait_until_finished()
        finally:
            self._manager.close()
