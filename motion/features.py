"""HumanML3D-compatible motion representation: joints (T, 22, 3) <-> 263-d features at 20 fps.

Pipeline for a new source (docs/motion.md): `resample` to 20 fps -> `retarget_to_uniform` ->
`canonicalize` -> `joints_to_features`. `features_to_joints` is HumanML3D's `recover_from_ric`
and `features_to_joint12` MLP's per-joint (6D rotation, position, velocity) view; both take
NumPy arrays or torch tensors of shape (..., T, 263). `FeatureStats` holds normalization stats.

The 263 dims of frame t (t = 0 .. T-2):
  [0]       root angular velocity about Y between t and t+1, as HumanML3D stores it: HALF the
            heading change in radians, sign of the world->facing rotation (turning towards +X,
            the body's left when facing +Z, gives a negative value)
  [1:3]     root XZ displacement t -> t+1, in the facing frame of t+1
  [3]       root height
  [4:67]    joints 1..21 relative to the root's XZ (absolute height), in the facing frame of t
  [67:193]  local rotations of joints 1..21 (see motion.skeleton), continuous 6D
  [193:259] displacement t -> t+1 of all 22 joints, in the facing frame of t
  [259:263] foot contacts, left ankle, left foot, right ankle, right foot

Facing for the features is Gaussian-smoothed over time with sigma 20 frames, as in the
released process (`facing_sigma`). `features_to_joints` assumes the first frame's feature facing
is +Z; `canonicalize` turns the clip by the raw first-frame facing (the spec), so decoded joints
come back turned by the small smoothed-vs-raw difference, like HumanML3D's released new_joints.
Pass facing_sigma=HUMANML3D_FACING_SIGMA to `canonicalize` to get the stored joints back exactly.
Differences from the released code, on purpose:
- the angular velocity is the wrapped heading difference; the reference takes arcsin of the
  relative quaternion's y, which has the wrong sign when the heading crosses 180 degrees;
- rotations follow motion.skeleton (its docstring lists the reference IK issues it avoids);
- the reference's skeleton.py swaps the hip indices when it computes the facing, so its
  across vector is (l_hip - r_hip) + (r_shoulder - l_shoulder); we use the spec's definition.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from motion.rotations import (matrix_to_cont6d, qbetween, qinv, qmul, qrot, quat_to_cont6d, quat_to_matrix,
                              yaw_quat)
from motion.skeleton import (
    DEFAULT_SKELETON, JOINT_NAMES, KINEMATIC_CHAINS, L_HIP, L_SHOULDER, LEFT_FOOT_JOINTS, NUM_JOINTS, PARENTS,
    R_HIP, R_SHOULDER, REST_DIRECTIONS, RIGHT_FOOT_JOINTS, Skeleton, bone_lengths, facing_angles,
)

FEATURE_DIM = 263
FEATURE_FPS = 20.0
# Which definition of the 263 numbers a motion follows. "trimo": `joints_to_features` (rotation
# block from shortest arcs in the parent's frame, wrapped root angular velocity); "humanml3d":
# HumanML3D's released extraction (`new_joint_vecs`). Data and models record theirs; the trainer
# and evaluation refuse to combine two.
MOTION_FEATURES = ("trimo", "humanml3d")
HUMANML3D_FACING_SIGMA = 20.0
FEATURE_GROUPS: dict[str, slice] = {
    "root_rot_vel": slice(0, 1),
    "root_lin_vel": slice(1, 3),
    "root_y": slice(3, 4),
    "ric": slice(4, 67),
    "rot": slice(67, 193),
    "local_vel": slice(193, 259),
    "foot_contact": slice(259, 263),
}
FOOT_JOINTS = LEFT_FOOT_JOINTS + RIGHT_FOOT_JOINTS


class MotionError(ValueError):
    """Bad motion input; the one-line message names the source and the problem."""


# ----------------------------------------------------------------------------- validation

def check_joints(joints, source: str = "joints", min_frames: int = 2) -> np.ndarray:
    """Return joints as float64 (T, 22, 3), or raise MotionError naming `source`."""
    arr = np.asarray(joints)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3):
        raise MotionError(f"{source}: joints have shape {arr.shape}, expected (T, 22, 3) in SMPL joint order; "
                          "map the source skeleton onto the 22 canonical joints first")
    if not np.issubdtype(arr.dtype, np.number):
        raise MotionError(f"{source}: joints have dtype {arr.dtype}, expected floats")
    if arr.shape[0] < min_frames:
        raise MotionError(f"{source}: clip has {arr.shape[0]} frame(s), at least {min_frames} needed "
                          "(features use frame-to-frame velocities); drop or extend the clip")
    arr = arr.astype(np.float64)
    _check_finite(arr.reshape(len(arr), -1), source, "joint")
    return arr


def check_features(features, source: str = "features", min_frames: int = 1):
    """Validate a (..., T, 263) NumPy array or torch tensor; returns it unchanged."""
    shape = tuple(features.shape)
    if len(shape) < 2 or shape[-1] != FEATURE_DIM:
        raise MotionError(f"{source}: features have shape {shape}, expected (..., T, {FEATURE_DIM}) "
                          "HumanML3D vectors; KIT-ML (251) and other layouts are not supported")
    if shape[-2] < min_frames:
        raise MotionError(f"{source}: {shape[-2]} feature frame(s), at least {min_frames} needed")
    if isinstance(features, torch.Tensor):
        if not bool(torch.isfinite(features).all()):
            raise MotionError(f"{source}: features contain NaN/inf; fix or drop the sample")
    else:
        _check_finite(np.asarray(features).reshape(-1, shape[-2], FEATURE_DIM).swapaxes(0, 1).reshape(shape[-2], -1),
                      source, "feature")
    return features


def _check_finite(per_frame: np.ndarray, source: str, what: str) -> None:
    bad = ~np.isfinite(per_frame).all(axis=1)
    if bad.any():
        frames = np.flatnonzero(bad)
        shown = ", ".join(map(str, frames[:5])) + (" ..." if len(frames) > 5 else "")
        raise MotionError(f"{source}: {len(frames)} frame(s) have NaN/inf {what} values (frames {shown}); "
                          "fix or trim the clip")


def _check_fps(fps: float, name: str, source: str) -> None:
    if not np.isfinite(fps) or fps <= 0:
        raise MotionError(f"{source}: {name} = {fps} is not a positive frame rate")


# ----------------------------------------------------------------------------- pre-processing

def retarget_to_uniform(joints, target: Skeleton = DEFAULT_SKELETON, source: str = "joints") -> np.ndarray:
    """HumanML3D's uniform-skeleton step: IK on the source, FK with the target's bone lengths.

    The root trajectory is scaled by target_leg / source_leg (right thigh + shank of the first
    frame, as the reference does), so strides stay plausible for the new leg length.
    """
    joints = check_joints(joints, source)
    lengths = bone_lengths(joints)[:, 1:]
    if lengths.min() < 1e-6:
        frame, bone = np.unravel_index(np.argmin(lengths), lengths.shape)
        raise MotionError(f"{source}: bone {JOINT_NAMES[PARENTS[bone + 1]]}->{JOINT_NAMES[bone + 1]} has zero "
                          f"length at frame {frame}; the joint mapping puts two joints on one point")
    source_leg = lengths[0, 4] + lengths[0, 7]  # right knee and right ankle bones
    local = target.inverse_kinematics(joints)
    return target.forward_kinematics(local, joints[:, 0] * (target.leg_length / source_leg))


def canonicalize(joints, facing_sigma: float = 0.0, source: str = "joints") -> np.ndarray:
    """Floor at the clip's lowest joint, first-frame root XZ at the origin, first frame facing +Z.

    `facing_sigma` (frames) smooths the facing before taking the first frame's; pass the
    value `joints_to_features` uses to make `features_to_joints` return these exact positions.
    """
    joints = check_joints(joints, source).copy()
    joints[..., 1] -= joints[..., 1].min()
    joints[..., 0] -= joints[0, 0, 0]
    joints[..., 2] -= joints[0, 0, 2]
    first_heading = facing_angles(joints, facing_sigma)[0]
    return qrot(yaw_quat(np.float64(-first_heading)), joints)


# ----------------------------------------------------------------------------- features

def joints_to_features(joints, feet_threshold: float = 0.002, contact_height: float | None = None,
                       facing_sigma: float = HUMANML3D_FACING_SIGMA, source: str = "joints",
                       definition: str = "trimo") -> np.ndarray:
    """Joint positions (T, 22, 3) at 20 fps, canonicalized -> float32 features (T-1, 263).

    Foot contact: squared frame-to-frame displacement < `feet_threshold` (m^2), as in the
    released code. `contact_height` (metres, default off like the released code) additionally
    requires the joint to be below that height at frame t. `definition="humanml3d"` computes
    HumanML3D's released features instead (`_humanml3d_features`; contact_height and
    facing_sigma do not apply).
    """
    joints = check_joints(joints, source)
    if definition == "humanml3d":
        return _humanml3d_features(joints, feet_threshold)
    if definition != "trimo":
        raise MotionError(f"{source}: feature definition {definition!r} is not one of {MOTION_FEATURES}")
    heading = facing_angles(joints, facing_sigma)
    to_facing = qinv(yaw_quat(heading))  # world -> facing frame, per frame

    turn = np.angle(np.exp(1j * (heading[1:] - heading[:-1])))  # wrapped to (-pi, pi]
    root_rot_vel = -0.5 * turn
    root_step = qrot(to_facing[1:], joints[1:, 0] - joints[:-1, 0])
    root_y = joints[:-1, 0, 1]

    centred = joints.copy()
    centred[..., 0] -= joints[:, :1, 0]
    centred[..., 2] -= joints[:, :1, 2]
    ric = qrot(to_facing[:, None], centred)[:-1, 1:]

    local_quats = DEFAULT_SKELETON.inverse_kinematics(joints, facing_sigma)
    rot6d = quat_to_cont6d(local_quats[:-1, 1:])

    local_vel = qrot(to_facing[:-1, None], joints[1:] - joints[:-1])

    feet = list(FOOT_JOINTS)
    contact = ((joints[1:, feet] - joints[:-1, feet]) ** 2).sum(-1) < feet_threshold
    if contact_height is not None:
        contact &= joints[:-1, feet, 1] < contact_height

    n = len(joints) - 1
    features = np.concatenate([
        root_rot_vel[:, None], root_step[:, [0, 2]], root_y[:, None], ric.reshape(n, -1),
        rot6d.reshape(n, -1), local_vel.reshape(n, -1), contact.astype(np.float64),
    ], axis=-1)
    return features.astype(np.float32)


def _humanml3d_features(joints: np.ndarray, feet_threshold: float) -> np.ndarray:
    """HumanML3D's released feature extraction, step by step as its processing describes it, with
    the quirks that make its rotation block and root angular velocity differ from trimo's:
    - the clip is put on the floor, its first root at the XZ origin and turned so that its first
      frame faces +Z (unsmoothed facing from hips and shoulders);
    - its inverse kinematics takes each joint's rotation as the world-frame shortest arc from the
      rest direction to the bone, relative to the chain's running rotation, and every chain
      (both arms included) starts from the root's rotation, not from its parent joint's;
    - the root rotation comes from a facing whose hip vector is reversed (its skeleton names the
      face joints in another order than its processing), smoothed over time (sigma 20 frames),
      and is the identity at frame 0;
    - the root angular velocity is arcsin of the y part of the frame-to-frame root rotation, which
      jumps when the heading crosses 180 degrees.
    """
    p = joints.copy()
    p[..., 1] -= p[..., 1].min()
    p -= p[0, 0] * np.array([1.0, 0.0, 1.0])
    across = (p[0, R_HIP] - p[0, L_HIP]) + (p[0, R_SHOULDER] - p[0, L_SHOULDER])
    forward = np.cross([0.0, 1.0, 0.0], across)
    p = qrot(qbetween(forward, np.array([0.0, 0.0, 1.0])), p)
    feet = list(FOOT_JOINTS)
    contact = ((p[1:, feet] - p[:-1, feet]) ** 2).sum(-1) < feet_threshold

    across = (p[:, L_HIP] - p[:, R_HIP]) + (p[:, R_SHOULDER] - p[:, L_SHOULDER])
    across /= np.linalg.norm(across, axis=-1, keepdims=True)
    forward = gaussian_filter1d(np.cross([0.0, 1.0, 0.0], across), HUMANML3D_FACING_SIGMA, axis=0, mode="nearest")
    root = qbetween(forward, np.broadcast_to([0.0, 0.0, 1.0], forward.shape))   # world -> facing
    root[0] = (1.0, 0.0, 0.0, 0.0)
    local = np.zeros(p.shape[:2] + (4,))
    local[:, 0] = root
    for chain in KINEMATIC_CHAINS:
        running = root
        for parent, child in zip(chain[:-1], chain[1:]):
            world = qbetween(np.broadcast_to(REST_DIRECTIONS[child], (len(p), 3)), p[:, child] - p[:, parent])
            local[:, child] = qmul(qinv(running), world)
            running = qmul(running, local[:, child])

    root_turn = qmul(root[1:], qinv(root[:-1]))
    root_step = qrot(root[1:], p[1:, 0] - p[:-1, 0])
    centred = p - p[:, :1] * np.array([1.0, 0.0, 1.0])
    ric = qrot(root[:, None], centred)
    local_vel = qrot(root[:-1, None], p[1:] - p[:-1])
    n = len(p) - 1
    features = np.concatenate([
        np.arcsin(np.clip(root_turn[:, 2:3], -1.0, 1.0)), root_step[:, [0, 2]], p[:-1, 0, 1:2],
        ric[:-1, 1:].reshape(n, -1), quat_to_cont6d(local[:-1, 1:]).reshape(n, -1), local_vel.reshape(n, -1),
        contact.astype(np.float64),
    ], axis=-1)
    return features.astype(np.float32)


def _api(x):
    """Array helpers for NumPy or torch; torch low-precision floats are lifted to float32."""
    if isinstance(x, torch.Tensor):
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        return work, torch, (lambda a, axis: torch.cumsum(a, dim=axis)), (lambda parts, axis: torch.cat(parts, dim=axis))
    work = np.asarray(x, dtype=np.float64)
    return work, np, (lambda a, axis: np.cumsum(a, axis=axis)), (lambda parts, axis: np.concatenate(parts, axis=axis))


def _like_input(result, features):
    """Cast a result back to the input's float dtype (float64 for non-float NumPy input)."""
    if isinstance(features, torch.Tensor):
        return result.to(features.dtype)
    dtype = np.asarray(features).dtype
    return result.astype(dtype if np.issubdtype(dtype, np.floating) else np.float64, copy=False)


