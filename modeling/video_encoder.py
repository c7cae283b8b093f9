"""Video encoder (LAVIMO): a CLIP vision tower per frame, a temporal transformer, mean pooling.

Input: frames (B, l_v, 3, H, W) float in [0, 1] and a frame mask (B, l_v), True = real frame.
Frames are resized to the tower's image size if needed and normalized with CLIP's mean/std here,
so the data pipeline only decodes and samples frames. Only real frames go through the tower.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from configs.schema import VideoEncoderConfig
from modeling.sequence import SequenceTransformer

MODES = ("frozen", "full")


def load_vision_tower(cfg: VideoEncoderConfig) -> CLIPVisionModel:
    if cfg.backbone:
        try:
            return CLIPVisionModel.from_pretrained(cfg.backbone)
        except OSError as err:
            raise OSError(f"CLIP vision weights {cfg.backbone!r} could not be loaded: {err}. Give "
                          f"video.backbone a local CLIP checkpoint directory, or '' to build one from config") from err
    return CLIPVisionModel(CLIPVisionConfig(
        hidden_size=cfg.clip_hidden_size, num_hidden_layers=cfg.clip_layers, num_attention_heads=cfg.clip_heads,
        intermediate_size=cfg.clip_intermediate_size, image_size=cfg.clip_image_size, patch_size=cfg.clip_patch_size))


class VideoEncoder(nn.Module):
    def __init__(self, cfg: VideoEncoderConfig, backend: str = "auto", tower: CLIPVisionModel | None = None):
        super().__init__()
        if cfg.mode not in MODES:
            raise ValueError(f"video.mode must be one of {MODES}, got {cfg.mode!r}")
        self.cfg = cfg
        self.tower = tower if tower is not None else load_vision_tower(cfg)
        if cfg.mode == "frozen":
            self.tower.requires_grad_(False)
        self.image_size = self.tower.config.image_size
        self.temporal = SequenceTransformer(self.tower.config.hidden_size, cfg.latent_dim, cfg.n_layers, cfg.n_heads,
                                            cfg.ff_dim, cfg.dropout, cfg.activation, backend, pooling="mean")

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.mode == "frozen":
            self.tower.eval()
        return self

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, l_v, 3, H, W) in [0, 1], mask (B, l_v) -> (frame features (B, l_v, d), pooled (B, d))."""
        if video.dim() != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, frames, 3, H, W), got {tuple(video.shape)}")
        b, n = video.shape[:2]
        mask = mask.bool()
        frames = video[mask]                                        # real frames only
        if frames.shape[-2:] != (self.image_size, self.image_size):
            frames = F.interpolate(frames, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        # CLIP's normalization in float32 (constants, not buffers: a bf16 cast of the module can't
        # round them); the tower casts the pixels to its own dtype.
        frames = frames.float()
        pixels = (frames - frames.new_tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)) / \
            frames.new_tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.mode != "frozen"):
            per_frame = self.tower(pixel_values=pixels).pooler_output
        feats = per_frame.new_zeros(b, n, per_frame.shape[-1])
        feats[mask] = per_frame
        return self.temporal(feats, mask)
