"""The assembled trimo model: the retrieval model (LAVIMO + CAR) and the MLP localization head on
the same motion and text encoders, each part on/off by config, one `forward(batch, task)`.

Motion comes in as raw 263-d features; the model normalizes it with the feature statistics the
motion encoder keeps as buffers (`feat_mean`, `feat_std`, set once from the retrieval shard set and
saved with every checkpoint and export), so an exported model needs nothing else to encode motion.
For localization the raw motion is first averaged into S snippets (MLP Sec. III-A), then the shared
motion encoder encodes the snippets and the head reads them with the text encoder's token
features (SGPA/CQA/LP-Matcher/LP-Predictor on top).

Tasks:
- "retrieval": the RetrievalModel batch contract (modeling.retrieval), motion raw.
- "localization": motion, motion_mask, text_input_ids, text_attention_mask, duration_s,
  gt_start_s, gt_end_s (B,) seconds; optional "progress" (float, fraction of training done) and
  "generator" (CPU torch.Generator for the head's random draws).
- "joint": {"retrieval": batch, "localization": batch}, losses summed with their weights.
- "embed": pooled embeddings of the modalities present ("motion_emb", "text_emb", "video_emb").
- "localize": p_start, p_end, highlight, snippet_mask of the localization head in eval mode
  (the "localization" batch without the moment); `decode_moments` turns them into spans.
  The motion may come encoded ("motion_snippets" + "snippet_mask" in place of motion and
  motion_mask) and the text too ("text_tokens" in place of text_input_ids; text_attention_mask
  stays): the outputs of "localize_inputs".
- "localize_inputs": the two encoders' halves of "localize", for inputs that are paired many
  times (evaluation's corpus retrieval: every query against every motion): from motion/motion_mask
  "motion_snippets" (B, T, d) and "snippet_mask" (B, T); from text_input_ids/text_attention_mask
  "text_tokens" (B, L, d) and "text_emb" (B, d), the pooled embedding of the same pass ("embed"'s).
Loss outputs are flat: "loss" (weighted total) and "<task>/<term>".
"""
from __future__ import annotations

import torch
from torch import nn

from configs.schema import TrimoModelConfig
from modeling.localization import LocalizationHead, pool_snippets
from modeling.retrieval import RetrievalModel

TASKS = ("retrieval", "localization", "joint", "embed", "localize", "localize_inputs")


