"""Mirroring joints, 263-d features and captions (motion.mirror)."""
import numpy as np
import pytest
import torch

from motion import features as M
from motion.mirror import mirror_features, mirror_joints, swap_left_right
from motion.skeleton import facing_angles
from fixtures.synthetic_motion import synthetic_clip


@pytest.fixture(scope="module")
def clip():
    joints = M.canonicalize(M.retarget_to_uniform(synthetic_clip(400, seed=21, turn_rate=1.2)),
                            facing_sigma=M.HUMANML3D_FACING_SIGMA)
    return joints, M.joints_to_features(joints)


def test_mirror_joints_negates_x_and_swaps_sides(clip):
    joints, _ = clip
    mirrored = mirror_joints(joints)
    np.testing.assert_array_equal(mirrored[:, 1], joints[:, 2] * [-1, 1, 1])  # new left hip = old right hip
    np.testing.assert_array_equal(mirrored[:, 20], joints[:, 21] * [-1, 1, 1])
    np.testing.assert_array_equal(mirrored[:, 15], joints[:, 15] * [-1, 1, 1])
    np.testing.assert_array_equal(mirror_joints(mirrored), joints)
    # a mirrored body still faces forward, with its heading reflected
    np.testing.assert_allclose(facing_angles(mirrored), -facing_angles(joints), atol=1e-12)


def test_mirrored_features_equal_features_of_mirrored_joints(clip):
    joints, features = clip
    direct = mirror_features(features)
    assert direct.dtype == np.float32 and direct.shape == features.shape
    expected = M.joints_to_features(mirror_joints(joints))
    assert np.abs(direct - expected).max() <= 1e-5
    assert np.abs(features[:, 0]).max() > 0.01  # the clip turns, so the turn-rate sign matters
    assert not np.allclose(direct, features)
    np.testing.assert_array_equal(mirror_features(direct), features)


def test_mirrored_features_decode_to_mirrored_joints(clip):
    _, features = clip
    f = features.astype(np.float64)
    np.testing.assert_allclose(M.features_to_joints(mirror_features(f)), mirror_joints(M.features_to_joints(f)),
                               atol=1e-9)


def test_mirror_features_torch_batched(clip):
    _, features = clip
    batch = torch.from_numpy(np.stack([features, features[::-1].copy()]))
    out = mirror_features(batch)
    assert isinstance(out, torch.Tensor) and out.shape == batch.shape
    np.testing.assert_array_equal(out[0].numpy(), mirror_features(features))
    with pytest.raises(M.MotionError, match="^m1: "):
        mirror_features(np.zeros((4, 260)), source="m1")


@pytest.mark.parametrize("text, expected", [
    ("a person walks to the left", "a person walks to the right"),
    ("Left foot forward, then right", "Right foot forward, then left"),
    ("TURN LEFT", "TURN RIGHT"),
    ("waves with the left-hand and then the right-handed way", "waves with the right-hand and then the left-handed way"),
    ("kicks with the left's toes", "kicks with the right's toes"),
    ("steps leftward, then Rightwards", "steps rightward, then Leftwards"),
    ("the leftmost arm", "the rightmost arm"),
    ("spins clockwise twice", "spins counterclockwise twice"),
    ("Spins Counterclockwise", "Spins Clockwise"),
    ("leftover bright cleft lefty righteous", "leftover bright cleft lefty righteous"),
    ("all right, he turns right away", "all right, he turns right away"),
    ("right now he looks left", "right now he looks right"),
    ("", ""),
])
def test_swap_left_right(text, expected):
    assert swap_left_right(text) == expected
    assert swap_left_right(swap_left_right(text)) == text


@pytest.mark.parametrize("variant, swapped", [
    ("turns counter-clockwise", "turns clockwise"),
    ("turns Counter clockwise", "turns Clockwise"),
    ("turns anticlockwise", "turns clockwise"),
    ("turns ANTI-CLOCKWISE", "turns CLOCKWISE"),
])
def test_counterclockwise_spellings_normalize(variant, swapped):
    """Every spelling of counterclockwise swaps to "clockwise", which swaps back to the one
    canonical spelling "counterclockwise": a double swap is the identity up to that spelling."""
    assert swap_left_right(variant) == swapped
    canonical = variant.replace("counter-clockwise", "counterclockwise").replace("Counter clockwise", "Counterclockwise")
    canonical = canonical.replace("anticlockwise", "counterclockwise").replace("ANTI-CLOCKWISE", "COUNTERCLOCKWISE")
    assert swap_left_right(swap_left_right(variant)) == canonical
