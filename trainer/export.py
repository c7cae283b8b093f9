"""Export a trained model and load it back (`load_model`, which also reads training checkpoints).

An export folder holds:
    model.safetensors     the full consolidated state dict in float32 (gathered under ZeRO-3); after
                          DeepSpeed bf16 training the trained weights are the optimizer's fp32
                          masters, frozen weights the bf16 values the run computed with
    config.yaml           the resolved experiment config
    text_backbone/        the text backbone's HF config + tokenizer (weights are in model.safetensors)
    vision_tower/         the CLIP vision tower's HF config (if the model has video)
    lora_adapter/         the text encoder's LoRA adapter via peft `save_pretrained` (LoRA runs)
so loading needs no access to the original backbone paths.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from configs.loading import load_run_config, save_config
from configs.schema import ExperimentConfig
from modeling.trimo_model import TrimoModel

TEXT_PREFIX = "retrieval.text_encoder.backbone."


def export_model(accelerator, model, cfg, out_dir: str | Path) -> Path:
    """Call on every rank (ZeRO-3 gathers the weights collectively); the main process writes."""
    from modeling.text_encoder import load_tokenizer

    out = Path(out_dir)
    state = full_precision_state_dict(accelerator, model)
    unwrapped = accelerator.unwrap_model(model)
    backbone = unwrapped.retrieval.text_encoder.backbone
    is_lora = cfg.model.retrieval.text.mode == "lora"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
                   for k, v in state.items()}
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        save_config(cfg, out)
        base = backbone.get_base_model() if is_lora else backbone
        base.config.save_pretrained(str(out / "text_backbone"))
        load_tokenizer(cfg.model.retrieval.text).save_pretrained(str(out / "text_backbone"))
        if unwrapped.retrieval.video_encoder is not None:
            unwrapped.retrieval.video_encoder.tower.config.save_pretrained(str(out / "vision_tower"))
    if is_lora:
        text_state = None
        if accelerator.is_main_process:
            text_state = {k[len(TEXT_PREFIX):]: v for k, v in tensors.items() if k.startswith(TEXT_PREFIX)}
        # every rank calls it (peft gathers nothing itself); only the main process writes
        backbone.save_pretrained(str(out / "lora_adapter"), state_dict=text_state,
                                 is_main_process=accelerator.is_main_process)
    accelerator.wait_for_everyone()
    return out


def full_precision_state_dict(accelerator, model) -> dict[str, torch.Tensor] | None:
    """The whole state dict on the main process (None elsewhere under ZeRO-3); call on every rank.

    DeepSpeed in bf16 keeps bf16 copies in the module and the trained weights as fp32 masters in
    the optimizer: those replace the module's copies here (gathered, a collective per tensor)."""
    state = accelerator.get_state_dict(model)
    if accelerator.state.deepspeed_plugin is None:
        return state
    from deepspeed.utils import safe_get_full_fp32_param

    for name, param in accelerator.unwrap_model(model).named_parameters():
        if param.requires_grad and param.dtype != torch.float32:   # the same on every rank
            master = safe_get_full_fp32_param(param)
            if state is not None:
                state[name] = master.detach().cpu()
    return state


def _backbone_from_config(path: Path):
    from transformers import AutoConfig, AutoModel, CLIPTextModel, T5EncoderModel

    config = AutoConfig.from_pretrained(str(path))
    if config.model_type in ("t5", "mt5"):
        return T5EncoderModel(config)
    if config.model_type == "clip":
        return CLIPTextModel(config.text_config)
    return AutoModel.from_config(config)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[TrimoModel, object, ExperimentConfig]:
    """(model in eval mode, tokenizer, experiment config) from an export folder, a checkpoint folder
    (checkpoints/step-N) or a run directory (its latest checkpoint): the one way to load a model.

    A checkpoint rebuilds the model from its config.yaml (so the text backbone path in it must
    exist here) and loads the weights accelerate saved: model.safetensors, or a DeepSpeed ZeRO
    checkpoint consolidated to fp32 with deepspeed.utils.zero_to_fp32.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model {str(path)!r} does not exist; pass an export folder, a checkpoint "
                                "folder or a run directory")
    if (path / "model.safetensors").is_file() and (path / "text_backbone").is_dir():
        return _load_export(path, device)
    from trainer.build import build_model
    from trainer.checkpoint import CHECKPOINTS, resolve_checkpoint

    if (path / CHECKPOINTS).is_dir():
        path = resolve_checkpoint(path, "latest")
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(f"{path} is neither a trimo export (model.safetensors + text_backbone/) nor a "
                                "checkpoint (config.yaml); pass <run>/export, <run>/checkpoints/step-N or <run>")
    cfg = load_run_config(ExperimentConfig, path)
    model, tokenizer = build_model(cfg)
    model.load_state_dict(_checkpoint_weights(path), strict=True)
    return model.to(device).eval(), tokenizer, cfg


def initialize_from(model: TrimoModel, path: str | Path) -> tuple[int, list[str]]:
    """Copy into `model` every tensor of the model at `path` (what load_model reads) with the same
    name and shape: the encoders of a retrieval model, with the feature statistics they were
    trained with, under a new localization head. Returns (tensors copied, names left as they
    were). Stops on a shared name with another shape, or on another motion-feature definition."""
    source, _, source_cfg = load_model(path)
    theirs, mine = source.state_dict(), model.state_dict()
    features = (source_cfg.model.motion_features, model.cfg.motion_features)
    if features[0] and features[1] and features[0] != features[1]:
        raise ValueError(f"run.init_from={path} reads {features[0]!r} motion features, this run's data "
                         f"{features[1]!r}; start from a model trained on this feature definition")
    other = [k for k in theirs if k in mine and theirs[k].shape != mine[k].shape]
    if other:
        k = other[0]
        raise ValueError(f"run.init_from={path}: {len(other)} tensors have another shape here, e.g. {k} "
                         f"{tuple(theirs[k].shape)} there vs {tuple(mine[k].shape)} here; give this run the "
                         "source's encoder sizes (its config.yaml)")
    shared = {k: v for k, v in theirs.items() if k in mine}
    if not shared:
        raise ValueError(f"run.init_from={path} shares no tensor name with this model")
    model.load_state_dict(shared, strict=False)
    return len(shared), sorted(set(mine) - set(shared))


def _load_export(path: Path, device: str | torch.device) -> tuple[TrimoModel, object, ExperimentConfig]:
    from transformers import AutoTokenizer, CLIPVisionConfig, CLIPVisionModel

    cfg = load_run_config(ExperimentConfig, path)
    text_backbone = _backbone_from_config(path / "text_backbone")
    tower = None
    if (path / "vision_tower").is_dir():
        tower = CLIPVisionModel(CLIPVisionConfig.from_pretrained(str(path / "vision_tower")))
    model = TrimoModel(cfg.model, text_backbone=text_backbone, vision_tower=tower)
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path / "text_backbone"))
    return model.to(device).eval(), tokenizer, cfg


def _checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").is_file():
        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    if (path / "latest").is_file():
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return get_fp32_state_dict_from_zero_checkpoint(str(path))
    raise FileNotFoundError(f"{path}: no model weights (model.safetensors, pytorch_model.bin or a DeepSpeed "
                            "checkpoint with 'latest'); was the checkpoint written completely?")
