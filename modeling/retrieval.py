"""The retrieval model: motion, text and video encoders in one joint space (LAVIMO), with CAR's
chronological negatives and LAVIMO's fusion attention + motion decoder, every head switchable.

Batch contract (a dict; every modality is optional, the losses use what is present, but at least
two modalities are needed for alignment; on several ranks all ranks must carry the same keys and
the same B at a step):
- "motion": (B, T, 263) float, features normalized with the shard set's FeatureStats;
  "motion_mask": (B, T) bool, True = real frame. (With the GCN S-Enc, the model un-normalizes with
  the stats given to `set_feature_stats`.)
- "text_input_ids", "text_attention_mask": (B, L) long, from `modeling.text_encoder.load_tokenizer`.
- "caption_emb": (B, e) sentence embeddings of the captions (all-MiniLM-L6-v2, computed offline)
  for the soft targets / negative filtering; without them: plain one-hot targets.
- "shuffled_input_ids", "shuffled_attention_mask": (K, L') event-shuffled captions (CAR);
  "shuffled_owner": (K,) long, the row of the motion each one belongs to. K may be 0.
- "video": (B, l_v, 3, H, W) float in [0, 1]; "video_mask": (B, l_v) bool. A sample whose
  video_mask row is all False has no video: pairs with video skip it, fusion gives it no video term.
Output of `forward`: "loss" (weighted total), "align" and "align_mt|mv|tv", "recon" (if on),
"car_accuracy" (with chronological negatives on; NaN when no caption of the batch could be
shuffled), "temperature", and the pooled embeddings "motion_emb",
"text_emb", "video_emb" (not normalized; retrieval uses cosine similarity).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from configs.schema import RetrievalModelConfig
from modeling.contrastive import ContrastiveAlignment, car_accuracy
from modeling.fusion import FusionAttention, MotionDecoder, masked_mse
from modeling.motion_encoder import MotionEncoder
from modeling.text_encoder import TextEncoder
from modeling.video_encoder import VideoEncoder


class RetrievalModel(nn.Module):
    def __init__(self, cfg: RetrievalModelConfig, text_backbone: nn.Module | None = None,
                 vision_tower: nn.Module | None = None,
                 joint12_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 parents: list[int] | None = None):
        """text_backbone / vision_tower: prebuilt HF models (tests, custom loading); None = load per config."""
        super().__init__()
        dims = {cfg.motion.latent_dim, cfg.text.latent_dim} | ({cfg.video.latent_dim} if cfg.use_video else set())
        if len(dims) != 1:
            raise ValueError(f"motion, text and video latent_dim must be equal for a joint space, got {sorted(dims)}")
        self.cfg = cfg
        backend = cfg.attention_backend
        self.motion_encoder = MotionEncoder(cfg.motion, backend, joint12_fn, parents)
        self.text_encoder = TextEncoder(cfg.text, backend, text_backbone)
        self.video_encoder = VideoEncoder(cfg.video, backend, vision_tower) if cfg.use_video else None
        self.alignment = ContrastiveAlignment(cfg.loss)
        self.fusion = self.decoder = None
        if cfg.use_reconstruction:
            self.fusion = FusionAttention(cfg.motion.latent_dim, cfg.fusion.n_heads, cfg.fusion.dropout, backend)
            self.decoder = MotionDecoder(cfg.motion.latent_dim, cfg.motion.n_feats, cfg.fusion, backend)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.motion_encoder.set_feature_stats(mean, std)

    def encode_motion(self, motion: torch.Tensor, mask: torch.Tensor, joints: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (frame features (B, T, d), embedding (B, d)); `joints`: see MotionEncoder.forward."""
        return self.motion_encoder(motion, mask, joints)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (token features (B, L, d), embedding (B, d))."""
        return self.text_encoder(input_ids, attention_mask)

    def encode_video(self, video: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (frame features (B, l_v, d), embedding (B, d))."""
        if self.video_encoder is None:
            raise ValueError("this model was built with use_video=false; it has no video encoder")
        return self.video_encoder(video, mask)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        feats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        emb: dict[str, torch.Tensor] = {}
        if "motion" in batch:
            tokens, emb["motion"] = self.encode_motion(batch["motion"], batch["motion_mask"])
            feats["motion"] = (tokens, batch["motion_mask"])
        if "text_input_ids" in batch:
            tokens, emb["text"] = self.encode_text(batch["text_input_ids"], batch["text_attention_mask"])
            feats["text"] = (tokens, batch["text_attention_mask"])
        if "video" in batch and self.video_encoder is not None:
            tokens, emb["video"] = self.encode_video(batch["video"], batch["video_mask"])
            feats["video"] = (tokens, batch["video_mask"])

        negatives = None
        out: dict[str, torch.Tensor] = {}
        if cfg.use_chronological_negatives and "text" in emb:
            k = batch["shuffled_input_ids"].shape[0] if "shuffled_input_ids" in batch else 0
            if k > 0:
                ids, mask, owner = batch["shuffled_input_ids"], batch["shuffled_attention_mask"], batch["shuffled_owner"]
            else:
                # No caption of this rank could be shuffled; it still encodes one (a placeholder,
                # dropped below) and passes on zero rows that stay in the graph. On several ranks,
                # ZeRO-3 gathers the encoder's weights in each forward and backward, and the
                # negatives' gather has a backward too: all are collectives that every rank joins.
                ids, mask = batch["text_input_ids"][:1], batch["text_attention_mask"][:1]
                owner = torch.zeros(0, dtype=torch.long, device=ids.device)
            negatives = self.encode_text(ids, mask)[1][:k]
            if "motion" in emb:   # over the global batch, so every rank reports the same value
                out["car_accuracy"] = car_accuracy(emb["motion"], emb["text"], negatives, owner,
                                                   across_ranks=cfg.loss.gather != "none")

        present = {"video": batch["video_mask"].bool().any(dim=1)} if "video" in emb else None
        out.update(self.alignment(emb, batch.get("caption_emb"), negatives, present))
        loss = cfg.align_weight * out["align"]
        if self.decoder is not None and "motion" in emb:
            fused = self.fusion(emb["motion"], feats)
            recon = self.decoder(fused, batch["motion_mask"])
            out["recon"] = masked_mse(recon, batch["motion"], batch["motion_mask"])
            loss = loss + cfg.recon_weight * out["recon"]
        out["loss"] = loss
        out.update({f"{name}_emb": e for name, e in emb.items()})
        return out