def _root_rotation_and_position(f, xp, cumsum, cat):
    """Integrate root angular and XZ velocity: world->facing quats (..., T, 4), root pos (..., T, 3)."""
    zeros = 0 * f[..., :1, 0]
    half_angle = cumsum(cat([zeros, f[..., :-1, 0]], -1), -1)
    to_facing = yaw_quat(2.0 * half_angle)
    steps = xp.stack([f[..., :-1, 1], 0 * f[..., :-1, 1], f[..., :-1, 2]], -1)
    steps = qrot(qinv(to_facing[..., 1:, :]), steps)
    xz = cumsum(cat([0 * steps[..., :1, :], steps], -2), -2)
    root = xp.stack([xz[..., 0], f[..., 3], xz[..., 2]], -1)
    return to_facing, root


def features_to_joints(features, source: str = "features"):
    """HumanML3D's recover_from_ric: (..., T, 263) -> joint positions (..., T, 22, 3).

    Same type (NumPy/torch) and dtype as the input. The result is in the clip's canonical frame:
    first frame root XZ at the origin, first frame's (feature) facing along +Z.
    """
    check_features(features, source)
    f, xp, cumsum, cat = _api(features)
    to_facing, root = _root_rotation_and_position(f, xp, cumsum, cat)
    ric = f[..., 4:67].reshape(*f.shape[:-1], NUM_JOINTS - 1, 3)
    world = qrot(qinv(to_facing)[..., None, :], ric)
    offset = xp.stack([root[..., 0], 0 * root[..., 1], root[..., 2]], -1)[..., None, :]
    joints = cat([root[..., None, :], world + offset], -2)
    return _like_input(joints, features)


