"""The trainer for real: 2-rank `accelerate launch` runs with DeepSpeed ZeRO-2 and ZeRO-3 on CPU.

- 10 steps straight vs 5 steps + SIGKILL + resume + 5 steps: bitwise-equal parameters and equal
  logged losses (ZeRO-2 and ZeRO-3), tiny model with every head on and LoRA on the text encoder
  (ZeRO-3 with every retrieval augmentation on);
  under ZeRO-3 the process dies right after the step-5 checkpoint; under ZeRO-2 it is SIGKILLed
  while writing the step-10 checkpoint, which must leave `latest` at the complete step-5 one;
- the export reloads in a fresh process and reproduces the training model's outputs;
- two "nodes" on loopback train, checkpoint, and match the single-node run;
- the offline wandb run exists and the JSONL file has every key at every step.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distributed"))
from fixtures import trainer_fixtures  # noqa: E402
from fixtures.trainer_fixtures import ACCELERATE, LAUNCHERS, free_port, run  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.slow]
STEPS = 10


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer_dist")
    overrides = trainer_fixtures.write_all(root / "data")
    return root, [f"{k}={v}" for k, v in overrides.items()], trainer_fixtures.launch_env(root)


def launch_cmd(stage: int, out: Path, overrides: list[str], extra: list[str] = (), machine: tuple[int, int] | None = None,
               port: int | None = None) -> list[str]:
    """The README's launch: accelerate_config.yaml (ZeRO-2), another stage from its DeepSpeed JSON."""
    cmd = [ACCELERATE, "launch", *LAUNCHERS[f"zero{stage}"], "--main_process_port", str(port or free_port())]
    if machine is None:
        cmd += ["--num_processes", "2"]
    else:   # two "nodes" of one process each, as the README's several-node command
        cmd += ["--num_machines", "2", "--num_processes", "2", "--machine_rank", str(machine[0]),
                "--main_process_ip", "127.0.0.1"]
    return cmd + ["-m", "faults", "--config", "configs/tiny_test.yaml",
                  f"run.output_dir={out}", f"run.max_steps={STEPS}", *overrides, *extra]


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def assert_same_params(a: Path, b: Path) -> None:
    sa, sb = load_file(str(a / "export" / "model.safetensors")), load_file(str(b / "export" / "model.safetensors"))
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def latest(run_dir: Path) -> str:
    return (run_dir / "checkpoints" / "latest").read_text().strip()


def kill_during_checkpoint_write(cmd: list[str], env: dict, run_dir: Path, step: int) -> None:
    """Start a run that sleeps inside the checkpoint write of `step`, SIGKILL it there."""
    log = run_dir.parent / f"{run_dir.name}_killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=dict(env, TRIMO_TEST_CHECKPOINT_SLEEP=f"120@{step}"), cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    tmp = run_dir / "checkpoints" / f".tmp-step-{step:08d}"
    deadline = time.time() + 400
    try:
        while time.time() < deadline and proc.poll() is None:
            if (tmp / "trainer_state_rank1.json").exists() and (tmp / "config.yaml").exists():
                break
            time.sleep(0.5)
        assert proc.poll() is None, f"the run ended before reaching the checkpoint write:\n{log.read_text()[-4000:]}"
        assert tmp.is_dir(), "the checkpoint write was never reached"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


# the ZeRO-3 arm also augments its retrieval samples: augmentation draws from the step's own
# random source, so the resumed run must augment exactly as the straight one
AUGMENT = ["data.augment.mirror=0.5", "data.augment.speed=1.5", "data.augment.noise=0.1"]


