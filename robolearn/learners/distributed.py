"""Data-parallel training across processes (`torchrun`): setup, gradient averaging, shared statistics.

Every helper is a no-op in a single process, so learners call them unconditionally. Under
`torchrun --nproc-per-node N` each rank steps its own environments (its own seed offset), computes gradients on its
own rollout, and the gradients are averaged before every optimizer step, so parameters stay identical on every rank.
Quantities that steer the update (the KL of the adaptive learning rate, the H∞ multiplier, normalizer statistics)
are averaged or gathered too, for the same reason. NCCL on CUDA, Gloo on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torch import Tensor, nn


def setup(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; initializes the process group when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, torch.device(device)
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, world, dev


def world_size() -> int:
    """Number of processes in the initialized group (1 without torch.distributed)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """Rank of this process (0 without torch.distributed)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _comm_device() -> torch.device:
    """Where small tensors must live to be communicated: the current CUDA device under NCCL, else the CPU."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def allreduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients of `params` over all ranks (one flat all-reduce)."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean(x: Tensor | float) -> Tensor:
    """The mean over ranks of a tensor (or number) that every rank holds."""
    t = torch.as_tensor(x, dtype=torch.float64).detach().clone()
    if world_size() == 1:
        return t
    import torch.distributed as dist

    t = t.to(_comm_device())
    dist.all_reduce(t)
    return (t / world_size()).cpu()


def gather_rows(x: Tensor) -> Tensor:
    """(world × B, ...) : every rank's (B, ...) batch concatenated in rank order (same B on every rank)."""
    if world_size() == 1:
        return x
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's value of `flag` on every rank (stop decisions that only rank 0 can make)."""
    if world_size() == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=_comm_device())
    dist.broadcast(t, src=0)
    return bool(t.item())
