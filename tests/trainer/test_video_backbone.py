"""`model.retrieval.video.backbone`: a pretrained CLIP vision tower from a local folder is the
video tower the model trains with, exports and loads back (a tiny CLIP saved in the test)."""
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoTokenizer, CLIPVisionConfig, CLIPVisionModel

from configs.schema import load_experiment
from fixtures import trainer_fixtures

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distributed"))
from probe import probe_batch  # noqa: E402


def _config(tmp_path, clip_dir, *extra):
    backbone = trainer_fixtures.write_text_backbone(tmp_path / "bb")
    return load_experiment([REPO / "configs" / "tiny_test.yaml"],
                           ["data.retrieval.index=x", "data.localization.index=y",
                            f"model.retrieval.text.backbone={backbone}", f"model.retrieval.video.backbone={clip_dir}",
                            *extra]), backbone


def test_a_pretrained_clip_folder_is_the_tower_that_trains_exports_and_loads(tmp_path):
    from modeling.trimo_model import TrimoModel
    from trainer.export import export_model, load_model

    torch.manual_seed(3)   # other shapes than the config's own tower, so the folder must be what is used
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=48, image_size=48, patch_size=16))
    clip.save_pretrained(tmp_path / "clip")
    cfg, backbone = _config(tmp_path, tmp_path / "clip", "model.retrieval.video.mode=frozen")
    model = TrimoModel(cfg.model)
    encoder = model.retrieval.video_encoder
    saved = clip.state_dict()
    assert encoder.image_size == 48 and encoder.tower.config.hidden_size == 24
    assert all(torch.equal(encoder.tower.state_dict()[k], v) for k, v in saved.items())

    # one training step with video: the frozen tower stays as loaded, the temporal transformer learns
    batch = probe_batch(AutoTokenizer.from_pretrained(str(backbone)), max_tokens=32)
    batch["video"] = torch.rand(3, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))   # resized to 48
    batch["video_mask"] = torch.tensor([[True] * 4, [True, True, False, False], [True] * 4])
    out = model(batch, "retrieval")
    assert "retrieval/align_mv" in out and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is None for p in encoder.tower.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.temporal.parameters())

    export = export_model(Accelerator(cpu=True), model, cfg, tmp_path / "export")
    loaded, _, _ = load_model(export)
    assert all(torch.equal(loaded.retrieval.video_encoder.tower.state_dict()[k], v) for k, v in saved.items())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(batch, "embed")["video_emb"], model(batch, "embed")["video_emb"], atol=1e-6)


def test_a_folder_without_clip_weights_is_named_with_the_fix(tmp_path):
    from modeling.trimo_model import TrimoModel

    (tmp_path / "empty").mkdir()
    cfg, _ = _config(tmp_path, tmp_path / "empty")
    with pytest.raises(OSError, match=r"CLIP vision weights .*empty.* could not be loaded.*video.backbone"):
        TrimoModel(cfg.model)
