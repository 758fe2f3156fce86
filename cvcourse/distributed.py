"""Data parallelism: what `cvcourse.train.fit` does when `torchrun` starts several processes.

Appendix "Training at scale". Every process (a *rank*) holds a full copy of the model and
trains on its own slice of each global batch; `DistributedDataParallel` averages the
gradients of all ranks (an all-reduce during the backward pass), so every copy takes the
same optimizer step. The pieces here make that step the *same* one a single process takes:

- `World` reads the rank and world size that ``torchrun`` puts in the environment;
- `per_rank_batch` splits the recipe's (global) batch size, or says why it cannot;
- `ShardedSampler` gives every rank its slice of the very global batch one process draws;
- `synchronized_batchnorm` makes BatchNorm normalise over the global batch (torch's
  `SyncBatchNorm` on GPUs, `GlooSyncBatchNorm` written out here for CPU processes).

Taught in book/appendix_training_at_scale.ipynb.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler, RandomSampler


@dataclass(frozen=True)
class World:
    """Where this process stands among the processes that train together."""

    rank: int = 0          # this process, 0..world_size-1 over all machines
    local_rank: int = 0    # this process on its machine: which GPU it drives
    world_size: int = 1    # number of processes

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world() -> World:
    """The `World` that ``torchrun`` describes in RANK, LOCAL_RANK and WORLD_SIZE (else one process)."""
    try:
        return World(rank=int(os.environ.get("RANK", 0)), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                     world_size=int(os.environ.get("WORLD_SIZE", 1)))
    except ValueError as e:
        raise ValueError(f"RANK, LOCAL_RANK and WORLD_SIZE must be integers (torchrun sets them): {e}") from e


class WorldSizeError(ValueError):
    """The global batch cannot be split evenly across the processes."""


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The batch each rank draws so that together they draw the global `batch_size`.

    Raises a ValueError, before any training, when the global batch cannot be split evenly.
    """
    if world_size > batch_size:
        raise WorldSizeError(
            f"world size {world_size} (torchrun --nproc_per_node x --nnodes) is larger than the global "
            f"batch_size {batch_size}: every process needs at least one sample; use at most "
            f"{batch_size} processes or a larger batch")
    if batch_size % world_size:
        raise WorldSizeError(
            f"batch_size {batch_size} is not divisible by the world size {world_size} (processes): "
            f"each process draws batch_size / world_size samples; choose a batch size that is a "
            f"multiple of {world_size} or another number of processes")
    return batch_size // world_size


def init_process_group(device: torch.device, w: World) -> None:
    """Join the other ranks: NCCL between GPUs, gloo between CPU processes (no-op for one process)."""
    if w.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class ShardedSampler(DistributedSampler):
    """A `DistributedSampler` whose ranks split exactly the global batches one process draws.

    Each epoch it shuffles with `generator` as ``DataLoader(shuffle=True, generator=...)``
    does, keeps the first ``world_size * (len // world_size)`` indices and gives rank r every
    world_size-th one from r on, as `DistributedSampler` does. With per-rank batch b and
    B = b * world_size, rank r's t-th batch holds positions ``t*B + r + world_size*k`` of the
    shuffle (k < b): together the ranks hold positions ``t*B .. t*B + B - 1``, the t-th batch
    of the single process.

    Args:
        dataset: the map-style dataset (the same on every rank).
        num_replicas: the world size.
        rank: this process's rank.
        generator: a torch.Generator seeded the same on every rank; pass it to the DataLoader
            too, which draws from it first, exactly as in the single process.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, generator: torch.Generator):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, drop_last=True)
        self.order = RandomSampler(dataset, generator=generator)

    def __iter__(self) -> Iterator[int]:
        indices = list(self.order)[:self.total_size]  # this epoch's shuffle, as one process draws it
        return iter(indices[self.rank:self.total_size:self.num_replicas])


class AllReduceSum(torch.autograd.Function):
    """Sum a tensor over all ranks; the backward pass sums the incoming gradients the same way.

    Each rank's statistics feed every rank's loss, so the gradient that reaches one rank's
    sum is the sum of the gradients of all ranks' outputs: an all-reduce again.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlooSyncBatchNorm(nn.Module):
    """BatchNorm whose training statistics are taken over the global batch of all CPU ranks.

    torch's `nn.SyncBatchNorm` runs on GPUs only; this is the same computation for gloo:
    each rank sums x and x² over its slice, one all-reduce adds the sums of every rank, and
    the global mean and (biased) variance normalise every slice. The all-reduce is the
    differentiable `AllReduceSum`, so the backward pass also sums the gradients that flow
    into the statistics. It wraps (and shares) the BatchNorm's weights
    and running statistics; in eval mode it is that BatchNorm.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        if not bn.training and bn.track_running_stats:
            return bn(x)
        dims = [0] + list(range(2, x.dim()))                       # all but channels
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64)
        x64 = x.double()                                           # sums of squares lose digits in float32
        stats = torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count])   # (2C + 1,)
        stats = AllReduceSum.apply(stats)                          # sum over ranks
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n                                       # (C,)
        var = stats[c:2 * c] / n - mean * mean                     # (C,) biased, as BatchNorm normalises
        if bn.training and bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.mul_(1 - m).add_(m * mean.to(x.dtype))
                bn.running_var.mul_(1 - m).add_(m * (var * n / (n - 1)).to(x.dtype))  # unbiased
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (x64 - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
        y = y.to(x.dtype)
        if bn.affine:
            y = y * bn.weight.view(shape) + bn.bias.view(shape)
        return y


@contextlib.contextmanager
def synchronized_batchnorm(model: nn.Module, device: torch.device):
    """Within the block, every BatchNorm of `model` normalises over the global batch.

    On CUDA each BatchNorm becomes torch's `nn.SyncBatchNorm`, elsewhere a `GlooSyncBatchNorm`;
    both share the original layer's parameters and running statistics, and the original
    layers are put back on exit (so the model saves and evaluates as before).
    """
    swaps = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                sync = (nn.SyncBatchNorm.convert_sync_batchnorm(child) if device.type == "cuda"
                        else GlooSyncBatchNorm(child))
                setattr(parent, name, sync)
                swaps.append((parent, name, child))
    try:
        yield model
    finally:
        for parent, name, child in reversed(swaps):
            setattr(parent, name, child)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class DataParallelModel(nn.parallel.DistributedDataParallel):
    """`DistributedDataParallel` that also answers the wrapped model's attributes.

    A loss function receives this wrapper; calling it runs the synchronised forward, and
    ``model.some_attribute`` still reaches the model (e.g. ``model.num_classes``).
    """

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":  # not wrapped yet (inside DDP's own __init__)
                raise
            return getattr(self.module, name)


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over all ranks (for logging the global batch's loss)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    values = values.detach().clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()
