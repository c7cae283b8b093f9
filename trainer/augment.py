"""Motion augmentations of retrieval training batches (`data.augment`), for models that must
find real mocap after training on a generated or small corpus.

Applied to a reader batch before it becomes a model batch, with the micro-batch's own random
source (trainer.data.step_rng), so a resumed run augments exactly as the uninterrupted one:

- mirror (probability per sample): the 263-d features mirrored directly (motion.mirror) and the
  caption and its events with left/right swapped, so text and motion still agree;
- speed (a factor drawn log-uniformly from [1 / speed, speed] per sample): the clip played faster
  or slower, on the features (`change_speed`); clips get shorter or longer, and the batch is
  re-padded;
- noise: Gaussian noise on the features, `noise` times each dimension's std in the model's
  statistics (so in the units the encoder sees after normalization); foot contacts stay 0/1.

Bone lengths are not augmented: every importer retargets to one skeleton (motion.features
.retarget_to_uniform), the demo corpus's bodies and real mocap alike, so the encoder never sees
another one.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from configs.schema import AugmentConfig
from motion.features import FOOT_JOINTS
from motion.mirror import mirror_features, swap_left_right
from motion.skeleton import NUM_JOINTS

# the 263 layout (docs/motion.md): root turn (0), root step XZ (1:3), joint velocities (193:259) are
# per-frame displacements; foot contacts (259:263) are 0/1
VELOCITY = slice(193, 259)
DISPLACEMENTS = np.r_[0:3, 193:259]
CONTACT = slice(259, 263)


def active(cfg: AugmentConfig) -> bool:
    return cfg.mirror > 0 or cfg.speed > 1 or cfg.noise > 0


def _padded(motions: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(m) for m in motions])
    out = torch.zeros(len(motions), int(lengths.max()), motions[0].shape[-1])
    for i, m in enumerate(motions):
        out[i, :len(m)] = m
    return out, torch.arange(out.shape[1])[None] < lengths[:, None], lengths


def change_speed(features: np.ndarray, factor: float, feet_threshold: float = 0.002) -> np.ndarray:
    """A clip played `factor` times as fast: (T, 263) -> (floor((T - 1) / factor) + 1, 263).

    Done on the features, the same for both definitions (they share the layout): every dimension
    is interpolated at times k * factor (source frames); per-frame displacements (root turn and
    step, joint velocities) are multiplied by `factor`; foot contacts are recomputed from the new
    foot displacements with the importers' threshold (displacement^2 < 0.002 m^2), as the
    features define them."""
    if len(features) < 2:
        return features
    times = np.arange(0.0, len(features) - 1 + 1e-9, factor)
    lower = np.minimum(np.floor(times).astype(np.int64), len(features) - 2)
    frac = (times - lower)[:, None]
    out = features[lower] * (1.0 - frac) + features[lower + 1] * frac
    out[:, DISPLACEMENTS] *= factor
    feet = out[:, VELOCITY].reshape(len(out), NUM_JOINTS, 3)[:, list(FOOT_JOINTS)]
    out[:, CONTACT] = (np.square(feet).sum(-1) < feet_threshold)
    return out.astype(features.dtype)


def augment_retrieval(raw: dict, cfg: AugmentConfig, rng: random.Random, feature_std: torch.Tensor | None) -> dict:
    """A new reader batch with the motions (and, when mirrored, texts) augmented."""
    if not active(cfg):
        return raw
    motions = [raw["motion"][i, :int(n)] for i, n in enumerate(raw["length"])]
    texts, events = list(raw["text"]), list(raw["events"])
    for i in range(len(motions)):
        if cfg.mirror > 0 and rng.random() < cfg.mirror:
            motions[i] = mirror_features(motions[i])
            texts[i] = swap_left_right(texts[i])
            if events[i]:
                events[i] = [swap_left_right(e) for e in events[i]]
        if cfg.speed > 1:
            factor = float(np.exp(rng.uniform(-np.log(cfg.speed), np.log(cfg.speed))))
            motions[i] = torch.from_numpy(change_speed(motions[i].numpy(), factor))
    motion, mask, lengths = _padded(motions)
    if cfg.noise > 0:
        if feature_std is None:
            raise ValueError("data.augment.noise needs the model's feature statistics (feat_std)")
        gen = torch.Generator().manual_seed(rng.getrandbits(63))
        scale = cfg.noise * feature_std.float().cpu()
        scale[CONTACT] = 0.0
        motion = torch.where(mask[..., None], motion + torch.randn(motion.shape, generator=gen) * scale, motion)
    return dict(raw, motion=motion, mask=mask, length=lengths, text=texts, events=events)

