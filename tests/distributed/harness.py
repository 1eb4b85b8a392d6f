"""Run a function on several processes joined by a gloo process group, or a script under torchrun.

A hang is a fast failure: each rank's process group has a short timeout, the
ranks run with ``TORCH_DISTRIBUTED_DEBUG=DETAIL`` where they can (collectives that
do not match then fail in milliseconds instead of waiting; ``DistributedDataParallel``
crashes with a segmentation fault under it in torch 2.13 on CPU, so launches that
use DDP pass ``debug="INFO"``), and the parent joins them with a deadline and
kills what is left. A launch costs 20-35 s on a 2-core machine
(importing torch in every process), so tests run several scenarios in one.

Example::

    def scenarios(rank: int, world: int) -> dict[str, object]:
        from trainbus_torch import TorchCollective
        return {"sum": TorchCollective().all_reduce([rank], "sum")}

    outcomes = run_ranks(scenarios, world=2)       # one Outcome per rank
    assert outcomes[0].value == {"sum": [1.0]}
"""

from __future__ import annotations

import contextlib
import datetime
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join([str(ROOT), str(ROOT / "adapters"), str(Path(__file__).parent)])


@dataclass
class Outcome:
    """What one rank ended with: its value (JSON round-tripped) or its error's traceback."""

    rank: int
    value: Any = None
    error: str | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise AssertionError(f"rank {self.rank} failed:\n{self.error}")
        return self.value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rank_main(
    target: Callable[..., Any],
    rank: int,
    world: int,
    port: int,
    group_timeout: float,
    args: tuple[Any, ...],
    results: Any,
    framework: str,
) -> None:
    try:
        if framework == "jax":
            import jax

            jax.distributed.initialize(
                coordinator_address=f"127.0.0.1:{port}",
                num_processes=world,
                process_id=rank,
                initialization_timeout=int(group_timeout),
            )
        else:
            import torch.distributed as dist

            dist.init_process_group(
                "gloo",
                init_method=f"tcp://127.0.0.1:{port}",
                rank=rank,
                world_size=world,
                timeout=datetime.timedelta(seconds=group_timeout),
            )
        value = target(rank, world, *args)
        results.put((rank, json.dumps(value), None))
    except BaseException:  # sent to the parent, whatever it is
        results.put((rank, None, traceback.format_exc()))
    finally:
        if framework == "torch":
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def run_ranks(
    target: Callable[..., Any],
    world: int,
    *,
    args: Sequence[Any] = (),
    timeout: float = 180.0,
    group_timeout: float = 10.0,
    env: Mapping[str, str] | None = None,
    debug: str = "DETAIL",
    framework: str = "torch",
) -> list[Outcome]:
    """Run ``target(rank, world, *args)`` on ``world`` spawned processes; their outcomes.

    ``target`` must be importable by the children (a module-level function of a
    module on ``sys.path``) and return something JSON can hold. The processes
    join a gloo process group (``framework="torch"``) or JAX's distributed
    runtime on the CPU (``framework="jax"``). Raises ``AssertionError`` if a
    rank neither returns nor fails within ``timeout``.
    """
    context = multiprocessing.get_context("spawn")
    saved = dict(os.environ)
    os.environ.update(
        {
            "TORCH_DISTRIBUTED_DEBUG": debug,
            "PYTHONPATH": PYTHONPATH,
            "JAX_PLATFORMS": "cpu",
            **(env or {}),
        }
    )
    port = free_port()
    results = context.Queue()
    processes = [
        context.Process(
            target=_rank_main,
            args=(target, rank, world, port, group_timeout, tuple(args), results, framework),
            daemon=True,
        )
        for rank in range(world)
    ]
    try:
        for process in processes:
            process.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    outcomes: dict[int, Outcome] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(outcomes) < world:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                rank, value, error = results.get(timeout=min(left, 1.0))
            except Exception:
                if all(not p.is_alive() for p in processes) and results.empty():
                    break
                continue
            outcomes[rank] = Outcome(rank, None if value is None else json.loads(value), error)
    finally:
        for process in processes:
            process.join(timeout=max(0.0, min(5.0, deadline - time.monotonic())))
            if process.is_alive():
                process.kill()
                process.join()
    missing = [rank for rank in range(world) if rank not in outcomes]
    if missing:
        raise AssertionError(
            f"ranks {missing} of {world} did not finish within {timeout} s (a hang, or a crash: "
            f"exit codes {[p.exitcode for p in processes]}); the others: {outcomes}"
        )
    return [outcomes[rank] for rank in range(world)]


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, their children and so on (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it.

    torchrun starts each worker in a session of its own, so killing the
    launcher's process group would leave hung workers behind (holding the
    output pipe open).
    """
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)


def torchrun(
    script: Path,
    world: int,
    *,
    args: Sequence[str] = (),
    max_restarts: int = 0,
    timeout: float = 180.0,
    env: Mapping[str, str] | None = None,
    debug: str = "INFO",
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` under ``torchrun --standalone`` with ``world`` ranks; its completed process.

    The launcher and its workers run in a process group of their own, killed as
    a whole if they outlast ``timeout`` (then ``AssertionError``).

    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``: by default torchrun's agent keeps one
    store across restarts, and a restarted worker can read a dead peer's address
    from the attempt before and fail to connect (pytorch/pytorch#135712; seen
    here as gloo's "connectFullMesh ... Connection refused" on about one restart
    in three). docs/distributed.md tells users the same.
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={world}",
        f"--max-restarts={max_restarts}",
        str(script),
        *args,
    ]
    environment = {
        **os.environ,
        "PYTHONPATH": PYTHONPATH,
        "TORCH_DISTRIBUTED_DEBUG": debug,
        "OMP_NUM_THREADS": "1",
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        **(env or {}),
    }
    process = subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process.pid)
        output, _ = process.communicate(timeout=30)
        raise AssertionError(f"torchrun {script.name} ran past {timeout} s:\n{output}") from None
    return subprocess.CompletedProcess(command, process.returncode, output, "")
