"""The canonical 22-joint skeleton (SMPL order, Y up, metres) and its kinematics.

Conventions (HumanML3D's, see docs/motion.md):
- +Y is up, a body in its rest pose faces +Z and its LEFT side is +X.
- `REST_DIRECTIONS[j]` is the unit direction of the bone parent(j) -> j in the rest pose
  (HumanML3D's raw offsets: legs and arms hang down, feet and head point forward).
- A rotation is stored at the bone's CHILD joint: local_quats[:, j] turns the bone
  parent(j) -> j relative to the frame of bone parent(parent(j)) -> parent(j). local_quats[:, 0]
  is the root's heading (a rotation about Y taking +Z to the facing direction).
- Facing direction: forward = cross(up, across), across = (r_hip - l_hip) + (r_shoulder -
  l_shoulder), projected on XZ. A body whose left side is +X has across = -X and faces +Z.

Deviations from HumanML3D's released `Skeleton.inverse_kinematics_np`, on purpose (the
upstream issues #119 and #26 discuss them):
- it takes each shortest arc in the WORLD frame and then expresses it in the parent's frame, so
  the local rotations change when the whole clip is turned about Y; we take the shortest arc in
  the parent's frame, which makes them invariant to the heading (and mirror exactly);
- its arm chains restart from the root, so the collars' rotations are relative to the root's
  heading; ours follow the parent tree (collars relative to spine3), as the spec's parents say;
- its root quaternion is the world->facing rotation, yet IK/FK compose it as if it were the
  facing->world one.
FK(IK(x)) reproduces the positions either way; only the 6D rotation block of the 263-d features
differs in meaning from the released files.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from motion.rotations import qbetween, qinv, qmul, qrot, yaw_quat

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)

KINEMATIC_CHAINS: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21), (9, 13, 16, 18, 20),
)


def _parents_from_chains(chains) -> tuple[int, ...]:
    parents = [-1] * NUM_JOINTS
    for chain in chains:
        for parent, child in zip(chain[:-1], chain[1:]):
            parents[child] = parent
    return tuple(parents)


PARENTS: tuple[int, ...] = _parents_from_chains(KINEMATIC_CHAINS)

# index i of the mirrored body takes joint MIRROR_PERMUTATION[i] of the original (an involution)
_LEFT_RIGHT_PAIRS = ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21))
MIRROR_PERMUTATION: tuple[int, ...] = tuple(
    next((b if j == a else a for a, b in _LEFT_RIGHT_PAIRS if j in (a, b)), j) for j in range(NUM_JOINTS)
)

# Face joints and foot joints used by the features.
L_HIP, R_HIP, L_SHOULDER, R_SHOULDER = 1, 2, 16, 17
LEFT_FOOT_JOINTS, RIGHT_FOOT_JOINTS = (7, 10), (8, 11)

_X, _Y, _Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
_NX, _NY = (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)
REST_DIRECTIONS = np.array([
    (0.0, 0.0, 0.0),  # pelvis (root, no bone)
    _X, _NX, _Y,      # left_hip, right_hip, spine1
    _NY, _NY, _Y,     # left_knee, right_knee, spine2
    _NY, _NY, _Y,     # left_ankle, right_ankle, spine3
    _Z, _Z, _Y,       # left_foot, right_foot, neck
    _X, _NX, _Z,      # left_collar, right_collar, head
    _NY, _NY,         # left_shoulder, right_shoulder
    _NY, _NY,         # left_elbow, right_elbow
    _NY, _NY,         # left_wrist, right_wrist
])

# Default uniform target skeleton: bone length parent(j) -> j in metres.
# Limbs: Winter, "Biomechanics and Motor Control of Human Movement" (4th ed., 2009), segment
# lengths as fractions of body height H, for an adult of H = 1.67 m: thigh 0.245 H = 0.41,
# shank 0.246 H = 0.41, upper arm 0.186 H = 0.31, forearm 0.146 H = 0.24, ankle to ball of the
# foot about 0.14 (foot length 0.152 H with the ball at ~55 %); hip joint centre to neck base
# (0.870 H - 0.530 H = 0.57) split over pelvis offset and three spine bones the way SMPL's joint
# layout does; head 0.11 (eye height 0.936 H minus chin 0.870 H). Trunk-to-limb offsets
# (pelvis->hip ~0.10: 0.07 lateral, 0.08 down; spine3->collar and collar->shoulder ~0.12 each)
# follow the magnitudes of SMPL's template joints. Standing upright, the pelvis is then about
# 0.08 + 0.41 + 0.41 + 0.04 (ankle above the ball joint) = 0.94 m above the lowest joint, i.e.
# above the floor as `canonicalize` places it.
DEFAULT_BONE_LENGTHS = np.array([
    0.0,
    0.10, 0.10, 0.11,   # left_hip, right_hip, spine1
    0.41, 0.41, 0.13,   # knees, spine2
    0.41, 0.41, 0.05,   # ankles, spine3
    0.14, 0.14, 0.20,   # feet, neck
    0.12, 0.12, 0.11,   # collars, head
    0.12, 0.12,         # shoulders
    0.31, 0.31,         # elbows
    0.24, 0.24,         # wrists
])


def facing_angles(joints: np.ndarray, smooth_sigma: float = 0.0) -> np.ndarray:
    """Heading angle per frame (T,): rotation about +Y taking +Z to the facing direction.

    `smooth_sigma` > 0 Gaussian-smooths the forward vectors over time first (in frames, with
    'nearest' edges), as HumanML3D does with sigma 20 when it computes features.
    """
    across = (joints[:, R_HIP] - joints[:, L_HIP]) + (joints[:, R_SHOULDER] - joints[:, L_SHOULDER])
    # cross((0, 1, 0), across) = (across_z, 0, -across_x)
    forward_xz = np.stack([across[:, 2], -across[:, 0]], axis=-1)
    if smooth_sigma > 0:
        forward_xz = gaussian_filter1d(forward_xz, smooth_sigma, axis=0, mode="nearest")
    return np.arctan2(forward_xz[:, 0], forward_xz[:, 1])


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """Length of bone parent(j) -> j for every joint, (..., 22); 0 for the root."""
    joints = np.asarray(joints, dtype=np.float64)
    parents = np.array(PARENTS[1:])
    lengths = np.linalg.norm(joints[..., 1:, :] - joints[..., parents, :], axis=-1)
    return np.concatenate([np.zeros_like(lengths[..., :1]), lengths], axis=-1)


class Skeleton:
    """Rest offsets (22, 3) = REST_DIRECTIONS * bone length; forward and inverse kinematics."""

    def __init__(self, offsets: np.ndarray):
        offsets = np.asarray(offsets, dtype=np.float64)
        if offsets.shape != (NUM_JOINTS, 3):
            raise ValueError(f"skeleton offsets must have shape (22, 3), got {offsets.shape}")
        self.offsets = offsets

    @classmethod
    def from_bone_lengths(cls, lengths: np.ndarray) -> Skeleton:
        lengths = np.asarray(lengths, dtype=np.float64)
        if lengths.shape != (NUM_JOINTS,):
            raise ValueError(f"bone lengths must have shape (22,), got {lengths.shape}")
        return cls(REST_DIRECTIONS * lengths[:, None])

    @property
    def lengths(self) -> np.ndarray:
        return np.linalg.norm(self.offsets, axis=-1)

    @property
    def leg_length(self) -> float:
        """Right thigh + shank, the length HumanML3D scales root trajectories by."""
        return float(self.lengths[5] + self.lengths[8])

    def forward_kinematics(self, local_quats: np.ndarray, root_pos: np.ndarray) -> np.ndarray:
        """Local rotations (T, 22, 4) and root positions (T, 3) -> joint positions (T, 22, 3)."""
        local_quats = np.asarray(local_quats, dtype=np.float64)
        root_pos = np.asarray(root_pos, dtype=np.float64)
        if local_quats.ndim != 3 or local_quats.shape[1:] != (NUM_JOINTS, 4):
            raise ValueError(f"local rotations must have shape (T, 22, 4), got {local_quats.shape}")
        if root_pos.shape != (local_quats.shape[0], 3):
            raise ValueError(f"root positions must have shape ({local_quats.shape[0]}, 3), got {root_pos.shape}")
        global_quats = np.empty_like(local_quats)
        joints = np.empty(local_quats.shape[:2] + (3,))
        global_quats[:, 0] = local_quats[:, 0]
        joints[:, 0] = root_pos
        for j in range(1, NUM_JOINTS):  # parents always precede children
            p = PARENTS[j]
            global_quats[:, j] = qmul(global_quats[:, p], local_quats[:, j])
            joints[:, j] = joints[:, p] + qrot(global_quats[:, j], self.offsets[j])
        return joints

    def inverse_kinematics(self, joints: np.ndarray, facing_sigma: float = 0.0) -> np.ndarray:
        """Joint positions (T, 22, 3) -> local rotations (T, 22, 4), HumanML3D style.

        Root: the heading from hips and shoulders (`facing_angles`). Every other joint, parents
        first: the shortest-arc rotation taking its rest direction onto its bone's direction as
        seen in the parent's frame. Only bone directions matter, so any Skeleton gives the same
        result, and the result does not change when the whole clip is turned about Y.
        """
        joints = np.asarray(joints, dtype=np.float64)
        heading = yaw_quat(facing_angles(joints, facing_sigma))
        global_quats = np.empty(joints.shape[:2] + (4,))
        local = np.empty_like(global_quats)
        global_quats[:, 0] = local[:, 0] = heading
        for j in range(1, NUM_JOINTS):
            p = PARENTS[j]
            bone_in_parent = qrot(qinv(global_quats[:, p]), joints[:, j] - joints[:, p])
            local[:, j] = qbetween(np.broadcast_to(REST_DIRECTIONS[j], bone_in_parent.shape), bone_in_parent)
            global_quats[:, j] = qmul(global_quats[:, p], local[:, j])
        return local


DEFAULT_SKELETON = Skeleton.from_bone_lengths(DEFAULT_BONE_LENGTHS)
