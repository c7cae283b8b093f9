"""The training loop in one process (launch/train.py without accelerate launch): non-finite
losses, validation and the best checkpoint, the schedule horizon on resume, clear errors."""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distributed"))
from fixtures import trainer_fixtures  # noqa: E402
from faults import FaultInjection  # noqa: E402
from launch.train import main  # noqa: E402
from trainer.schedule import lr_multiplier  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trainer_loop")
    overrides = trainer_fixtures.write_all(root / "data")
    return root, [f"{k}={v}" for k, v in overrides.items()] + ["logging.wandb=false", "checkpoint.every=2"]


def records(run_dir: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def test_nonfinite_skip_validation_best_and_horizon(data, capsys):
    root, overrides = data
    run_dir = root / "run"
    args = ["--config", str(REPO / "configs" / "tiny_test.yaml"), f"run.output_dir={run_dir}", "run.max_steps=4",
            "validation.every=2", "validation.split=train", *overrides,
            f"validation.retrieval_index={overrides[0].split('=', 1)[1]}",
            f"validation.localization_index={overrides[1].split('=', 1)[1]}"]
    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
    assert main(args, callback=FaultInjection(nonfinite_loss="1")) == 0   # the first micro-batch of the 2nd step
    # the trainer's stop-on-signal handlers are gone afterwards (forked pools would inherit them)
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == handlers
    recs = records(run_dir)
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert [r["nonfinite_skipped"] for r in recs] == [0, 1, 0, 0]
    assert [r["nonfinite_total"] for r in recs] == [0, 1, 1, 1]
    assert all(isinstance(r["loss"], float) for r in recs)
    assert "skipped 1 micro-batch" in capsys.readouterr().out

    vals = records(run_dir, "validation.jsonl")
    assert [v["step"] for v in vals] == [2, 4]
    for v in vals:
        for key in ("val/t2m_R@1", "val/t2m_R@5", "val/m2t_R@1", "val/car_accuracy", "val/loc_mIoU", "val/loc_R1@0.5"):
            assert 0.0 <= v[key] <= 100.0   # percentages, as in the evaluation
        assert v["val/t2m_R@5"] >= v["val/t2m_R@1"]
        assert v["val/score"] == pytest.approx((v["val/t2m_R@1"] + v["val/m2t_R@1"] + v["val/loc_mIoU"]) / 3)
    best_step = max(vals, key=lambda v: (v["val/score"], -v["step"]))["step"]
    best = (run_dir / "checkpoints" / "best").read_text().strip()
    assert best == f"step-{best_step:08d}" and (run_dir / "checkpoints" / best).is_dir()
    assert (run_dir / "export" / "model.safetensors").is_file()

    # more steps on resume: the lr curve keeps its horizon of 4 steps (final lr afterwards)
    assert main([*args, "run.max_steps=6", "validation.every=0", "--resume", "latest"]) == 0
    assert "lr curve is kept" in capsys.readouterr().out
    recs = records(run_dir)
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6]
    cfg_lr, final = 1e-3, 1e-4
    curve = lr_multiplier("cosine", cfg_lr, final, total_steps=4, warmup_steps=2)
    assert [r["lr"] for r in recs] == pytest.approx([cfg_lr * curve(s) for s in range(6)])
    assert recs[-1]["lr"] == pytest.approx(final)

    # asking for another curve on resume is refused
    assert main([*args, "run.max_steps=8", "schedule.total_steps=8", "--resume", "latest"]) == 2
    err = capsys.readouterr().err
    assert "horizon of 4 steps" in err and "cannot change the curve" in err


def test_stops_after_n_nonfinite_in_a_row(data, capsys):
    root, overrides = data
    args = ["--config", str(REPO / "configs" / "tiny_test.yaml"), f"run.output_dir={root / 'nan'}", "run.max_steps=2",
            "optim.max_nonfinite_in_a_row=3", *overrides]
    assert main(args, callback=FaultInjection(nonfinite_loss="0*")) == 2
    err = capsys.readouterr().err
    assert "3 non-finite events in a row at step 1" in err
    assert not (root / "nan" / "metrics.jsonl").exists()


def test_nonfinite_gradient_skips_the_update(data, capsys):
    """A finite loss with a non-finite gradient (step 2): no update (the weights stay as they
    were), counted and said; training goes on and the lr curve is unchanged."""
    from safetensors.torch import load_file

    root, overrides = data
    run_dir = root / "nan_grad"
    assert main(["--config", str(REPO / "configs" / "tiny_test.yaml"), f"run.output_dir={run_dir}", "run.max_steps=3",
                 *overrides, "checkpoint.every=1", "checkpoint.keep_last=3", "--no-export"],
                callback=FaultInjection(nonfinite_grad="1")) == 0
    recs = records(run_dir)
    assert [r["update_skipped"] for r in recs] == [False, True, False]
    assert [r["nonfinite_total"] for r in recs] == [0, 1, 1]
    assert recs[1]["grad_norm"] is None and recs[0]["grad_norm"] > 0   # NaN is logged as null
    assert "the gradient was not finite, no update" in capsys.readouterr().out
    weights = [load_file(str(run_dir / "checkpoints" / f"step-{s:08d}" / "model.safetensors")) for s in (1, 2, 3)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[1][k], weights[2][k]) for k in weights[1])
    curve = lr_multiplier("cosine", 1e-3, 1e-4, total_steps=3, warmup_steps=2)
    assert [r["lr"] for r in recs] == pytest.approx([1e-3 * curve(s) for s in range(3)])


