"""Single-node DistributedDataParallel helpers: the process group from torchrun's environment, and collectives.

A multi-GPU run is the stage command started by `torchrun --standalone --nproc-per-node=N
--no-python saliencylab finetune ...` (what the Argo worker of a stage with gpus > 1 runs);
torchrun sets RANK, LOCAL_RANK and WORLD_SIZE for each process. CUDA processes use NCCL, one GPU
each (cuda:<LOCAL_RANK>); CPU processes use Gloo (tests).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's place in the run: rank among world_size processes (a single process: 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of `values` (same shape on every process) over the processes; a new tensor."""
        if self.world_size == 1:
            return values
        total = values.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world_size

    def gather(self, value: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        """`value` (same shape and dtype on every process) from every rank, in rank order, on the CPU."""
        if self.world_size == 1:
            return [value.cpu()]
        local = value.to(device)
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local)
        return [p.cpu() for p in parts]

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def join_group(device_type: str) -> Group:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK).

    Without WORLD_SIZE (or with 1) this is a single process and nothing is initialised.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Group()
    group = Group(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
    if device_type == "cuda":
        torch.cuda.set_device(group.local_rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    # torchrun processes exit as soon as their part is done; a group still alive when the
    # interpreter tears down can abort the process from a backend thread (seen with Gloo)
    atexit.register(_leave_group)
    return group


def _leave_group() -> None:
    """Destroy this process's group at exit, after its last collective."""
    if dist.is_initialized():
        dist.destroy_process_group()

