"""2-rank check of the gathered contrastive loss (run by tests/modeling/test_contrastive_distributed.py).

Usage: python contrastive_worker.py OUT_DIR. Spawns 2 gloo ranks with batch B each (uneven K negatives and
samples without video on each) and, in this
process, the single-process reference on the 2B batch; saves losses and averaged gradients of a
tiny model for every (kind, gather, impl) case to OUT_DIR/{case}.rank.pt and OUT_DIR/{case}.single.pt.
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from configs.schema import ContrastiveLossConfig
from modeling.contrastive import ContrastiveAlignment

B, IN, D, E = 4, 6, 8, 5
NEG_PER_RANK = (2, 1)          # uneven K exercises the padded gather
# impl: one tile, or tiles of 3 that split each rank's rows, the global columns and the negatives
CASES = [(kind, gather, impl) for kind in ("soft_kl", "infonce") for gather in ("full", "local")
         for impl in ("dense", "blockwise")]
HAS_VIDEO = torch.tensor([True, False, True, False, True, True, True, True])   # uneven per rank


def make_data():
    g = torch.Generator().manual_seed(1)
    n = 2 * B
    data = {m: torch.randn(n, IN, generator=g, dtype=torch.float64) for m in ("motion", "text", "video")}
    cap = torch.randn(n, E, generator=g, dtype=torch.float64)
    cap[5] = cap[1] + 0.05 * torch.randn(E, generator=g, dtype=torch.float64)   # cross-rank near duplicate
    neg = torch.randn(sum(NEG_PER_RANK), IN, generator=g, dtype=torch.float64)
    return data, cap, neg


def make_model(kind, gather, impl):
    torch.manual_seed(0)
    model = nn.ModuleDict({m: nn.Linear(IN, D) for m in ("motion", "text", "video")})
    model["loss"] = ContrastiveAlignment(ContrastiveLossConfig(kind=kind, gather=gather, impl=impl, block_size=3))
    return model.double()


def loss_and_grads(model, data, cap, neg, has_video):
    emb = {m: model[m](x) for m, x in data.items()}
    loss = model["loss"](emb, caption_emb=cap, negatives=model["text"](neg), present={"video": has_video})["align"]
    loss.backward()
    return loss.detach(), {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def rank_main(rank, world, out_dir, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    data, cap, neg = make_data()
    rows = slice(rank * B, (rank + 1) * B)
    start = sum(NEG_PER_RANK[:rank])
    my_neg = neg[start:start + NEG_PER_RANK[rank]]
    for kind, gather, impl in CASES:
        model = make_model(kind, gather, impl)
        loss, grads = loss_and_grads(model, {m: x[rows] for m, x in data.items()}, cap[rows], my_neg, HAS_VIDEO[rows])
        dist.all_reduce(loss)                       # what a trainer logs: the mean over ranks
        loss /= world
        for g in grads.values():                    # what DDP / DeepSpeed do: average gradients
            dist.all_reduce(g)
            g /= world
        if rank == 0:
            torch.save({"loss": loss, **grads}, os.path.join(out_dir, f"{kind}-{gather}-{impl}.rank.pt"))
    dist.destroy_process_group()


def main(out_dir):
    torch.set_num_threads(1)
    data, cap, neg = make_data()
    for kind, gather, impl in CASES:   # the reference: one process, one tile
        model = make_model(kind, "none", "dense")
        loss, grads = loss_and_grads(model, data, cap, neg, HAS_VIDEO)
        torch.save({"loss": loss, **grads}, os.path.join(out_dir, f"{kind}-{gather}-{impl}.single.pt"))
    mp.spawn(rank_main, args=(2, out_dir, os.path.join(out_dir, "init")), nprocs=2, join=True)


if __name__ == "__main__":
    main(sys.argv[1])
