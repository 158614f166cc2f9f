"""Processes: the device, the process group under ``torchrun``, and checks that ranks agree."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from tailgan.errors import TailganError


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TailganError(f"device={name} but CUDA is not available here; use device=cpu")
    return torch.device(name)


def init_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, pick_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return dist.get_rank(), world, device


def any_rank(flag: torch.Tensor, world_size: int) -> bool:
    """True when ``flag`` (a 0-d tensor) is non-zero on any rank."""
    flag = flag.float()
    if world_size > 1:
        dist.all_reduce(flag)
    return bool(flag.item())


def ranks_in_sync(nets: dict) -> bool:
    """True when every rank holds the same weights (a float64 checksum of each network, compared)."""
    sums = torch.stack(
        [torch.stack([p.detach().double().sum() for p in net.parameters()]).sum() for net in nets.values()]
    ).cpu()
    gathered = [torch.zeros_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, sums)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def abort_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def finish_distributed() -> None:
    """gloo workers may abort at exit after finishing: barrier, tear down, flush, leave at once."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
