"""tools/bench_evaluate.py at toy size: it builds the set (source items, then mirrored repeats),
times every stage of evaluation.run.evaluate and writes the timings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures import trainer_fixtures

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_builds_the_set_and_times_every_stage(tmp_path, capsys):
    from evaluation.sets import read_localization_set, read_retrieval_set
    from launch.train import main as train
    from tools.bench_evaluate import main as bench

    overrides = [f"{k}={v}" for k, v in trainer_fixtures.write_all(tmp_path / "source").items()]
    assert train(["--config", str(REPO / "configs" / "tiny_test.yaml"), f"run.output_dir={tmp_path / 'run'}",
                  *overrides, "run.max_steps=2", "validation.every=0", "logging.wandb=false",
                  "data.num_workers=0"]) == 0
    out = tmp_path / "timings.json"
    assert bench(["--model", str(tmp_path / "run" / "export"), "--source", str(tmp_path / "source"),
                  "--data", str(tmp_path / "bench"), "--items", "40", "--motions", "20", "--min-queries", "45",
                  "--no-video", "--json", str(out)]) == 0

    retrieval = read_retrieval_set(str(tmp_path / "bench" / "retrieval"), load_video=False)
    localization = read_localization_set(str(tmp_path / "bench" / "localization"))
    assert len(retrieval.ids) == 40 and len(set(retrieval.ids)) == 40
    # the fixture's 16 items, then mirrored repeats (each round turns the captions once more)
    assert sum(i.startswith("mirror1/") for i in retrieval.ids) == 16
    assert sum(i.startswith("mirror2/") for i in retrieval.ids) == 8
    assert len(localization.ids) == 23 and len(localization.texts) >= 45
    report = json.loads(out.read_text())
    assert report["items"] == 40 and report["queries"] == len(localization.texts)
    stages = {"sentence embeddings", "embed retrieval motions", "retrieval protocols", "CAR",
              "encode localization inputs", "localization head", "pyramid: embed windows",
              "corpus: head on (query, motion) pairs"}
    assert stages <= set(report["timings"]) and all(v >= 0 for v in report["timings"].values())
    assert "| **total** |" in capsys.readouterr().out
