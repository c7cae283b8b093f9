"""`trimo-bench-contrastive memory` runs its ranks and compares dense with blockwise (small sizes)."""
import re
import subprocess
import sys

import pytest


@pytest.mark.distributed
@pytest.mark.timeout(180)
def test_memory_benchmark_runs_two_ranks_and_agrees_with_dense():
    cmd = [sys.executable, "-m", "tools.bench_contrastive", "--dim", "16", "--caption-dim", "8", "--block", "16",
           "memory", "--batches", "64", "256", "--dense-max", "64"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(r"^\| ([\d,]+) \| ([\d,]+) \| (.+?) \| (\d+) \| ([\d.]+) \| (\S+) \|$", done.stdout, re.M)
    assert [r[:2] for r in rows] == [("64", "32"), ("256", "128")], done.stdout
    assert float(rows[0][5]) <= 1e-5                       # blockwise loss == dense loss where both ran
    assert rows[1][2].startswith("not run") and rows[1][5] == "-"
