"""Evaluation on several processes: each rank runs its share of every list of inference batches and
the results are gathered, so that every rank holds all embeddings; rank 0 alone scores and writes.

`accelerate launch --multi_gpu --num_processes N -m launch.evaluate ...` (or torchrun) sets
WORLD_SIZE / RANK / LOCAL_RANK; `Ranks.from_env()` then joins a gloo process group (CPU tensors
and pickled objects only: the gathered results are NumPy arrays, so gloo serves GPU runs too).
Batches are dealt round-robin (batch b to rank b % N) from lists cut the same way for any N, so a
batch holds the same inputs, padded the same, in one process or several: the gathered numbers are
those of one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Ranks":
        """One process (WORLD_SIZE unset or 1), or this rank of a launched group (joined here)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
        if dist.get_world_size() != world:
            raise RuntimeError(f"WORLD_SIZE={world} but the process group has {dist.get_world_size()} ranks")
        return cls(dist.get_rank(), world)

    def mine(self, n: int) -> range:
        """This rank's batches of a list of n: b = rank, rank + world, ..."""
        return range(self.rank, n, self.world)

    def all_gather(self, local: dict[int, Any]) -> dict[int, Any]:
        """Every rank's {batch index: result} merged, on every rank."""
        if self.world == 1:
            return local
        import torch.distributed as dist

        parts: list[dict[int, Any] | None] = [None] * self.world
        dist.all_gather_object(parts, local)
        return {k: v for part in parts for k, v in part.items()}

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's object on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