def features_to_joint12(features, source: str = "features"):
    """MLP's per-joint view of the 263 vector: (..., T, 263) -> (..., T, 22, 12).

    Per joint: [0:6] continuous 6D rotation, [6:9] position, [9:12] velocity.
    - root (joint 0): 6D of the world->facing rotation integrated from dim 0 (identity at the
      first frame); position = root position integrated from dims 1:3 with height dim 3
      (global, first frame at the origin); velocity = its local velocity (dims 193:196);
    - joints 1..21: 6D local rotation (dims 67:193); root-relative position in the facing frame
      (dims 4:67); local velocity (dims 196:259).
    This is the layout of MLP's `recover_rot_pos_velocity`. Same type and dtype as the input.
    """
    check_features(features, source)
    f, xp, cumsum, cat = _api(features)
    to_facing, root = _root_rotation_and_position(f, xp, cumsum, cat)
    lead = f.shape[:-1]
    rot = cat([matrix_to_cont6d(quat_to_matrix(to_facing))[..., None, :],
               f[..., 67:193].reshape(*lead, NUM_JOINTS - 1, 6)], -2)
    pos = cat([root[..., None, :], f[..., 4:67].reshape(*lead, NUM_JOINTS - 1, 3)], -2)
    vel = f[..., 193:259].reshape(*lead, NUM_JOINTS, 3)
    out = cat([rot, pos, vel], -1)
    return _like_input(out, features)


