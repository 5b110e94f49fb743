"""Joining a multi-process JAX job (``jax.distributed``), from our launcher or a cluster.

``lcm launch`` sets ``LCM_COORDINATOR_ADDRESS``, ``LCM_NUM_PROCESSES`` and ``LCM_PROCESS_ID``
for each local process. On a cluster, set ``LCM_DISTRIBUTED=1`` (or ``auto``) and JAX
detects the job from its environment (SLURM, Open MPI, TPU); or export the three variables
yourself, with the coordinator on the first host. Must run before any JAX computation.

:class:`ProcessGroup` is the job as a host-side program sees it (which process, how many) with
the one collective such a program needs: exchanging short texts (``lcm data embed`` splits its
shards by process index and gathers what each process wrote).
"""

from __future__ import annotations

import dataclasses
import logging
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)

COORDINATOR_ENV = "LCM_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "LCM_NUM_PROCESSES"
PROCESS_ID_ENV = "LCM_PROCESS_ID"
AUTO_ENV = "LCM_DISTRIBUTED"


def initialize_from_env() -> bool:
    """Call ``jax.distributed.initialize`` if the environment asks for it.

    Returns:
        True when this process joined a multi-process job.

    Raises:
        ValueError: The ``LCM_*`` variables are incomplete or not integers.
    """
    explicit = [os.environ.get(k) for k in (COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV)]
    if any(explicit):
        if not all(explicit):
            raise ValueError(
                f"set all of {COORDINATOR_ENV}, {NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} "
                "(or none of them)"
            )
        address, num, pid = explicit
        try:
            num_processes, process_id = int(num), int(pid)  # type: ignore[arg-type]
        except ValueError as e:
            raise ValueError(f"{NUM_PROCESSES_ENV}/{PROCESS_ID_ENV} must be integers") from e
        # CPU devices of different processes talk through gloo (no effect on GPU/TPU). Asking
        # jax for its backend here would initialize it too early, so set it unconditionally.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(address, num_processes=num_processes, process_id=process_id)
    elif os.environ.get(AUTO_ENV, "").lower() in ("1", "true", "auto"):
        jax.distributed.initialize()
    else:
        return False
    log.info(
        "process %d of %d joined (%d local / %d global devices)",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


# Gathered texts are padded to whole KiB so that repeated gathers reuse a few compiled programs.
_GATHER_BLOCK = 1024


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """The processes of this JAX job (one when ``jax.distributed`` was not started).

    Attributes:
        index: This process, ``0 <= index < count`` (``jax.process_index()``).
        count: Processes in the job (``jax.process_count()``).
    """

    index: int
    count: int

    @classmethod
    def current(cls) -> ProcessGroup:
        """This process's place in the job (call :func:`initialize_from_env` first)."""
        return cls(jax.process_index(), jax.process_count())

    def gather(self, text: str) -> list[str]:
        """Every process's ``text``, in process order.

        A collective: every process must call it, and it returns once all have; so it is a
        barrier too. Meant for short texts (JSON records): each is padded to the longest.
        """
        if self.count == 1:
            return [text]
        data = np.frombuffer(text.encode("utf-8"), np.uint8)
        sizes = np.asarray(multihost_utils.process_allgather(np.int32(data.size))).reshape(-1)
        width = max(1, -(-int(sizes.max()) // _GATHER_BLOCK)) * _GATHER_BLOCK
        padded = np.zeros(width, np.uint8)
        padded[: data.size] = data
        rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(self.count, width)
        return [bytes(rows[i, : sizes[i]]).decode("utf-8") for i in range(self.count)]