class TrimoModel(nn.Module):
    # Buffers DeepSpeed keeps in float32 under bf16/fp16 even when its config casts buffers
    # (data_types.buffer_dtype): normalization statistics must not be rounded.
    _keep_in_fp32_modules_strict = ["feat_mean", "feat_std", "running_mean", "running_var"]

    def __init__(self, cfg: TrimoModelConfig, text_backbone: nn.Module | None = None,
                 vision_tower: nn.Module | None = None):
        """text_backbone / vision_tower: prebuilt HF models (export loading, tests); None = per config."""
        super().__init__()
        self.cfg = cfg
        self.retrieval = RetrievalModel(cfg.retrieval, text_backbone, vision_tower)
        d = cfg.retrieval.motion.latent_dim
        self.localization = LocalizationHead(cfg.localization, d, cfg.retrieval.text.latent_dim) \
            if cfg.use_localization else None

    def set_feature_stats(self, mean, std) -> None:
        """The statistics raw motion is normalized with (the retrieval shard set's)."""
        self.retrieval.set_feature_stats(mean, std)

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        return self.retrieval.motion_encoder.normalize(motion)

    def forward(self, batch: dict, task: str) -> dict[str, torch.Tensor]:
        if task == "retrieval":
            return self._retrieval(batch)
        if task == "localization":
            return self._localization(batch)
        if task == "joint":
            out = {**self._retrieval(batch["retrieval"]), **self._localization(batch["localization"])}
            out["loss"] = out["retrieval/loss"] + out["localization/loss"]
            return out
        if task == "embed":
            return self._embed(batch)
        if task == "localize":
            return self._localize(batch)
        if task == "localize_inputs":
            return self._localize_inputs(batch)
        raise ValueError(f"task {task!r} is not one of {TASKS}")

    def _retrieval(self, batch: dict) -> dict[str, torch.Tensor]:
        if not self.cfg.use_retrieval:
            raise ValueError("this model was built with use_retrieval=false")
        inputs = dict(batch, motion=self.normalize(batch["motion"])) if "motion" in batch else batch
        out = self.retrieval(inputs)
        loss = self.cfg.retrieval_weight * out["loss"]
        flat = {f"retrieval/{k}": v for k, v in out.items() if not k.endswith("_emb")}
        flat["retrieval/loss"] = loss
        flat["loss"] = loss
        return flat

    def _localization(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.localization is None:
            raise ValueError("this model was built with use_localization=false")
        frames, mask, tokens = self._localization_inputs(batch)
        out = self.localization(frames, mask, tokens, batch["text_attention_mask"].bool(),
                                batch["duration_s"], batch["gt_start_s"], batch["gt_end_s"],
                                float(batch.get("progress", 0.0)), batch.get("generator"))
        loss = self.cfg.localization_weight * out["loss"]
        flat = {f"localization/{k}": out[k] for k in ("loss_seq", "loss_span", "loss_recover", "loss_align")}
        flat["localization/loss"] = loss
        flat["loss"] = loss
        return flat

    def _localization_inputs(self, batch: dict, encoded: bool = False
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MLP Sec. III-A: a long motion becomes S snippet means *before* it is encoded (T = min(F, S)),
        so the motion encoder runs on at most S elements; the head's own pooling is then the identity.
        `encoded`: take "motion_snippets"/"snippet_mask" and "text_tokens" as given where present."""
        if encoded and "motion_snippets" in batch:
            snippets, mask = batch["motion_snippets"], batch["snippet_mask"].bool()
        else:
            snippets, mask = self._encode_snippets(batch["motion"], batch["motion_mask"])
        if encoded and "text_tokens" in batch:
            tokens = batch["text_tokens"]
        else:
            tokens, _ = self.retrieval.encode_text(batch["text_input_ids"], batch["text_attention_mask"])
        return snippets, mask, tokens

    def _encode_snippets(self, motion: torch.Tensor, motion_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        motion, snippets = self.normalize(motion), self.cfg.localization.num_snippets
        pooled, mask = pool_snippets(motion, motion_mask, snippets)
        joints, encoder = None, self.retrieval.motion_encoder
        if encoder.gcn is not None:   # the S-Enc's kinematics from frames, then pooled like the features
            frames = encoder.joint12(motion)
            joints = pool_snippets(frames.flatten(2), motion_mask, snippets)[0].unflatten(2, frames.shape[2:])
        return self.retrieval.encode_motion(pooled, mask, joints)[0], mask

    def _localize_inputs(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.localization is None:
            raise ValueError("this model was built with use_localization=false")
        out = {}
        if "motion" in batch:
            out["motion_snippets"], out["snippet_mask"] = self._encode_snippets(batch["motion"], batch["motion_mask"])
        if "text_input_ids" in batch:
            out["text_tokens"], out["text_emb"] = self.retrieval.encode_text(batch["text_input_ids"],
                                                                             batch["text_attention_mask"])
        return out

    def _embed(self, batch: dict) -> dict[str, torch.Tensor]:
        out = {}
        if "motion" in batch:
            out["motion_emb"] = self.retrieval.encode_motion(self.normalize(batch["motion"]), batch["motion_mask"])[1]
        if "text_input_ids" in batch:
            out["text_emb"] = self.retrieval.encode_text(batch["text_input_ids"], batch["text_attention_mask"])[1]
        if "video" in batch and self.retrieval.video_encoder is not None:
            out["video_emb"] = self.retrieval.encode_video(batch["video"], batch["video_mask"])[1]
        return out

    def _localize(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.localization is None:
            raise ValueError("this model was built with use_localization=false")
        frames, mask, tokens = self._localization_inputs(batch, encoded=True)
        head = self.localization
        was_training = head.training
        head.eval()
        try:
            out = head(frames, mask, tokens, batch["text_attention_mask"].bool(), batch["duration_s"])
        finally:
            head.train(was_training)
        return {k: out[k] for k in ("p_start", "p_end", "highlight", "snippet_mask")}
