"""Spreading one evaluation over processes: torchrun ranks and ``--shard i/n`` job arrays.

Both split the subset's positions into contiguous, disjoint ranges (no padding with duplicated
samples, which would corrupt exact metrics)::

    part i of n of [start, stop):  [start + i * L // n, start + (i + 1) * L // n),  L = stop - start

- ``--shard i/n``: the process evaluates part i of the whole subset and writes a results
  document with its counts; ``sareval merge`` sums the counts of all n parts.
- torchrun (``WORLD_SIZE`` > 1 in the environment): :func:`init_from_env` joins (or creates)
  the default process group (gloo on CPU, NCCL on CUDA); rank r evaluates part r (of its shard,
  if one is given), the integer counts are all-reduced (sum), per-sample data for the bootstrap
  is gathered on rank 0, and rank 0's document is broadcast so every rank returns the same one.
  Only rank 0 writes files.

Sums of integer counts are exact, so every split gives the single-process result to the count.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sareval.errors import SarevalError


def part_range(start: int, stop: int, index: int, count: int) -> tuple[int, int]:
    """Part ``index`` of ``count`` contiguous parts of ``[start, stop)``."""
    if not 0 <= index < count:
        raise SarevalError(f"part {index} of {count} does not exist")
    length = stop - start
    return start + index * length // count, start + (index + 1) * length // count


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise SarevalError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise SarevalError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


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


def world_size_from_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


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
    world = world_size_from_env()
    if world <= 1:
        return None
    if not dist.is_available():
        raise SarevalError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "gloo"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SarevalError("--device cuda under torchrun: torch sees no CUDA device")
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    dist.init_process_group(backend=backend)
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank, backend, created=True)


def rank_device(device: str, group: ProcessGroup | None) -> str:
    """``cuda`` -> ``cuda:<local rank>`` under torchrun; anything else unchanged."""
    if group is not None and device == "cuda":
        return f"cuda:{group.local_rank}"
    return device
