"""Cross-rank gathers for contrastive losses (negatives from the global batch).

Embeddings are gathered with the autograd-aware `torch.distributed.nn.functional.all_gather`: its
backward sums every rank's gradient for the local slice, which, after the usual gradient averaging
over ranks (DDP / DeepSpeed), equals the gradient of the single-process loss on the global batch.
Gathering without autograd and putting the local slice back gives wrong gradients for a symmetric
loss (docs/distributed.md), so it is used only for targets that need no gradient.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn

from shards.reader import rank_and_world  # noqa: F401 (also this module's public name)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x (B, ...) from every rank along dim 0, gradients flowing back to each rank."""
    _, world = rank_and_world()
    if world == 1:
        return x
    return torch.cat(dist_fn.all_gather(x.contiguous()), dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x (B, ...) from every rank along dim 0; for targets (no gradient)."""
    _, world = rank_and_world()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """x summed over every rank (no gradient); x itself with one process."""
    if rank_and_world()[1] == 1:
        return x
    total = x.detach().clone()
    dist.all_reduce(total)
    return total


def gather_varlen_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Like gather_with_grad for a first dimension that differs between ranks (e.g. K negatives)."""
    _, world = rank_and_world()
    if world == 1:
        return x
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    longest = max(counts)
    if longest == 0:
        return x
    padded = torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])], dim=0)
    parts = dist_fn.all_gather(padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, counts)], dim=0)
