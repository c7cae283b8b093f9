"""HumanML3D's released feature definition (`joints_to_features(..., definition="humanml3d")`).

The reference here is an independent, literal transcription of the released processing steps
(floor, origin, face +Z, foot contacts, the skeleton's inverse kinematics with its face joints,
root velocities, rotation-invariant positions, local velocities), one joint and one frame at a
time with its own quaternion formulas, so that a vectorized shortcut in the library cannot hide
a deviation. The released code computes in float32; 1e-4 is the tolerance the issue set.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from fixtures.synthetic_motion import synthetic_clip
from motion import features as M
from motion.importers.asf_amc import load_asf_amc

FIXTURES = __import__("pathlib").Path(__file__).parents[1] / "fixtures"
CHAINS = [[0, 2, 5, 8, 11], [0, 1, 4, 7, 10], [0, 3, 6, 9, 12, 15], [9, 14, 17, 19, 21], [9, 13, 16, 18, 20]]
RAW_OFFSETS = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
                        [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
                        [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0]], float)
FACE = [2, 1, 17, 16]          # face joints as the released processing lists them
FID_L, FID_R = [7, 10], [8, 11]


def q_between(a, b):           # w = |a||b| + a.b, xyz = a x b, normalized (the released formula)
    q = np.concatenate([[np.sqrt((a @ a) * (b @ b)) + a @ b], np.cross(a, b)])
    return q / np.linalg.norm(q)


def q_mul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def q_inv(q):
    return q * np.array([1, -1, -1, -1])


def q_rot(q, v):
    return q_mul(q_mul(q, np.concatenate([[0.0], v])), q_inv(q))[1:]


def q_matrix(q):
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def released_placement(positions):
    """On the floor, first root at the XZ origin, first frame turned to face +Z."""
    positions = positions.copy()
    positions[:, :, 1] -= positions.min(axis=0).min(axis=0)[1]
    positions = positions - positions[0, 0] * np.array([1, 0, 1])
    r_hip, l_hip, sdr_r, sdr_l = FACE
    across = (positions[0, r_hip] - positions[0, l_hip]) + (positions[0, sdr_r] - positions[0, sdr_l])
    forward = np.cross([0, 1, 0], across / np.linalg.norm(across))
    q0 = q_between(forward / np.linalg.norm(forward), np.array([0.0, 0, 1]))
    return np.array([[q_rot(q0, j) for j in frame] for frame in positions])


def released_features(positions, thres=0.002):
    positions = released_placement(positions)
    glob = positions.copy()
    T = len(positions)
    feet_l = np.array([[((positions[t + 1, f] - positions[t, f]) ** 2).sum() < thres for f in FID_L] for t in range(T - 1)])
    feet_r = np.array([[((positions[t + 1, f] - positions[t, f]) ** 2).sum() < thres for f in FID_R] for t in range(T - 1)])
    # the skeleton's inverse kinematics reads the same four indices as (l_hip, r_hip, sdr_r, sdr_l)
    l_hip2, r_hip2, sdr_r2, sdr_l2 = FACE
    across = (positions[:, r_hip2] - positions[:, l_hip2]) + (positions[:, sdr_r2] - positions[:, sdr_l2])
    across = across / np.linalg.norm(across, axis=-1, keepdims=True)
    forward = gaussian_filter1d(np.cross([0, 1, 0], across), 20, axis=0, mode="nearest")
    forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    root = np.array([q_between(f, np.array([0.0, 0, 1])) for f in forward])
    root[0] = [1.0, 0, 0, 0]
    quat = np.zeros((T, 22, 4))
    quat[:, 0] = root
    for t in range(T):
        for chain in CHAINS:
            R = root[t]
            for a, b in zip(chain[:-1], chain[1:]):
                v = positions[t, b] - positions[t, a]
                r_loc = q_mul(q_inv(R), q_between(RAW_OFFSETS[b], v / np.linalg.norm(v)))
                quat[t, b] = r_loc
                R = q_mul(R, r_loc)
    velocity = np.array([q_rot(root[t + 1], positions[t + 1, 0] - positions[t, 0]) for t in range(T - 1)])
    r_velocity = np.arcsin([q_mul(root[t + 1], q_inv(root[t]))[2] for t in range(T - 1)])[:, None]
    ric = positions.copy()
    ric[..., 0] -= positions[:, 0:1, 0]
    ric[..., 2] -= positions[:, 0:1, 2]
    ric = np.array([[q_rot(root[t], j) for j in ric[t]] for t in range(T)])
    rot6 = np.array([[np.concatenate([q_matrix(q)[:, 0], q_matrix(q)[:, 1]]) for q in quat[t, 1:]] for t in range(T)])
    local_vel = np.array([[q_rot(root[t], glob[t + 1, j] - glob[t, j]) for j in range(22)] for t in range(T - 1)])
    return np.concatenate([r_velocity, velocity[:, [0, 2]], ric[:-1, 0, 1:2], ric[:-1, 1:].reshape(T - 1, -1),
                           rot6[:-1].reshape(T - 1, -1), local_vel.reshape(T - 1, -1), feet_l, feet_r], axis=-1)


def clips():
    cmu = load_asf_amc(FIXTURES / "cmu_walk_60fps.asf", FIXTURES / "cmu_walk_60fps.amc", mapping="cmu")
    return {"cmu": cmu.to_canonical()[:60], "synthetic": M.retarget_to_uniform(synthetic_clip(50, seed=2))}


@pytest.mark.parametrize("name", ["cmu", "synthetic"])
def test_released_definition_matches_the_released_steps(name):
    joints = clips()[name]
    ours = M.joints_to_features(joints, definition="humanml3d")
    np.testing.assert_allclose(ours, released_features(joints), atol=1e-4)
    # both definitions share the layout and most of the meaning, and differ where documented
    trimo = M.joints_to_features(joints)
    assert ours.shape == trimo.shape == (len(joints) - 1, 263)
    assert np.abs(ours[:, 67:193] - trimo[:, 67:193]).max() > 1e-2          # the rotation block
    np.testing.assert_array_equal(ours[:, 259:], trimo[:, 259:])            # foot contacts: the same rule


def test_features_to_joints_reads_the_released_definition():
    """recover_from_ric works on both definitions: joints from released-definition features are
    the clip as the released steps place it (on the floor, first root at the origin, facing +Z)."""
    for joints in clips().values():
        features = M.joints_to_features(joints, definition="humanml3d")
        back = M.features_to_joints(features)
        np.testing.assert_allclose(back, released_placement(joints)[:-1], atol=1e-4)
    with pytest.raises(M.MotionError, match="definition 'amass'"):
        M.joints_to_features(joints, definition="amass")


def test_released_root_angular_velocity_flips_sign_at_180_degrees():
    """A body spinning at a constant 0.1 rad per frame: trimo's dim 0 is -0.05 on every frame; the
    released arcsin form gives +0.05 on the frames where the heading crosses 180 degrees (its root
    quaternion changes hemisphere there) and -0.05 elsewhere."""
    from motion.rotations import qrot, yaw_quat
    from motion.skeleton import DEFAULT_SKELETON

    frames, rate = 300, 0.1
    rest = DEFAULT_SKELETON.forward_kinematics(np.tile([1.0, 0, 0, 0], (1, 22, 1)), np.array([[0.0, 0.94, 0.0]]))[0]
    spin = yaw_quat(rate * np.arange(frames))
    joints = qrot(spin[:, None], np.broadcast_to(rest, (frames, 22, 3)))
    inside = slice(60, frames - 61)   # away from the edges of the 20-frame smoothing of the heading
    released = M.joints_to_features(joints, definition="humanml3d")[inside, 0]
    trimo = M.joints_to_features(joints)[inside, 0]
    np.testing.assert_allclose(trimo, -rate / 2, atol=1e-3)
    heading = rate * np.arange(frames)[inside]
    crossings = np.diff(np.floor((heading + np.pi) / (2 * np.pi))).sum() + 0   # heading passes pi
    flipped = np.isclose(released, rate / 2, atol=1e-3)
    assert flipped.sum() >= crossings >= 2
    np.testing.assert_allclose(released[~flipped], -rate / 2, atol=1e-3)


def test_released_definition_mirrors_as_features():
    """Mirroring the joints and computing the released features equals mirroring the features
    (motion.mirror.mirror_features), as for trimo's: converters mirror either as features."""
    from motion.mirror import mirror_features, mirror_joints

    for joints in clips().values():
        features = M.joints_to_features(joints, definition="humanml3d")
        np.testing.assert_allclose(mirror_features(features),
                                   M.joints_to_features(mirror_joints(joints), definition="humanml3d"), atol=1e-4)


