"""Data-parallel training with ``torch.distributed`` (gloo on CPU, NCCL where GPUs exist): MetaLoc's meta-batches
and ALLoc's sequence batches.

Every rank draws the same meta-batch (same seed, same task sampler), takes its contiguous share of the tasks,
computes the mean meta-gradient of its share, and the shares are combined by one all-reduce weighted by task
count — so the update equals the single-process mean over the whole meta-batch up to float round-off, and every
rank holds identical parameters after each step. ALLoc's batches of sequences are split the same way (per-rank
mean loss, gradients summed with the share weights). ``xloc train --nproc N`` launches it with torchrun.

MAML-DG is not split (its objective needs the full gradient of F before the virtual step, i.e. a second
all-reduce per step); it runs replicated on every rank.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch
import torch.distributed as dist

from xloc.learn import maml

__all__ = ["world", "init_from_environment", "shard", "reduce_gradients", "is_main", "shard_rows",
           "sum_module_gradients", "share", "gather_rows", "sum_scalar"]


def world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_environment() -> bool:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...); False if the
    process was not started by a launcher."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def shard(batch: maml.TaskBatch) -> tuple[maml.TaskBatch, float]:
    """This rank's contiguous share of the tasks and its weight (share size / meta-batch size)."""
    if world()[1] == 1:
        return batch, 1.0
    rows, weight = _share(batch.x_s.shape[0])
    return maml.TaskBatch(batch.x_s[rows], batch.y_s[rows], batch.x_q[rows], batch.y_q[rows]), weight


def reduce_gradients(grads: maml.Params, loss: float, weight: float) -> tuple[maml.Params, float]:
    """Weighted sum over ranks of per-rank mean gradients and losses (one all-reduce of a flat buffer)."""
    if world()[1] == 1:
        return grads, loss
    keys = list(grads)
    flat = torch.cat([grads[k].detach().reshape(-1) * weight for k in keys] +
                     [torch.tensor([loss * weight], dtype=grads[keys[0]].dtype)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out, offset = {}, 0
    for k in keys:
        n = grads[k].numel()
        out[k] = flat[offset : offset + n].reshape(grads[k].shape)
        offset += n
    return out, float(flat[-1])


def share(m: int) -> tuple[slice, float]:
    """This rank's contiguous slice of ``m`` rows and its weight (``slice(0, m)``, 1.0 in one process)."""
    return _share(m) if world()[1] > 1 else (slice(0, m), 1.0)


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows in rank order, differentiable (the backward pass sums the gradients of every rank's
    copy, so a loss on the gathered rows must be divided by the world size)."""
    if world()[1] == 1:
        return x
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(x), dim=0)


def sum_scalar(value: torch.Tensor) -> float:
    """A per-rank partial loss summed over ranks (for logging)."""
    if world()[1] == 1:
        return float(value.detach())
    t = value.detach().reshape(1).clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t)


def _share(m: int) -> tuple[slice, float]:
    rank, size = world()
    if m < size:
        raise ValueError(f"a batch of {m} cannot be split over {size} ranks")
    lo, hi = rank * m // size, (rank + 1) * m // size
    return slice(lo, hi), (hi - lo) / m


def shard_rows(*arrays: np.ndarray) -> tuple[list[np.ndarray], float]:
    """This rank's contiguous share of the rows of equally long arrays (e.g. ALLoc's sequences) and its weight."""
    if world()[1] == 1:
        return list(arrays), 1.0
    rows, weight = _share(len(arrays[0]))
    return [a[rows] for a in arrays], weight


def sum_module_gradients(parameters: Iterable[torch.nn.Parameter], weight: float) -> None:
    """Replace each ``.grad`` (of this rank's mean loss) by the weighted sum over ranks: the gradient of the mean
    loss over the whole batch. One all-reduce of a flat buffer."""
    if world()[1] == 1:
        return
    params = [p for p in parameters if p.grad is not None]
    flat = torch.cat([p.grad.reshape(-1) * weight for p in params])  # type: ignore[union-attr]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].reshape(p.shape).clone()
        offset += n
