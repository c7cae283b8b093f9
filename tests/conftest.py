"""Shared test setup: offline, deterministic, CPU-bounded."""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton kernels run in Triton's CPU interpreter in the tests. The variable is read when triton's
# jit is first imported, and other modules (the renderer) import triton early, so set it here.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Real mocap (never committed): TRIMO_MOCAP_DIR, else the workspace's shared folder beside the
# checkout; absent on plain clones.
SHARED_MOCAP = Path(os.environ.get("TRIMO_MOCAP_DIR") or REPO.parent / "shared" / "data" / "mocap")


@pytest.fixture
def shared_mocap() -> Path:
    if not SHARED_MOCAP.is_dir():
        pytest.skip(f"real mocap clips not available ({SHARED_MOCAP} is absent; it sits beside the checkout in the workspace)")
    return SHARED_MOCAP


@pytest.fixture(scope="module")
def one_thread():
    """The CI box is shared: tiny models run fastest on one thread; restore the setting afterwards.
    A module uses it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
