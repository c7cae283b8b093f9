"""The real-motion probe set: pybullet's 20 DeepMimic clips (loaded from where the package installs
them, never committed) with our captions (evaluation/probes/deepmimic.csv) -> trimo-make-shards ->
trimo-evaluate, with chance levels in the report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch import evaluate
from tools import make_shards

pybullet_data = pytest.importorskip("pybullet_data", reason="pybullet (which ships the DeepMimic clips) is not installed")
REPO = Path(__file__).resolve().parents[2]


def test_probe_set_from_the_installed_clips_evaluates(models, tmp_path):
    table = REPO / "evaluation" / "probes" / "deepmimic.csv"
    root = Path(pybullet_data.getDataPath()) / "data" / "motions"
    shards = tmp_path / "probe"
    assert make_shards.main(["--captions", str(table), "--root", str(root), "-o", str(shards), "--val", "0",
                             "--test", "1"]) == 0
    out = tmp_path / "eval"
    assert evaluate.main(["--model", str(models["pyramid"]), "--shards", str(shards), "--split", "test",
                          "--out", str(out), "--no-video"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["retrieval"]["n_items"] == 20 and report["retrieval"]["skipped"] == {}
    assert "Chance (All): R@1 5.00, R@2 10.00, R@3 15.00, R@5 25.00, R@10 50.00, MedR 10.5" in \
        (out / "metrics.md").read_text()
