"""Rotations and the 22-joint skeleton: constants, FK/IK, facing direction."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from motion import rotations as rot
from motion.skeleton import (
    DEFAULT_BONE_LENGTHS, DEFAULT_SKELETON, JOINT_NAMES, KINEMATIC_CHAINS, MIRROR_PERMUTATION, PARENTS,
    REST_DIRECTIONS, Skeleton, bone_lengths, facing_angles,
)
from fixtures.synthetic_motion import synthetic_clip

RNG = np.random.default_rng(7)


def random_quats(n):
    return Rotation.random(n, random_state=3).as_quat(scalar_first=True)


# ----------------------------------------------------------------------------- rotations

def test_quaternion_ops_match_scipy():
    q, p = random_quats(50), random_quats(50)[::-1].copy()
    v = RNG.normal(size=(50, 3))
    sq, sp = Rotation.from_quat(q, scalar_first=True), Rotation.from_quat(p, scalar_first=True)
    np.testing.assert_allclose(rot.qrot(q, v), sq.apply(v), atol=1e-12)
    np.testing.assert_allclose(rot.quat_to_matrix(q), sq.as_matrix(), atol=1e-12)
    prod = rot.qmul(q, p)
    np.testing.assert_allclose(Rotation.from_quat(prod, scalar_first=True).as_matrix(), (sq * sp).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(rot.qrot(rot.qmul(q, rot.qinv(q)), v), v, atol=1e-12)


def test_torch_and_numpy_agree():
    q, p, v = random_quats(20), random_quats(20)[::-1].copy(), RNG.normal(size=(20, 3))
    t = torch.from_numpy
    for fn, args in [(rot.qmul, (q, p)), (rot.qrot, (q, v)), (rot.quat_to_cont6d, (q,)), (rot.qbetween, (v, v[::-1].copy())),
                     (rot.slerp, (q, p, 0.3)), (rot.qinv, (q,))]:
        np_out = fn(*args)
        torch_out = fn(*[t(a) if isinstance(a, np.ndarray) else a for a in args])
        assert isinstance(torch_out, torch.Tensor)
        np.testing.assert_allclose(torch_out.numpy(), np_out, atol=1e-12, err_msg=fn.__name__)


def test_qbetween_is_the_shortest_arc_including_opposite_vectors():
    u = RNG.normal(size=(100, 3))
    v = RNG.normal(size=(100, 3))
    v[:5] = -u[:5] * 2.0  # opposite directions
    v[5] = u[5]  # identical
    q = rot.qbetween(u, v)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(rot.qrot(q, unit(u)), unit(v), atol=1e-9)
    angle = 2 * np.arccos(np.clip(np.abs(q[:, 0]), 0, 1))
    expected = np.arccos(np.clip((unit(u) * unit(v)).sum(-1), -1, 1))
    np.testing.assert_allclose(angle, expected, atol=1e-6)


def test_cont6d_is_first_two_columns_and_inverts():
    q = random_quats(30)
    m = Rotation.from_quat(q, scalar_first=True).as_matrix()
    d6 = rot.quat_to_cont6d(q)
    np.testing.assert_allclose(d6[:, :3], m[:, :, 0], atol=1e-12)
    np.testing.assert_allclose(d6[:, 3:], m[:, :, 1], atol=1e-12)
    np.testing.assert_allclose(rot.cont6d_to_matrix(d6), m, atol=1e-12)
    noisy = d6 * 1.7 + 0.01 * RNG.normal(size=d6.shape)  # Gram-Schmidt returns a proper rotation
    r = rot.cont6d_to_matrix(noisy)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


def test_slerp_matches_scipy():
    keys = random_quats(2)
    times = np.linspace(0, 1, 7)
    expected = Slerp([0, 1], Rotation.from_quat(keys, scalar_first=True))(times).as_matrix()
    got = rot.slerp(np.repeat(keys[:1], 7, 0), np.repeat(-keys[1:], 7, 0), times)  # sign must not matter
    np.testing.assert_allclose(rot.quat_to_matrix(got), expected, atol=1e-9)


def test_yaw_quat_turns_z_towards_x():
    np.testing.assert_allclose(rot.qrot(rot.yaw_quat(np.float64(np.pi / 2)), np.array([0, 0, 1.0])), [1, 0, 0], atol=1e-12)


# ----------------------------------------------------------------------------- skeleton constants

def test_parents_chains_and_mirror_permutation_follow_the_spec():
    assert len(JOINT_NAMES) == 22 and JOINT_NAMES[9] == "spine3" and JOINT_NAMES[21] == "right_wrist"
    expected_parents = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
    assert list(PARENTS) == expected_parents
    assert [0, 2, 5, 8, 11] in [list(c) for c in KINEMATIC_CHAINS]
    pairs = {(1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21)}
    for a, b in pairs:
        assert MIRROR_PERMUTATION[a] == b and MIRROR_PERMUTATION[b] == a
        assert JOINT_NAMES[a].replace("left", "right") == JOINT_NAMES[b]
    assert [MIRROR_PERMUTATION[j] for j in MIRROR_PERMUTATION] == list(range(22))
    # rest directions: unit, left side is +X, and mirror-symmetric
    np.testing.assert_allclose(np.linalg.norm(REST_DIRECTIONS[1:], axis=-1), 1.0)
    assert REST_DIRECTIONS[1, 0] == 1.0 and REST_DIRECTIONS[2, 0] == -1.0 and REST_DIRECTIONS[10, 2] == 1.0
    np.testing.assert_array_equal(REST_DIRECTIONS[list(MIRROR_PERMUTATION)] * [-1, 1, 1], REST_DIRECTIONS)


def test_default_skeleton_is_an_adult_with_the_pelvis_near_095m_when_standing():
    lengths = DEFAULT_SKELETON.lengths
    np.testing.assert_allclose(lengths, DEFAULT_BONE_LENGTHS)
    np.testing.assert_array_equal(lengths[list(MIRROR_PERMUTATION)], lengths)  # symmetric body
    # standing: hip bones 0.07 lateral / 0.08 down from the pelvis, legs straight, feet flat 4 cm
    # below the ankles (the same bone lengths, bent the way a standing body holds them)
    hip_drop = np.sqrt(lengths[1] ** 2 - 0.07 ** 2)
    foot_drop = 0.04
    pelvis_height = hip_drop + lengths[4] + lengths[7] + foot_drop
    assert 0.90 <= pelvis_height <= 1.0
    # full height: ankle -> head top about 1.6-1.8 m
    top = pelvis_height + lengths[3] + lengths[6] + lengths[9] + lengths[12] + lengths[15] + 0.12
    assert 1.55 <= top <= 1.85


# ----------------------------------------------------------------------------- kinematics

def test_fk_with_identity_rotations_gives_the_rest_pose():
    skeleton = Skeleton.from_bone_lengths(DEFAULT_BONE_LENGTHS * RNG.uniform(0.8, 1.2, 22))
    identity = np.tile([1.0, 0, 0, 0], (3, 22, 1))
    root = RNG.normal(size=(3, 3))
    joints = skeleton.forward_kinematics(identity, root)
    for j in range(1, 22):
        np.testing.assert_allclose(joints[:, j] - joints[:, PARENTS[j]], np.broadcast_to(skeleton.offsets[j], (3, 3)),
                                   atol=1e-12)
    np.testing.assert_allclose(bone_lengths(joints), np.broadcast_to(skeleton.lengths, (3, 22)), atol=1e-12)
    np.testing.assert_allclose(joints[:, 0], root)
    assert np.allclose(facing_angles(joints), 0.0)  # rest pose faces +Z


def test_fk_of_ik_reproduces_a_rigid_clip():
    joints = synthetic_clip(200, seed=3)
    skeleton = Skeleton.from_bone_lengths(bone_lengths(joints[0]))
    local = skeleton.inverse_kinematics(joints)
    np.testing.assert_allclose(np.linalg.norm(local, axis=-1), 1.0, atol=1e-12)
    assert np.abs(skeleton.forward_kinematics(local, joints[:, 0]) - joints).max() <= 1e-6


def test_fk_of_ik_on_a_non_rigid_clip_gives_the_clip_retargeted_to_its_first_frame():
    joints = synthetic_clip(50, seed=4)
    joints = joints + 0.01 * RNG.normal(size=joints.shape)  # noisy markers: bone lengths vary
    skeleton = Skeleton.from_bone_lengths(bone_lengths(joints[0]))
    rebuilt = skeleton.forward_kinematics(skeleton.inverse_kinematics(joints), joints[:, 0])
    np.testing.assert_allclose(bone_lengths(rebuilt), np.broadcast_to(skeleton.lengths, (50, 22)), atol=1e-12)
    # every bone keeps its observed direction
    for j in range(1, 22):
        d_in = joints[:, j] - joints[:, PARENTS[j]]
        d_out = rebuilt[:, j] - rebuilt[:, PARENTS[j]]
        cos = (d_in * d_out).sum(-1) / np.linalg.norm(d_in, axis=-1) / np.linalg.norm(d_out, axis=-1)
        assert cos.min() > 1 - 1e-12


def test_ik_local_rotations_ignore_the_global_heading_and_are_shortest_arcs_in_the_parent_frame():
    joints = synthetic_clip(40, seed=5)
    turn = Rotation.from_euler("y", 2.5).as_quat(scalar_first=True)
    local = DEFAULT_SKELETON.inverse_kinematics(joints)
    turned = DEFAULT_SKELETON.inverse_kinematics(rot.qrot(turn, joints) + 3.0)
    d6 = lambda q: rot.quat_to_cont6d(q[:, 1:])  # noqa: E731
    np.testing.assert_allclose(d6(turned), d6(local), atol=1e-9)
    # a bone's local rotation has no twist about the axis orthogonal to rest and bone directions
    axis_dot_rest = (local[:, 1:, 1:] * REST_DIRECTIONS[1:]).sum(-1)
    np.testing.assert_allclose(axis_dot_rest, 0.0, atol=1e-12)


def test_facing_direction_sign():
    rest = DEFAULT_SKELETON.forward_kinematics(np.tile([1.0, 0, 0, 0], (1, 22, 1)), np.zeros((1, 3)))
    assert rest[0, 1, 0] > 0  # left hip on +X
    for angle in (0.3, -2.0, 3.0):
        turned = rot.qrot(rot.yaw_quat(np.float64(angle)), rest)
        assert facing_angles(turned)[0] == pytest.approx(angle, abs=1e-12)
