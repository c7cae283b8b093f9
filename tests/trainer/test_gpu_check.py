"""`launch/gpu_check.py` on a machine without CUDA says what it cannot measure and fails clearly."""
import subprocess
import sys

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run bash launch/gpu_check.sh itself")
def test_gpu_check_without_cuda_names_every_row_and_exits_2():
    done = subprocess.run([sys.executable, "-m", "launch.gpu_check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    for row in ("Triton kernels vs eager", "fused vs eager vs SDPA", "contrastive loss at B = 65,536",
                "DeepSpeed bf16, 1 GPU", "quickstart on the GPU"):
        assert row in done.stdout
    assert "bash launch/gpu_check.sh" in done.stdout
