"""Spreading one evaluation over processes: torchrun ranks and job arrays of shards
(``ShapeConfig.execution.shard``).

Both split the subset's positions into contiguous, disjoint ranges (no padding with duplicated
samples, which would corrupt exact metrics)::

    part i of n of [start, stop):  [start + i * L // n, start + (i + 1) * L // n),  L = stop - start

- ``--shard i/n``: the process evaluates part i of the whole subset and writes a results
  document with its counts; ``sareval merge`` sums the counts of all n parts.
- torchrun (``WORLD_SIZE`` > 1 in a complete torchrun environment, :func:`torchrun_env`):
  :func:`init_from_env` joins (or creates) the default process group (gloo on CPU, NCCL on
  CUDA); rank r evaluates part r (of its shard, if one is given), the integer counts are
  all-reduced (sum), per-sample data for the bootstrap is gathered on rank 0, and rank 0's
  document is broadcast so every rank returns the same one. Only rank 0 writes files.
  The rendezvous at ``MASTER_ADDR:MASTER_PORT`` has a stated limit, 60 s or
  ``$SAREVAL_RENDEZVOUS_TIMEOUT`` seconds (:func:`rendezvous`): an address that does not
  resolve, or a process that never joins, is one error line, not 30 minutes of c10d retries.

Sums of integer counts are exact, so every split gives the single-process result to the count.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from sareval.errors import SarevalError


def part_range(start: int, stop: int, index: int, count: int) -> tuple[int, int]:
    """Part ``index`` of ``count`` contiguous parts of ``[start, stop)``."""
    if not 0 <= index < count:
        raise SarevalError(f"part {index} of {count} does not exist")
    length = stop - start
    return start + index * length // count, start + (index + 1) * length // count


def check_parts(length: int, shard: tuple[int, int] | None, world_size: int) -> None:
    """Refuse a split of ``length`` samples into ``shard`` parts and torchrun ranks that
    leaves a part without samples (its scores would read 0 instead of "no samples")."""
    count = 1 if shard is None else shard[1]
    if length // count < world_size:
        where = (
            f"ShapeConfig.execution.shard ({shard[0]}, {count})"
            if shard
            else f"WORLD_SIZE={world_size}"
        )
        raise SarevalError(
            f"{where}: {length} samples leave a part with no samples; split into at most "
            f"{length} parts (shards x processes)"
        )


@dataclass
class ProcessGroup:
    """This process's place in a torch.distributed job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    created: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def reduce_device(self) -> Any:
        import torch

        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def all_reduce_sum(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Element-wise sums over ranks of int64 arrays (one collective for all of them)."""
        import torch
        import torch.distributed as dist

        names = sorted(arrays)
        flat = np.concatenate([np.asarray(arrays[n], dtype=np.int64).ravel() for n in names])
        tensor = torch.from_numpy(flat).to(self.reduce_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        summed = tensor.cpu().numpy()
        out, at = {}, 0
        for n in names:
            a = np.asarray(arrays[n])
            out[n] = summed[at : at + a.size].reshape(a.shape)
            at += a.size
        return out

    def gather_on_main(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` in rank order on rank 0; None elsewhere."""
        import torch.distributed as dist

        received: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, received, dst=0)
        return received

    def broadcast_from_main(self, obj: Any) -> Any:
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.created:
            import torch.distributed as dist

            dist.destroy_process_group()


TORCHRUN_IDENTITY = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
TORCHRUN_VARIABLES = (*TORCHRUN_IDENTITY, "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class TorchrunEnv:
    """A complete, valid torchrun environment."""

    rank: int
    world_size: int
    local_rank: int


def torchrun_env(environ: Mapping[str, str] | None = None) -> TorchrunEnv | None:
    """The torchrun variables of ``environ`` (default ``os.environ``); None when none of
    RANK, WORLD_SIZE, LOCAL_RANK is set (a single process).

    Once one is set, all of :data:`TORCHRUN_VARIABLES` must be, with integer ranks
    ``0 <= RANK < WORLD_SIZE``, ``LOCAL_RANK >= 0`` and a port in 1..65535; anything else is a
    :class:`SarevalError` naming the variable (a stray ``RANK=1`` must not start a job).
    """
    env = os.environ if environ is None else environ
    if not any(k in env for k in TORCHRUN_IDENTITY):
        return None
    for name in TORCHRUN_VARIABLES:
        if not env.get(name, "").strip():
            present = ", ".join(k for k in TORCHRUN_VARIABLES if env.get(k, "").strip())
            raise SarevalError(
                f"{name}: not set, but {present} is; a torchrun job needs all of "
                f"{', '.join(TORCHRUN_VARIABLES)} (unset them for a single process)"
            )
    values: dict[str, int] = {}
    for name, low, high in (
        ("WORLD_SIZE", 1, 1 << 20),
        ("RANK", 0, None),
        ("LOCAL_RANK", 0, 1 << 20),
        ("MASTER_PORT", 1, 65535),
    ):
        text = env[name].strip()
        try:
            value = int(text)
        except ValueError:
            raise SarevalError(f"{name}: {text!r} is not an integer") from None
        high = values["WORLD_SIZE"] - 1 if high is None else high
        if not low <= value <= high:
            raise SarevalError(f"{name}: {value} is outside {low}..{high}")
        values[name] = value
    return TorchrunEnv(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])


