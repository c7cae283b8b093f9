"""2 ranks x batch B give the single-process loss and gradients of batch 2B (full and local rows, one
tile or many), with uneven chronological negatives and samples without video on each rank."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).parents[1] / "distributed" / "contrastive_worker.py"
CASES = [f"{k}-{g}-{i}" for k in ("soft_kl", "infonce") for g in ("full", "local") for i in ("dense", "blockwise")]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, str(WORKER), str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.distributed
@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", CASES)
def test_two_ranks_equal_one_process(results, case):
    ranked = torch.load(results / f"{case}.rank.pt", weights_only=True)
    single = torch.load(results / f"{case}.single.pt", weights_only=True)
    assert ranked.keys() == single.keys() and "loss.log_scale" in single
    for name in single:
        assert torch.allclose(ranked[name], single[name], atol=1e-6, rtol=0), (name, ranked[name], single[name])
    # the gradients are not trivially zero (the comparison means something)
    assert all(single[n].abs().sum() > 0 for n in single if n != "loss")