def test_dropout_seed_is_the_ranks_and_accumulation_syncs_once(data, monkeypatch):
    """The training draws (dropout) are seeded per rank after the weights are built from the
    shared seed; with 3 micro-batches per step, the first 2 run without DDP's all-reduce."""
    from contextlib import contextmanager

    from configs.schema import load_experiment
    from trainer.loop import Trainer, rank_seed

    root, overrides = data
    cfg = load_experiment([REPO / "configs" / "tiny_test.yaml"],
                          [*overrides, f"run.output_dir={root / 'accum'}", "run.max_steps=2", "optim.grad_accum=3"])
    trainer = Trainer(cfg)
    assert len({rank_seed(cfg.run.seed, rank) for rank in range(8)}) == 8
    assert torch.equal(torch.rand(5), torch.rand(5, generator=torch.Generator().manual_seed(rank_seed(cfg.run.seed, 0))))
    unsynced = []

    @contextmanager
    def no_sync(model):
        unsynced.append(model)
        yield

    monkeypatch.setattr(trainer.accelerator, "no_sync", no_sync)
    assert trainer.fit()["status"] == "finished"
    assert len(unsynced) == 2 * 2 and all(m is trainer.model for m in unsynced)


def test_missing_shards_say_how_to_build_the_demo(data, capsys, tmp_path):
    _, overrides = data
    args = ["--config", str(REPO / "configs" / "tiny_test.yaml"), f"run.output_dir={tmp_path}", *overrides,
            f"data.retrieval.index={tmp_path / 'nowhere' / 'shards.json'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no shard index at" in err and "trimo-build-demo" in err
    # a shard set too small for one batch per epoch would loop forever: refused up front
    assert main(["--config", str(REPO / "configs" / "tiny_test.yaml"), f"run.output_dir={tmp_path}", *overrides,
                 "data.retrieval.batch_size=64"]) == 2
    assert "fewer than the batch size 64" in capsys.readouterr().err
    assert main(["--config", str(REPO / "configs" / "tiny_test.yaml"), "optim.lrr=1"]) == 2
    assert "did you mean 'optim.lr'" in capsys.readouterr().err


def test_one_feature_definition_per_run_recorded_in_the_export(data, capsys, tmp_path):
    """Shard sets of two 263-d definitions ("trimo" and "humanml3d") are refused together with a
    message naming both; a run records its definition in the model config, so in the export."""
    import json
    import shutil

    from configs.loading import load_run_config
    from configs.schema import ExperimentConfig

    root, overrides = data
    released = tmp_path / "localization"
    shutil.copytree(Path(overrides[1].split("=", 1)[1]).parent, released)
    index = json.loads((released / "shards.json").read_text())
    (released / "shards.json").write_text(json.dumps(dict(index, motion_features="humanml3d")))
    base = ["--config", str(REPO / "configs" / "tiny_test.yaml"), "run.max_steps=1", *overrides]
    assert main([*base, f"run.output_dir={tmp_path / 'mixed'}", f"data.localization.index={released}"]) == 2
    err = capsys.readouterr().err
    assert "holds 'humanml3d' motion features" in err and "'trimo' ones" in err and "--features" in err

    assert main([*base, f"run.output_dir={tmp_path / 'run'}"]) == 0
    exported = load_run_config(ExperimentConfig, tmp_path / "run" / "export")
    assert exported.model.motion_features == "trimo"


def test_fit_leaves_no_dataloader_worker_behind(data, tmp_path):
    """A launched rank ends with os._exit right after fit (launch/train.py), which runs no
    finalizer, so fit itself must stop the workers: alive, they would hold prefetched batches and
    block forever on their result pipe once the rank is gone."""
    import multiprocessing

    from configs.schema import load_experiment
    from trainer.loop import Trainer

    root, overrides = data
    cfg = load_experiment([REPO / "configs" / "tiny_test.yaml"],
                          [*overrides, f"run.output_dir={tmp_path / 'run'}", "run.max_steps=2", "data.num_workers=1"])
    trainer = Trainer(cfg)
    assert trainer.fit()["status"] == "finished"
    assert multiprocessing.active_children() == []    # the trainer (and its streams) still exist here
    trainer.streams["retrieval"].next()                # and a stream carries on after being stopped


def test_init_from_starts_a_localization_run_on_a_retrieval_models_encoders(data, tmp_path):
    """run.init_from: every tensor the trained model shares (encoders and their feature statistics)
    starts the new run as trained; only the new localization head starts fresh. Another encoder
    size stops with the tensor named."""
    from configs.schema import load_experiment
    from trainer.export import load_model
    from trainer.loop import Trainer

    root, overrides = data
    tiny = REPO / "configs" / "tiny_test.yaml"
    assert main(["--config", str(tiny), *overrides, f"run.output_dir={tmp_path / 'ret'}", "run.max_steps=2",
                 "model.use_localization=false"]) == 0
    source = load_model(tmp_path / "ret" / "export")[0].state_dict()
    localize = [*overrides, "model.use_retrieval=false", f"run.init_from={tmp_path / 'ret' / 'export'}", "run.max_steps=1"]
    trainer = Trainer(load_experiment([tiny], [*localize, f"run.output_dir={tmp_path / 'loc'}"]))
    mine = trainer.model.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in source.items())
    assert not torch.equal(source["retrieval.motion_encoder.feat_std"], torch.ones_like(source["retrieval.motion_encoder.feat_std"]))
    fresh = set(mine) - set(source)
    assert fresh and all(k.startswith("localization.") for k in fresh)
    with pytest.raises(ValueError, match=r"another shape here, e.g. retrieval\..*config.yaml"):
        Trainer(load_experiment([tiny], [*localize, f"run.output_dir={tmp_path / 'other'}",
                                         "model.retrieval.motion.ff_dim=24"]))
