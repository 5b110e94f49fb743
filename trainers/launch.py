"""``lcm launch``: run one command as N cooperating local processes (multi-host on one box).

Each process gets the ``LCM_*`` variables of :mod:`trainers.distributed` and, on CPU, its own
``--xla_force_host_platform_device_count``, so a 2-process x 2-device job exercises exactly
the code paths of a 2-host cluster. Output lines are prefixed with the process index; if any
process fails, the others are stopped and the launcher exits with its status.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence

from trainers.distributed import COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_host_devices(env: dict[str, str], devices: int) -> dict[str, str]:
    """``env`` with ``XLA_FLAGS`` asking for ``devices`` simulated CPU devices (any earlier
    device count flag replaced)."""
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    flags.append(f"--xla_force_host_platform_device_count={devices}")
    return {**env, "XLA_FLAGS": " ".join(flags)}


def process_env(
    base: dict[str, str], index: int, num_processes: int, port: int, devices: int | None
) -> dict[str, str]:
    """Environment of local process ``index``."""
    env = dict(base)
    env[COORDINATOR_ENV] = f"127.0.0.1:{port}"
    env[NUM_PROCESSES_ENV] = str(num_processes)
    env[PROCESS_ID_ENV] = str(index)
    if devices is not None:
        env = with_host_devices(env, devices)
        env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def _pump(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(prefix + line)
        out.flush()


def launch(
    command: Sequence[str], num_processes: int, devices_per_process: int | None = None
) -> int:
    """Run ``command`` as ``num_processes`` local processes; return the first failing status."""
    if num_processes < 1:
        raise ValueError(f"need at least one process, got {num_processes}")
    port = free_port()
    procs: list[subprocess.Popen] = []
    threads = []
    for i in range(num_processes):
        env = process_env(dict(os.environ), i, num_processes, port, devices_per_process)
        p = subprocess.Popen(
            list(command),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        procs.append(p)
        t = threading.Thread(target=_pump, args=(p.stdout, f"[{i}] ", sys.stdout), daemon=True)
        t.start()
        threads.append(t)
    status = 0
    try:
        remaining = set(range(num_processes))
        while remaining:
            for i in list(remaining):
                code = procs[i].poll()
                if code is None:
                    continue
                remaining.discard(i)
                if code != 0 and status == 0:
                    status = code
                    print(
                        f"lcm launch: process {i} exited with {code}; stopping the others",
                        file=sys.stderr,
                    )
                    for j in remaining:
                        procs[j].send_signal(signal.SIGTERM)
            if remaining:
                try:
                    procs[next(iter(remaining))].wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGINT)
        status = 130
    for p in procs:
        p.wait()
    for t in threads:
        t.join(timeout=5)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """``lcm launch -n N [--devices-per-process K] -- COMMAND ...``."""
    parser = argparse.ArgumentParser(
        prog="lcm launch",
        description="Run a command as N local JAX processes joined by jax.distributed "
        "(loopback coordinator). Example: lcm launch -n 2 --devices-per-process 2 -- "
        "lcm train configs/examples/mlp_regression.yaml",
    )
    parser.add_argument("-n", "--num-processes", type=int, required=True)
    parser.add_argument(
        "--devices-per-process",
        type=int,
        default=None,
        help="on CPU: simulated devices per process (sets XLA_FLAGS and JAX_PLATFORMS=cpu)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    return launch(command, args.num_processes, args.devices_per_process)