def test_a_release_made_by_the_released_steps_converts_to_the_same_features(tmp_path):
    """A HumanML3D folder whose new_joint_vecs are the released steps (the transcription above)
    applied to its new_joints: --features released keeps them, --features humanml3d recomputes them
    from new_joints with trimo's implementation; both agree within 1e-4 and record "humanml3d"."""
    from shards.reader import iter_decoded, load_index
    from tools import convert_humanml3d

    root = tmp_path / "HumanML3D"
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        (root / sub).mkdir(parents=True)
    for i, joints in enumerate(clips().values()):
        clip = f"00000{i}"
        np.save(root / "new_joints" / f"{clip}.npy", joints.astype(np.float32))
        np.save(root / "new_joint_vecs" / f"{clip}.npy",
                released_features(joints.astype(np.float32).astype(np.float64)).astype(np.float32))
        (root / "texts" / f"{clip}.txt").write_text("a person walks#a/DET#0.0#0.0\n")
    (root / "test.txt").write_text("000000\n000001\n")
    motions = {}
    for choice in ("released", "humanml3d"):
        out = tmp_path / choice
        assert convert_humanml3d.main([str(root), "-o", str(out), "--splits", "test", "--features", choice]) == 0
        assert load_index(str(out / "test")).motion_features == "humanml3d"
        motions[choice] = {s["key"]: s["motion"] for s in iter_decoded(sorted(str(p) for p in (out / "test").glob("*.tar")))}
    for key, released in motions["released"].items():
        np.testing.assert_allclose(motions["humanml3d"][key], released, atol=1e-4)
