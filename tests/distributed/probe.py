"""Test helper: a fixed probe batch and the model's outputs on it: checks that an export reproduces the model
that was trained (same embeddings, same localization probabilities), e.g. after ZeRO-3 gathering.
"""
from __future__ import annotations

import torch

PROBE_TEXTS = ["a person walks forward, then jumps", "a person waves", "a person turns around, then sits down"]


def probe_batch(tokenizer, n_feats: int = 263, frames: int = 60, max_tokens: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    lengths = torch.tensor([frames, frames - 15, frames - 30])
    motion = torch.randn(len(PROBE_TEXTS), frames, n_feats, generator=g)
    mask = torch.arange(frames)[None] < lengths[:, None]
    tok = tokenizer(PROBE_TEXTS, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return {"motion": motion, "motion_mask": mask, "text_input_ids": tok["input_ids"],
            "text_attention_mask": tok["attention_mask"], "duration_s": lengths / 20.0}


@torch.no_grad()
def probe_outputs(model, batch: dict[str, torch.Tensor], device=None) -> dict[str, torch.Tensor]:
    """Embeddings (and localization probabilities if the model has the head), in eval mode, on CPU."""
    was_training = model.training
    model.eval()
    try:
        if device is not None:
            batch = {k: v.to(device) for k, v in batch.items()}
        out = dict(model(batch, "embed"))
        core = model.module if hasattr(model, "module") else model
        if getattr(core, "localization", None) is not None:
            out.update(model(batch, "localize"))
    finally:
        model.train(was_training)
    return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}
