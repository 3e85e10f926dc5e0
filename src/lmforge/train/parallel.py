"""Data parallelism applied to a model from outside (models never mention DDP).

Launch with ``torchrun --nproc_per_node N -m lmforge.cli pretrain ...``: torchrun sets
RANK/WORLD_SIZE/LOCAL_RANK and we join a process group (NCCL on GPU, gloo on CPU). A
plain ``lmforge pretrain`` is the world of size 1 and touches no process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, world: World) -> torch.device:
    """``auto`` picks the local GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def init_world(device_name: str) -> World:
    """Join the torchrun process group if one was launched; otherwise a world of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return World()
    world = World(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        wants_gpu = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
        dist.init_process_group(backend="nccl" if wants_gpu else "gloo")
    return world


def wrap_data_parallel(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """Wrap in DDP when the world has more than one process (gradients averaged across ranks)."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """Sum a small tensor over ranks (identity in a world of one)."""
    if world.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
