"""The README's launch commands, each run to the end on 2 CPU ranks over gloo, against one process.

Every arm (ZeRO-1/2/3 x fp32/bf16 from accelerate_config.yaml and the DeepSpeed JSONs, plain DDP
in fp32 and bf16) trains the tiny config with every head on for 4 steps on the lockstep sets
(tests/fixtures/trainer_fixtures.py): its first step is the same global batch as one process
with twice the batch, and one rank has no caption that can be shuffled (CAR negatives on the
other rank only). Against the single-process run (`python -m faults`: launch/train.py's main with the tests' callback, same precision):
- the learning rate at every step is the same (warm-up, hold and decay all fall within 4 steps);
- the first step's losses, CAR accuracy and full gradient agree (fp32 to rounding, bf16 within
  its precision);
- the gradient of step 3 is made non-finite (a test hook): the update is skipped on every rank,
  counted, and training goes on with finite weights;
- the export is float32 throughout; after DeepSpeed bf16 it holds the fp32 master weights
  (equal to DeepSpeed's own zero_to_fp32 of the last checkpoint) and the feature statistics
  unrounded.
One more DDP run alternates the tasks (each step leaves a head unused) with 2 micro-batches per
step and a non-finite loss in one of them.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distributed"))
from fixtures import trainer_fixtures  # noqa: E402
from fixtures.trainer_fixtures import ACCELERATE, LAUNCHERS, free_port, run  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.slow]
STEPS = 4
GLOBAL_BATCH = 8
BAD_GRADIENT_STEP = 3   # 1-based step whose gradient the test hook makes non-finite
# `-m launch.train` as in the README, with the tests' callback: tests/distributed/faults.py
TRAIN = ["-m", "faults", "--config", "configs/tiny_test.yaml"]


@dataclass(frozen=True)
class Arm:
    name: str
    launcher: tuple[str, ...]   # `accelerate launch` arguments, as the README writes them
    precision: str              # optim.mixed_precision
    engine: str                 # what the run's start-up line says

    @property
    def deepspeed(self) -> bool:
        return self.engine.startswith("DeepSpeed")


ENGINES = {"zero2": "DeepSpeed ZeRO-2", "zero3": "DeepSpeed ZeRO-3", "zero1": "DeepSpeed ZeRO-1",
           "ddp": "DDP (MULTI_CPU)"}
ARMS = [Arm(f"{name}-{p}", LAUNCHERS[name], p, engine) for name, engine in ENGINES.items() for p in ("no", "bf16")]


def test_readme_documents_exactly_these_launches():
    readme = (REPO / "README.md").read_text()
    for launcher in LAUNCHERS.values():
        command = " ".join(("accelerate launch",) + launcher)
        assert command in readme, f"the README does not show the tested launch `{command}`"


@pytest.fixture(scope="module")
def lockstep(tmp_path_factory):
    root = tmp_path_factory.mktemp("launches")
    overrides = trainer_fixtures.write_lockstep(root / "data", GLOBAL_BATCH)
    return root, [f"{k}={v}" for k, v in overrides.items()], trainer_fixtures.launch_env(root)


def train(root: Path, name: str, overrides: list[str], env: dict, launcher: tuple[str, ...] | None,
          precision: str, extra_env: dict | None = None) -> tuple[Path, str]:
    """One run (launcher None: one process without accelerate launch); its directory and output."""
    out = root / name
    batch = GLOBAL_BATCH if launcher is None else GLOBAL_BATCH // 2
    args = [*TRAIN, f"run.output_dir={out}", f"run.max_steps={STEPS}", f"optim.mixed_precision={precision}",
            f"data.retrieval.batch_size={batch}", f"data.localization.batch_size={batch}", *overrides]
    cmd = [sys.executable, *args] if launcher is None else \
        [ACCELERATE, "launch", *launcher, "--num_processes", "2", "--main_process_port", str(free_port()), *args]
    hooks = {"TRIMO_TEST_FIRST_GRADIENTS_OUT": str(root / f"{name}.grads.safetensors"),
             "TRIMO_TEST_NONFINITE_GRAD_STEPS": str(BAD_GRADIENT_STEP - 1)}
    proc = run(cmd, env, dict(hooks, **(extra_env or {})))
    return out, proc.stdout + proc.stderr


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(lockstep):
    """The single-process runs, one per precision, made when first asked for."""
    root, overrides, env = lockstep
    made: dict[str, Path] = {}

    def get(precision: str) -> Path:
        if precision not in made:
            made[precision] = train(root, f"single-{precision}", overrides, env, None, precision)[0]
        return made[precision]
    return get


@pytest.mark.parametrize("arm", ARMS, ids=lambda a: a.name)
def test_launch_trains_like_one_process(lockstep, reference, arm):
    root, overrides, env = lockstep
    ref_dir = reference(arm.precision)
    out, log = train(root, arm.name, overrides, env, arm.launcher, arm.precision)
    precision = "fp32" if arm.precision == "no" else "bf16"
    assert f"2 processes, {arm.engine}, {precision}" in log

    got, ref = records(out), records(ref_dir)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert [r["lr"] for r in got] == [r["lr"] for r in ref]
    assert len({r["lr"] for r in ref}) == 3   # warm-up, peak, decay: the curve is really exercised

    # the first step: the same global batch, so the same losses and gradient
    rtol = 1e-5 if arm.precision == "no" else 2e-3
    for key in ("loss", "retrieval/align", "retrieval/recon", "localization/loss"):
        assert math.isclose(got[0][key], ref[0][key], rel_tol=rtol), (key, got[0][key], ref[0][key])
    assert got[0]["retrieval/car_accuracy"] == ref[0]["retrieval/car_accuracy"]   # over both ranks' negatives
    grads = load_file(str(root / f"{arm.name}.grads.safetensors"))
    ref_grads = load_file(str(ref_dir.parent / f"{ref_dir.name}.grads.safetensors"))
    assert grads.keys() == ref_grads.keys() and len(grads) > 100
    g = torch.cat([grads[k].flatten() for k in sorted(grads)])
    r = torch.cat([ref_grads[k].flatten() for k in sorted(grads)])
    assert r.norm() > 1.0
    if arm.precision == "no":
        assert (g - r).abs().max() <= 1e-5 * r.norm()
    else:
        assert torch.nn.functional.cosine_similarity(g, r, dim=0) > 0.999
        assert abs(g.norm() / r.norm() - 1) < 0.01

    # the non-finite gradient: that update skipped, counted once, the run goes on with finite weights
    assert [r["update_skipped"] for r in got] == [s == BAD_GRADIENT_STEP for s in range(1, STEPS + 1)]
    assert got[-1]["nonfinite_total"] == 1 and math.isfinite(got[-1]["loss"])

    # the export: float32 everywhere, the same keys as the single-process export
    exported = load_file(str(out / "export" / "model.safetensors"))
    assert exported.keys() == load_file(str(ref_dir / "export" / "model.safetensors")).keys()
    assert all(t.dtype == torch.float32 for t in exported.values() if t.is_floating_point())
    assert all(torch.isfinite(t).all() for t in exported.values() if t.is_floating_point())
    stats = json.loads((root / "data" / "retrieval" / "shards.json").read_text())["feature_stats"]
    assert torch.equal(exported["retrieval.motion_encoder.feat_mean"], torch.tensor(stats["mean"], dtype=torch.float32))
    if arm.deepspeed:   # DeepSpeed's own fp32 reconstruction of the last checkpoint
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        last = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
        masters = get_fp32_state_dict_from_zero_checkpoint(str(last))
        trained = sorted(grads)   # the trainable parameters
        for key in trained:
            assert torch.equal(exported[key], masters[key].float()), key
        if arm.precision == "bf16":   # masters, not the module's bf16 copies
            assert sum(not torch.equal(exported[k], exported[k].bfloat16().float()) for k in trained) > len(trained) // 2


def test_ddp_alternating_tasks_with_accumulation_and_a_nonfinite_micro_batch(lockstep, reference):
    """Each step trains one task, so the other head gets no gradient (DDP must look for unused
    parameters); 2 micro-batches per step (the first without all-reduce); step 2's first
    micro-batch has a non-finite loss and is skipped on both ranks."""
    root, overrides, env = lockstep
    out, log = train(root, "ddp-alternate", [*overrides, "data.mixing=alternate", "optim.grad_accum=2"], env, LAUNCHERS["ddp"],
                     "no", {"TRIMO_TEST_NONFINITE_STEPS": "1"})
    got = records(out)
    assert [r["task"] for r in got] == ["retrieval", "localization"] * (STEPS // 2)
    assert [r["nonfinite_skipped"] for r in got] == [0, 1, 0, 0]
    assert [r["lr"] for r in got] == [r["lr"] for r in records(reference("no"))]
    assert all(math.isfinite(r["loss"]) for r in got)
