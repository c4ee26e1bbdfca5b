"""Multi-process training under ``torchrun`` (DistributedDataParallel): which process this is,
its device, and the collective operations the trainer needs. Without torchrun's environment
(WORLD_SIZE unset or 1) everything is a single process and nothing is initialised.

    torchrun --standalone --nproc_per_node 2 -m training train --config CFG.json

Backend: NCCL on CUDA (one GPU per process, cuda:LOCAL_RANK), gloo on CPU.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from SAMIHSLib.device import resolve_device


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        device = resolve_device(requested)
        if self.distributed and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def mean(self, value: torch.Tensor) -> float:
        """The mean of ``value`` over all processes."""
        if not self.distributed:
            return float(value)
        total = value.detach().clone().float()
        dist.all_reduce(total)
        return float(total) / self.world_size


SINGLE_PROCESS = ProcessGroup()


def start_process_group() -> ProcessGroup:
    """Join torchrun's process group when launched by torchrun, else the single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE_PROCESS
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return ProcessGroup(rank, world_size, local_rank)


def end_process_group(group: ProcessGroup) -> None:
    if group.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