# ----------------------------------------------------------------------------- resampling

def _resample_plan(num_frames: int, src_fps: float, dst_fps: float, source: str):
    _check_fps(src_fps, "src_fps", source)
    _check_fps(dst_fps, "dst_fps", source)
    if num_frames < 2:
        raise MotionError(f"{source}: {num_frames} frame(s) cannot be resampled; at least 2 are needed")
    ratio = src_fps / dst_fps
    step = round(ratio)
    if step >= 1 and abs(ratio - step) < 1e-6:
        return step, None, None
    times = np.arange(0.0, (num_frames - 1) + 1e-9, ratio)  # in source frames
    lower = np.minimum(np.floor(times).astype(np.int64), num_frames - 2)
    return None, lower, times - lower


def resample(positions, src_fps: float, dst_fps: float = FEATURE_FPS, source: str = "motion") -> np.ndarray:
    """Resample (T, ...) frames in time: striding for integer ratios (HumanML3D's down-sampling),
    otherwise linear interpolation at times k / dst_fps within the clip."""
    positions = np.asarray(positions)
    step, lower, frac = _resample_plan(len(positions), src_fps, dst_fps, source)
    if step is not None:
        return positions[::step].copy()
    frac = frac.reshape((-1,) + (1,) * (positions.ndim - 1))
    return positions[lower] * (1.0 - frac) + positions[lower + 1] * frac


