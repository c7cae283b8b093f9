"""Retrieval training augmentations (trainer/augment.py) against their definitions."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from configs.schema import AugmentConfig
from motion import features as M
from motion.features import joints_to_features
from motion.mirror import mirror_features
from shards.reader import collate_samples
from trainer.augment import augment_retrieval, change_speed
from fixtures.synthetic_motion import synthetic_clip


def walk(frames: int = 60) -> np.ndarray:
    """Canonical joints of a walking, turning body (20 fps)."""
    return M.canonicalize(M.retarget_to_uniform(synthetic_clip(frames, seed=3)), facing_sigma=M.HUMANML3D_FACING_SIGMA)


def raw_batch(features: list[np.ndarray], texts: list[str], events: list) -> dict:
    samples = [{"key": f"k{i}", "motion": f, "text": t, "events": e, "moments": [], "span": (0, len(f)), "meta": {}}
               for i, (f, t, e) in enumerate(zip(features, texts, events))]
    return collate_samples(samples)


def test_speed_factor_gives_the_features_of_the_faster_clip():
    """Playing a clip twice as fast on its features = the features of every other joint frame
    (with an unsmoothed facing: the facing's smoothing is a number of frames, not of seconds)."""
    joints = walk(121)
    features = joints_to_features(joints, facing_sigma=0.0)
    np.testing.assert_array_equal(change_speed(features, 1.0), features)
    fast = change_speed(features, 2.0)
    reference = joints_to_features(joints[::2], facing_sigma=0.0)
    assert fast.shape == (60, 263) and reference.shape == (60, 263)
    np.testing.assert_allclose(fast[:, 3:193], reference[:, 3:193], atol=1e-5)    # height, positions, rotations
    # a displacement over 2 frames is taken as twice the first frame's: off by the velocity's
    # change within them (this clip's joints rotate fast and at random: 10-16 % RMS)
    for block in (slice(0, 3), slice(193, 259)):
        error = np.sqrt(np.mean((fast[:, block] - reference[:, block]) ** 2))
        assert error < 0.2 * np.sqrt(np.mean(reference[:, block] ** 2))
    assert np.mean(fast[:, 259:] == reference[:, 259:]) > 0.95
    slow = change_speed(features, 0.5)
    assert len(slow) == 2 * len(features) - 1
    np.testing.assert_allclose(slow[::2, 4:193], features[:, 4:193], atol=1e-6)
    np.testing.assert_allclose(slow[::2, 193:259], features[:, 193:259] / 2, atol=1e-6)


def test_mirror_swaps_motion_and_words_noise_spares_contacts():
    joints = walk()
    f = joints_to_features(joints)
    raw = raw_batch([f, f[:30]], ["a person walks to the left", "a person turns right"],
                    [["walk left", "stop"], None])
    out = augment_retrieval(raw, AugmentConfig(mirror=1.0), random.Random(0), None)
    assert out["text"] == ["a person walks to the right", "a person turns left"]
    assert out["events"] == [["walk right", "stop"], None]
    torch.testing.assert_close(out["motion"][0], torch.from_numpy(mirror_features(f)))
    assert out["length"].tolist() == [len(f), 30] and out["mask"].sum().item() == len(f) + 30
    assert raw["text"][0] == "a person walks to the left"          # the reader's batch is not changed

    std = torch.ones(263)
    noisy = augment_retrieval(raw, AugmentConfig(noise=0.1), random.Random(0), std)
    delta = noisy["motion"] - raw["motion"]
    assert torch.all(delta[..., 259:263] == 0)                      # foot contacts stay binary
    assert torch.all(delta[1, 30:] == 0)                            # padding stays zero
    assert delta[0, :, :259].std().item() == pytest.approx(0.1, rel=0.05)
    with pytest.raises(ValueError, match="feat_std"):
        augment_retrieval(raw, AugmentConfig(noise=0.1), random.Random(0), None)


def test_same_random_source_same_augmentation_and_off_is_identity():
    f = joints_to_features(walk())
    raw = raw_batch([f, f[:40], f[:25]], ["a", "b", "c"], [None] * 3)
    cfg = AugmentConfig(mirror=0.5, speed=1.5, noise=0.05)
    a = augment_retrieval(raw, cfg, random.Random(7), torch.ones(263))
    b = augment_retrieval(raw, cfg, random.Random(7), torch.ones(263))
    c = augment_retrieval(raw, cfg, random.Random(8), torch.ones(263))
    assert torch.equal(a["motion"], b["motion"]) and torch.equal(a["mask"], b["mask"])
    assert a["length"].tolist() != raw["length"].tolist()             # speeds changed the lengths
    assert not torch.equal(a["motion"], c["motion"])
    assert augment_retrieval(raw, AugmentConfig(), random.Random(7), None) is raw
