"""Checkers for the appendix "Training at scale"."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import BatchSampler, RandomSampler, TensorDataset

from ._core import call_solution, report

__all__ = ["check_rank_batches"]

# (dataset size, global batch, world size): even splits, a dropped tail, one process, a rank per sample
_CASES = [(12, 4, 2), (13, 4, 2), (20, 6, 3), (17, 8, 4), (10, 3, 1), (9, 4, 4), (30, 12, 6)]
# global batches that cannot be split: not a multiple of the world size, more ranks than samples
_BAD_SPLITS = [(6, 4), (8, 3), (4, 8)]


def check_rank_batches(fn: Callable, seed: int = 0) -> bool:
    """Exercise: ``fn(order, batch_size, world_size, rank) -> list[list[int]]``, the batches
    that rank `rank` draws in one epoch whose shuffle, as one process draws it, is `order`.

    The per-rank batch is ``batch_size / world_size`` (a ValueError when the global batch
    does not split evenly); the rank takes every `world_size`-th position of the shuffle from
    `rank` on, after dropping the tail that does not split evenly, and cuts that into
    batches, dropping a last incomplete one. Checked exactly against
    `cvcourse.distributed.ShardedSampler` batched as the DataLoader batches it, for every rank
    of several worlds, and for a ValueError on uneven splits."""
    from ..distributed import ShardedSampler, per_rank_batch

    name = "rank_batches"
    for n, batch_size, world_size in _CASES:
        dataset = TensorDataset(torch.arange(n))
        order = list(RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)))
        for rank in range(world_size):
            sampler = ShardedSampler(dataset, world_size, rank, torch.Generator().manual_seed(seed))
            ref = list(BatchSampler(sampler, per_rank_batch(batch_size, world_size), drop_last=True))
            out, err = call_solution(name, fn, list(order), batch_size, world_size, rank)
            where = f"{n} samples, batch_size={batch_size}, world_size={world_size}, rank {rank}: "
            if err:
                return report(name, False, where + err)
            try:
                out = [[int(i) for i in batch] for batch in out]
            except TypeError:
                return report(name, False, f"{where}expected a list of batches (lists of indices), "
                                           f"got {type(out).__name__}")
            if out != ref:
                return report(name, False, f"{where}expected {ref}, got {out} (the shuffle is {order})")
    for batch_size, world_size in _BAD_SPLITS:
        try:
            out = fn(list(range(12)), batch_size, world_size, 0)
        except NotImplementedError:
            return report(name, False, "not implemented yet (the function raised NotImplementedError)")
        except ValueError:
            continue
        except Exception as e:  # a student's bug is reported, not raised
            return report(name, False, f"batch_size={batch_size}, world_size={world_size}: expected a "
                                       f"ValueError, got {type(e).__name__}: {e}")
        return report(name, False, f"batch_size={batch_size}, world_size={world_size} does not split "
                                   f"evenly: expected a ValueError, got {out}")
    n_ranks = sum(w for _, _, w in _CASES)
    return report(name, True, f"{n_ranks} ranks of {len(_CASES)} worlds draw exactly the sampler's batches; "
                              f"{len(_BAD_SPLITS)} uneven splits raise a ValueError")