# ----------------------------------------------------------------------------- normalization

CONVENTIONS = ("per_dim", "humanml3d_group")


@dataclass
class FeatureStats:
    """Mean/std of the 263 features and how the std was made.

    per_dim: plain per-dimension std over all frames (TMR).
    humanml3d_group: within each of the 7 `FEATURE_GROUPS` the std is replaced by the group's
    mean std, divided by that group's divisor (HumanML3D's Mean.npy/Std.npy use divisors of 1;
    the original text-to-motion training code divides the root groups and the foot contacts by
    feat_bias = 5 to up-weight them).
    """

    name: str
    convention: str
    mean: np.ndarray
    std: np.ndarray
    count: int
    group_divisors: tuple[float, ...] = field(default=(1.0,) * len(FEATURE_GROUPS))

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        self.group_divisors = tuple(float(d) for d in self.group_divisors)
        if self.convention not in CONVENTIONS:
            raise MotionError(f"stats {self.name!r}: convention {self.convention!r} is not one of {CONVENTIONS}")
        for what, arr in (("mean", self.mean), ("std", self.std)):
            if arr.shape != (FEATURE_DIM,):
                raise MotionError(f"stats {self.name!r}: {what} has shape {arr.shape}, expected ({FEATURE_DIM},)")
        if len(self.group_divisors) != len(FEATURE_GROUPS):
            raise MotionError(f"stats {self.name!r}: {len(self.group_divisors)} group divisors, expected 7")

    @classmethod
    def compute(cls, arrays: Iterable, convention: str = "per_dim", name: str = "",
                group_divisors: tuple[float, ...] | dict[str, float] | None = None) -> FeatureStats:
        """Stream over (T, 263) arrays, merging per-array mean and squared deviations (Chan et al.)."""
        divisors = _divisors(group_divisors)
        count, mean, m2 = 0, np.zeros(FEATURE_DIM), np.zeros(FEATURE_DIM)
        for i, arr in enumerate(arrays):
            x = np.asarray(check_features(np.asarray(arr), f"{name or 'stats'} input {i}"), dtype=np.float64)
            x = x.reshape(-1, FEATURE_DIM)
            n = len(x)
            batch_mean = x.mean(0)
            batch_m2 = ((x - batch_mean) ** 2).sum(0)
            delta = batch_mean - mean
            total = count + n
            mean = mean + delta * (n / total)
            m2 = m2 + batch_m2 + delta ** 2 * (count * n / total)
            count = total
        if count == 0:
            raise MotionError(f"stats {name!r}: no feature frames given")
        std = np.sqrt(m2 / count)
        if convention == "humanml3d_group":
            std = std.copy()
            for (group, sl), divisor in zip(FEATURE_GROUPS.items(), divisors):
                std[sl] = std[sl].mean() / divisor
        return cls(name=name, convention=convention, mean=mean, std=std, count=count, group_divisors=divisors)

    def normalize(self, x, eps: float = 1e-12):
        mean, std = self._like(x)
        return (x - mean) / (std + eps)

    def denormalize(self, x, eps: float = 1e-12):
        mean, std = self._like(x)
        return x * (std + eps) + mean

    def _like(self, x):
        if isinstance(x, torch.Tensor):
            return (torch.as_tensor(self.mean, dtype=x.dtype, device=x.device),
                    torch.as_tensor(self.std, dtype=x.dtype, device=x.device))
        dtype = np.asarray(x).dtype if np.issubdtype(np.asarray(x).dtype, np.floating) else np.float64
        return self.mean.astype(dtype), self.std.astype(dtype)

    def save(self, path: str | Path) -> None:
        """Write a pickle-free .npz (strings as unicode arrays)."""
        np.savez(path, name=np.array(self.name), convention=np.array(self.convention), mean=self.mean,
                 std=self.std, count=np.array(self.count, dtype=np.int64),
                 group_divisors=np.array(self.group_divisors, dtype=np.float64))

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        keys = ("name", "convention", "mean", "std", "count", "group_divisors")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in keys if k not in data.files]
                if missing:
                    raise MotionError(f"{path}: feature stats file lacks {missing}; write it with FeatureStats.save")
                values = {k: data[k] for k in keys}
        except (OSError, ValueError) as err:
            if isinstance(err, MotionError):
                raise
            raise MotionError(f"{path}: cannot read feature stats ({err}); expected a FeatureStats.save .npz") from err
        for key in ("mean", "std"):
            if values[key].shape != (FEATURE_DIM,):
                raise MotionError(f"{path}: {key} has shape {values[key].shape}, expected ({FEATURE_DIM},)")
        return cls(name=str(values["name"]), convention=str(values["convention"]), mean=values["mean"],
                   std=values["std"], count=int(values["count"]), group_divisors=tuple(values["group_divisors"]))


def _divisors(group_divisors) -> tuple[float, ...]:
    if group_divisors is None:
        return (1.0,) * len(FEATURE_GROUPS)
    if isinstance(group_divisors, dict):
        unknown = set(group_divisors) - set(FEATURE_GROUPS)
        if unknown:
            raise MotionError(f"unknown feature groups {sorted(unknown)}; groups are {list(FEATURE_GROUPS)}")
        return tuple(float(group_divisors.get(g, 1.0)) for g in FEATURE_GROUPS)
    divisors = tuple(float(d) for d in group_divisors)
    if len(divisors) != len(FEATURE_GROUPS):
        raise MotionError(f"{len(divisors)} group divisors given, expected 7 ({list(FEATURE_GROUPS)})")
    return divisors
