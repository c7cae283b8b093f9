"""The trained models the search tests query: tiny, two steps, from configs/tiny_test.yaml."""
from __future__ import annotations

from pathlib import Path

import pytest

from fixtures import trainer_fixtures

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Exports: "head" (with the localization head), "pyramid" (without one), "other" (another seed)."""
    from launch.train import main as train

    root = tmp_path_factory.mktemp("search_models")
    data = [f"{k}={v}" for k, v in trainer_fixtures.write_all(root / "data").items()]
    arms = {"head": [], "pyramid": ["model.use_localization=false"], "other": ["run.seed=1"]}
    for name, extra in arms.items():
        assert train(["--config", str(REPO / "configs" / "tiny_test.yaml"), f"run.output_dir={root / name}", *data,
                      "run.max_steps=2", "validation.every=0", "logging.wandb=false", "data.num_workers=0",
                      *extra]) == 0
    return {name: root / name / "export" for name in arms}
