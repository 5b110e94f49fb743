"""A run directory that defends itself: one trainer at a time, and no resume into another run.

- :class:`RunLock`: an exclusive ``flock`` on ``<run_dir>/.lock``, taken before anything in
  the directory is read or written. A second trainer is refused at once, naming the process
  that holds it. The kernel drops a ``flock`` when its process dies, SIGKILL included, so a
  lock file left by a dead process is simply taken over (with a warning naming it).
- :func:`check_resume`: the requested config against the one the run recorded, before any
  checkpoint is touched. Only keys that change the schedule ahead or the bookkeeping may
  differ (:data:`MAY_CHANGE`); each such change is logged. Anything else (the model, the
  data, the seed, the optimizer) is refused with the differing keys named: resuming would
  mix two runs in one directory.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from lcm.config import ConfigError, to_dict
from trainers.config import load_train_config

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# Dotted config keys a resume may change: how long the schedule runs (and its cooldown), how
# often it logs and saves, where the run lives and what it started from, and the device mesh
# (checkpoints restore onto any mesh).
MAY_CHANGE = (
    "steps",
    "optim.cooldown_steps",
    "log_every",
    "checkpoint.",
    "run_dir",
    "init_from",
    "mesh.",
)


class RunLockedError(RuntimeError):
    """Another live process trains in this run directory."""


class RunLock:
    """The exclusive lock of a run directory (a context manager).

    Args:
        run_dir: The run directory (created if needed).
    """

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunLockedError` naming its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise RunLockedError(
                    f"{self.path.parent} is in use by {holder or 'another process'}; wait for "
                    "it to finish, or train into another run_dir"
                ) from None
            raise
        previous = _read_holder(fd)
        if previous:
            log.warning("taking over the lock of %s, which is no longer running", previous)
        record = {"pid": os.getpid(), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays, empty: its next holder finds no previous owner)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """ "process PID on HOST" from a lock file's record, or "" when it has none."""
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"process {int(record['pid'])} on {record['host']}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return ""


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _normalized(value: Any) -> Any:
    """Lists and tuples compare alike (YAML has no tuples)."""
    return [_normalized(v) for v in value] if isinstance(value, list | tuple) else value


def check_resume(recorded_path: Path, requested: Any) -> list[str]:
    """Compare a requested config with the one a run recorded; refuse what would mix runs.

    Args:
        recorded_path: The run's ``config.yaml``.
        requested: The resolved :class:`~trainers.config.TrainConfig` of this invocation.

    Returns:
        The allowed changes, as "key: old -> new" lines (already logged).

    Raises:
        ConfigError: A key outside :data:`MAY_CHANGE` differs (all such keys are named).
    """
    # Parsed like the requested one, so a key added to the schema since the run started
    # compares as its default instead of as a change.
    try:
        recorded = load_train_config(recorded_path)
    except (ConfigError, ValueError) as e:
        raise ConfigError(
            f"{recorded_path}: the run's recorded config no longer parses ({e}); resume it with "
            "the version that wrote it, or start afresh in a new run_dir"
        ) from None
    old = _flat(json.loads(json.dumps(to_dict(recorded))))
    new = _flat(json.loads(json.dumps(to_dict(requested))))
    changed = sorted(
        k for k in old.keys() | new.keys() if _normalized(old.get(k)) != _normalized(new.get(k))
    )
    allowed = [k for k in changed if any(k == p or k.startswith(p) for p in MAY_CHANGE)]
    refused = [k for k in changed if k not in allowed]
    if refused:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in refused[:8])
        more = f" (and {len(refused) - 8} more)" if len(refused) > 8 else ""
        raise ConfigError(
            f"{recorded_path.parent} holds checkpoints of another config: {shown}{more}. "
            "Nothing was changed. Resume with the recorded config (only steps, "
            "optim.cooldown_steps, log_every, checkpoint.*, mesh.* may differ), or start "
            "afresh: a new run_dir, or --no-resume (the previous run moves to previous-<time>/)"
        )
    notes = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in allowed]
    for note in notes:
        log.info("resuming with a changed %s", note)
    return notes


# What a run writes into its directory (moved together when a new run starts there afresh).
RUN_FILES = ("checkpoints", "metrics.jsonl", "eval.jsonl", "config.yaml", "curves.png")


def has_checkpoints(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a completed checkpoint (a step directory)."""
    folder = run_dir / "checkpoints"
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def set_aside(run_dir: Path) -> Path:
    """Move the previous run's files into ``run_dir/previous-<time>/`` (``--no-resume``: a
    fresh start that loses nothing). Returns where they went."""
    target = run_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while target.exists():
        target = run_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        n += 1
    target.mkdir()
    for name in RUN_FILES:
        if (run_dir / name).exists():
            os.replace(run_dir / name, target / name)
    log.warning("--no-resume: moved the previous run of %s to %s", run_dir, target)
    return target
