"""Joining a multi-process JAX job (``jax.distributed``), from our launcher or a cluster.

``lcm launch`` sets ``LCM_COORDINATOR_ADDRESS``, ``LCM_NUM_PROCESSES`` and ``LCM_PROCESS_ID``
for each local process. On a cluster, set ``LCM_DISTRIBUTED=1`` (or ``auto``) and JAX
detects the job from its environment (SLURM, Open MPI, TPU); or export the three variables
yourself, with the coordinator on the first host. Must run before any JAX computation.
"""

from __future__ import annotations

import logging
import os

import jax

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