def world_size_from_env() -> int:
    env = torchrun_env()
    return 1 if env is None else env.world_size


def init_from_env(device: str) -> ProcessGroup | None:
    """Join the torchrun job described by the environment; None for a single process.

    Uses an already initialised default group if there is one (e.g. inside training).
    """
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return ProcessGroup(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
            str(dist.get_backend()), created=False,
        )  # fmt: skip
    env = torchrun_env()
    if env is None or env.world_size <= 1:
        return None
    if not dist.is_available():
        raise SarevalError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = env.local_rank
    backend = "gloo"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SarevalError(
                f"ShapeConfig.execution.device {device!r} under torchrun: torch sees no CUDA device"
            )
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    store = rendezvous(env)
    prefixed = dist.PrefixStore("default_pg", store)
    dist.init_process_group(
        backend=backend, store=prefixed, rank=env.rank, world_size=env.world_size
    )
    for s in (store, prefixed):  # ranks may end their parts minutes apart
        s.set_timeout(COLLECTIVE_TIMEOUT)
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank, backend, created=True)


#: seconds a torchrun rendezvous may take before it fails (``$SAREVAL_RENDEZVOUS_TIMEOUT``)
RENDEZVOUS_TIMEOUT = 60.0
#: the limit of the collectives after the rendezvous (torch's default for gloo)
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


def rendezvous_timeout(environ: Mapping[str, str] | None = None) -> float:
    """Seconds allowed for the rendezvous: ``$SAREVAL_RENDEZVOUS_TIMEOUT`` or
    :data:`RENDEZVOUS_TIMEOUT`."""
    env = os.environ if environ is None else environ
    text = env.get("SAREVAL_RENDEZVOUS_TIMEOUT", "").strip()
    if not text:
        return RENDEZVOUS_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86400:
        raise SarevalError(
            f"SAREVAL_RENDEZVOUS_TIMEOUT: {text!r} is not a number of seconds in (0, 86400]"
        )
    return value


def rendezvous(env: TorchrunEnv) -> Any:
    """The c10d store of the job at ``MASTER_ADDR:MASTER_PORT`` (torch's ``env://``
    rendezvous, torchrun's agent store included), within :func:`rendezvous_timeout` seconds.
    An address that does not resolve, or processes that do not all join in time, is one
    :class:`SarevalError` line instead of c10d retrying (and warning) for 30 minutes."""
    import socket

    import torch.distributed as dist

    addr, port = os.environ["MASTER_ADDR"].strip(), int(os.environ["MASTER_PORT"])
    seconds = rendezvous_timeout()
    try:
        socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise SarevalError(f"MASTER_ADDR: cannot resolve {addr!r} ({reason})") from None
    try:
        store, _, _ = next(dist.rendezvous("env://", timeout=timedelta(seconds=seconds)))
    except (RuntimeError, ValueError, OSError) as e:  # DistStoreError, DistNetworkError
        detail = " ".join(str(e).split())[:200]
        raise SarevalError(
            f"MASTER_ADDR: the torchrun rendezvous at {addr}:{port} (rank {env.rank} of "
            f"{env.world_size}) did not complete within {seconds:g} s "
            f"($SAREVAL_RENDEZVOUS_TIMEOUT): {detail}"
        ) from None
    return store


def rank_device(device: str, group: ProcessGroup | None) -> str:
    """``cuda`` -> ``cuda:<local rank>`` under torchrun; anything else unchanged."""
    if group is not None and device == "cuda":
        return f"cuda:{group.local_rank}"
    return device