@pytest.mark.parametrize("stage", [2, 3])
def test_resume_is_bitwise_identical(setup, stage):
    root, overrides, env = setup
    if stage == 3:   # (the ZeRO-2 straight run is the two-node test's reference: not augmented)
        overrides = overrides + AUGMENT
    straight, resumed = root / f"z{stage}_straight", root / f"z{stage}_resumed"
    run(launch_cmd(stage, straight, overrides, ["logging.wandb=true"] if stage == 2 else []), env)

    if stage == 3:   # killed right after the checkpoint of step 5
        killed = run(launch_cmd(stage, resumed, overrides), env, {"TRIMO_TEST_KILL_AFTER_STEP": "5"}, check=False)
        assert killed.returncode != 0, "the run should have been killed after step 5"
    else:            # killed while writing the checkpoint of step 10: `latest` must stay at step 5
        kill_during_checkpoint_write(launch_cmd(stage, resumed, overrides), env, resumed, STEPS)
        assert not (resumed / "checkpoints" / f"step-{STEPS:08d}").exists()
        assert len(losses(resumed)) == STEPS   # it had logged all steps before dying
    assert latest(resumed) == "step-00000005"
    assert not (resumed / "export").exists()

    probe = root / f"z{stage}_probe.safetensors"
    out = run(launch_cmd(stage, resumed, overrides, ["--resume", "latest"]), env, {"TRIMO_TEST_PROBE_OUT": str(probe)})
    assert "resumed from" in out.stdout + out.stderr
    assert latest(resumed) == f"step-{STEPS:08d}"
    assert_same_params(straight, resumed)
    ref, got = losses(straight), losses(resumed)
    assert sorted(got) == list(range(1, STEPS + 1)) == sorted(ref)
    assert got == ref, "logged losses differ after the resume"
    assert len(set(ref.values())) > 1

    if stage == 3:   # the export (gathered from ZeRO-3) reloads in a fresh process with the same outputs
        script = ("import sys, torch; from safetensors.torch import load_file, save_file;"
                  "from trainer.export import load_model; from probe import probe_batch, probe_outputs;"
                  "m, tok, cfg = load_model(sys.argv[1]);"
                  "save_file(probe_outputs(m, probe_batch(tok, max_tokens=cfg.model.retrieval.text.max_tokens)), sys.argv[2])")
        reloaded = root / "reloaded.safetensors"
        run([sys.executable, "-c", script, str(resumed / "export"), str(reloaded)], env)
        a, b = load_file(str(probe)), load_file(str(reloaded))
        assert {"motion_emb", "text_emb", "p_start", "p_end", "snippet_mask"} <= a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=f"{k} differs after reload")
        adapter = resumed / "export" / "lora_adapter"
        assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
        lora = load_file(str(adapter / "adapter_model.safetensors"))
        full = load_file(str(resumed / "export" / "model.safetensors"))
        assert lora and all("lora_" in k for k in lora)
        for key, value in lora.items():   # peft drops the adapter name from its keys
            assert torch.equal(full["retrieval.text_encoder.backbone." + key.replace(".weight", ".default.weight")], value)

    if stage == 2:   # logging: JSONL keys at every step, offline wandb run directory
        records = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
        keys = set(records[0])
        assert {"loss", "lr", "grad_norm", "samples_per_s", "retrieval/align", "retrieval/recon",
                "retrieval/car_accuracy", "localization/loss_span", "reader_skips", "nonfinite_total"} <= keys
        assert all(set(r) == keys for r in records)
        assert all(r[k] is not None for r in records for k in ("loss", "lr", "grad_norm"))
        assert list((root / "wandb" / "wandb").glob("offline-run-*")), "no offline wandb run directory"


def test_two_nodes_on_loopback_and_preemption(setup):
    """Two launchers of one process each; node 0 gets SIGTERM after step 3: both ranks stop there,
    checkpoint, and exit cleanly, and the losses so far equal the single-node 2-rank run's."""
    root, overrides, env = setup
    out, port = root / "two_nodes", free_port()
    extra = ["run.max_steps=4", "checkpoint.every=2", "schedule.total_steps=10", "logging.wandb=false"]
    procs = [subprocess.Popen(launch_cmd(2, out, overrides, extra, machine=(rank, 2), port=port),
                              env=dict(env, TRIMO_TEST_SIGTERM_AT_STEP="3") if rank == 0 else env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "stopped by signal at step 3" in logs[0]
    ckpt = out / "checkpoints" / latest(out)
    assert ckpt.name == "step-00000003"
    assert (out / "checkpoints" / "step-00000002").is_dir()
    assert (ckpt / "trainer_state_rank0.json").is_file() and (ckpt / "trainer_state_rank1.json").is_file()
    assert json.loads((ckpt / "trainer_state_rank1.json").read_text())["step"] == 3
    assert not (out / "export").exists()   # a preempted run is not finished
    got = losses(out)
    assert sorted(got) == [1, 2, 3]
    single = root / "z2_straight"
    if (single / "metrics.jsonl").is_file():   # same world size, seed and lr curve: same losses
        ref = losses(single)
        assert got == {s: ref[s] for s in range(1, 4)}
