"""A demo body: per-instance proportions, a primitive's output (`Track`) and its assembly into joints.

A primitive describes a motion by what the body should do, not by every joint:
- the pelvis path on the floor (`root_xz`), its heading and its height,
- local rotations of the trunk, head and arms (motion.skeleton's convention; `local[:, 0]` is the
  pelvis tilt WITHOUT the heading, which `assemble` puts in front),
- where each ankle should be (`feet`), the yaw and pitch of each foot, and whether it is planted,
- optionally where each knee points (`knee_pole`; NaN: forwards along the foot, the standing case).
`local[:, 0]` may turn the pelvis any way (lying, rolling, flipping); a primitive that poses the legs
by angles instead of by feet turns that pose into ankle targets and knee poles (`leg_targets`).
The collars, shoulders and head are the body's own (`Body.girdle`), not the primitive's.
`assemble` runs forward kinematics for the upper body and solves each leg with analytic two-bone
IK onto its ankle target, so planted feet stay exactly where they were put (no sliding) and every
bone keeps its length. Where a target is out of reach the whole body is lowered (knees bend)
instead of lifting the foot, so contacts survive.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from motion.rotations import qinv, qmul, qnormalize, qrot, yaw_quat
from motion.skeleton import DEFAULT_BONE_LENGTHS, NUM_JOINTS, Skeleton

FPS = 20.0
# Leg joints per side (hip, knee, ankle, foot), left then right.
LEGS = ((1, 4, 7, 10), (2, 5, 8, 11))
# Standing, the ankle->ball bone points down by this angle: ball on the floor, ankle 4 cm up
# for the default 14 cm foot (see DEFAULT_BONE_LENGTHS).
FOOT_PITCH = float(np.arcsin(0.04 / 0.14))
_REACH = 0.995  # fraction of thigh + shank a leg may stretch to (keeps the knee direction defined)


def axis_quat(axis: int, angle) -> np.ndarray:
    """Rotations by `angle` (radians, any shape) about x (0), y (1) or z (2): (..., 4) wxyz."""
    angle = np.asarray(angle, dtype=np.float64)
    q = np.zeros(angle.shape + (4,))
    q[..., 0] = np.cos(angle / 2)
    q[..., 1 + axis] = np.sin(angle / 2)
    return q


def chain(*quats: np.ndarray) -> np.ndarray:
    """Product q1 * q2 * ... (the last one applies first)."""
    out = quats[0]
    for q in quats[1:]:
        out = qmul(out, q)
    return out


def mirror_quat(q: np.ndarray) -> np.ndarray:
    """The same rotation seen in the x-mirrored body: (w, x, y, z) -> (w, x, -y, -z)."""
    return q * np.array([1.0, 1.0, -1.0, -1.0])


GIRDLES = ("anatomical", "rest")


@dataclass
class Body:
    """One performer's bone lengths (22,) in metres, the stance heights they imply, and where the
    shoulders and head sit (`girdle`): "anatomical" raises the collars from the chest so that the
    shoulder joints sit beside them, at the height real mocap and SMPL put them, with the head
    joint above the neck; "rest" keeps the skeleton's rest directions there (the shoulder joints
    hang 0.12 m below the collars, about 0.24 m lower than a person's, and the head joint sits in
    front of the neck): the body of demo generator 1, kept to rebuild that corpus."""

    lengths: np.ndarray
    girdle: str = "anatomical"

    def __post_init__(self):
        if self.girdle not in GIRDLES:
            raise ValueError(f"girdle must be one of {GIRDLES}, got {self.girdle!r}")

    @property
    def skeleton(self) -> Skeleton:
        return Skeleton.from_bone_lengths(self.lengths)

    @property
    def leg(self) -> float:
        return float(self.lengths[4] + self.lengths[7])

    @property
    def foot(self) -> float:
        return float(self.lengths[10])

    @property
    def ankle_height(self) -> float:
        return self.foot * np.sin(FOOT_PITCH)

    @property
    def hip_half_width(self) -> float:
        return float(self.lengths[1])

    @property
    def stand_height(self) -> float:
        """Pelvis height standing with knees almost straight, feet under the hips."""
        return self.ankle_height + 0.98 * self.leg

    @property
    def arm(self) -> float:
        return float(self.lengths[18] + self.lengths[20])


# Bone groups that vary together (symmetric left/right): legs, feet, spine, neck+head, shoulder girdle, arms.
_GROUPS = ((1, 2), (4, 5, 7, 8), (10, 11), (3, 6, 9), (12, 15), (13, 14, 16, 17), (18, 19, 20, 21))


def random_body(rng: np.random.Generator, girdle: str = "anatomical") -> Body:
    """Default lengths x a height factor in [0.9, 1.1] x per-group noise (sd 3 %, clipped to +-6 %)."""
    lengths = DEFAULT_BONE_LENGTHS * rng.uniform(0.9, 1.1)
    for group in _GROUPS:
        lengths[list(group)] *= 1 + np.clip(rng.normal(0, 0.03), -0.06, 0.06)
    return Body(lengths, girdle)


@dataclass
class Track:
    """What one primitive (or a chain of them) makes the body do, frame by frame at FPS."""

    root_xz: np.ndarray     # (T, 2) pelvis position on the floor (x, z)
    heading: np.ndarray     # (T,) yaw in radians, 0 = facing +Z, positive turns towards +X (the left)
    pelvis_y: np.ndarray    # (T,) pelvis height
    local: np.ndarray       # (T, 22, 4) local rotations; [:, 0] pelvis tilt; leg joints are ignored
    feet: np.ndarray        # (T, 2, 3) ankle targets, left and right
    foot_yaw: np.ndarray    # (T, 2)
    foot_pitch: np.ndarray  # (T, 2) ankle->ball angle below the horizontal
    contact: np.ndarray     # (T, 2) bool, foot planted
    knee_pole: np.ndarray   # (T, 2, 3) direction each knee bends towards; NaN: the standing default

    def __len__(self) -> int:
        return len(self.heading)

    @classmethod
    def standing(cls, body: Body, num_frames: int) -> Track:
        """The neutral stance at the origin facing +Z, held for `num_frames`."""
        local = np.zeros((num_frames, NUM_JOINTS, 4))
        local[..., 0] = 1.0
        feet = np.zeros((num_frames, 2, 3))
        feet[:, 0, 0], feet[:, 1, 0] = body.hip_half_width, -body.hip_half_width
        feet[..., 1] = body.ankle_height
        return cls(root_xz=np.zeros((num_frames, 2)), heading=np.zeros(num_frames),
                   pelvis_y=np.full(num_frames, body.stand_height), local=local, feet=feet,
                   foot_yaw=np.zeros((num_frames, 2)), foot_pitch=np.full((num_frames, 2), FOOT_PITCH),
                   contact=np.ones((num_frames, 2), bool), knee_pole=np.full((num_frames, 2, 3), np.nan))

    def transformed(self, heading: float, origin_xz: np.ndarray) -> Track:
        """This track turned by `heading` about the origin, then moved to `origin_xz`."""
        c, s = np.cos(heading), np.sin(heading)
        rot = np.array([[c, -s], [s, c]])  # rows (x, z): yaw by `heading` maps +Z to (sin, cos), +X to (cos, -sin)
        root = self.root_xz @ rot + origin_xz
        feet = self.feet.copy()
        feet[..., [0, 2]] = self.feet[..., [0, 2]] @ rot + origin_xz
        pole = self.knee_pole.copy()
        pole[..., [0, 2]] = self.knee_pole[..., [0, 2]] @ rot
        return Track(root, self.heading + heading, self.pelvis_y, self.local, feet, self.foot_yaw + heading,
                     self.foot_pitch, self.contact, pole)


def home_feet(body: Body, root_xz: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Ankle positions (..., 2, 3) of the neutral stance under a pelvis at root_xz with `heading`."""
    w = body.hip_half_width
    across = np.stack([np.cos(heading), -np.sin(heading)], -1)  # body's +X (its left) on the floor
    feet = np.empty(np.shape(heading) + (2, 3))
    for side, sign in ((0, 1.0), (1, -1.0)):
        feet[..., side, 0] = root_xz[..., 0] + sign * w * across[..., 0]
        feet[..., side, 2] = root_xz[..., 1] + sign * w * across[..., 1]
    feet[..., 1] = body.ankle_height
    return feet


def _forward(yaw: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(yaw), np.zeros_like(yaw), np.cos(yaw)], -1)


def two_bone_knee(hip: np.ndarray, ankle: np.ndarray, upper: float, lower: float, pole: np.ndarray) -> np.ndarray:
    """Knee positions (T, 3) for a leg from `hip` to `ankle` (reachable), bending towards `pole`."""
    span = ankle - hip
    d = np.linalg.norm(span, axis=-1, keepdims=True)
    d = np.clip(d, abs(upper - lower) + 1e-6, upper + lower - 1e-9)
    u = span / np.maximum(np.linalg.norm(span, axis=-1, keepdims=True), 1e-9)
    along = (upper ** 2 - lower ** 2 + d ** 2) / (2 * d)
    out = np.sqrt(np.maximum(upper ** 2 - along ** 2, 0.0))
    perp = pole - (pole * u).sum(-1, keepdims=True) * u
    perp /= np.maximum(np.linalg.norm(perp, axis=-1, keepdims=True), 1e-9)
    return hip + along * u + out * perp


def _pelvis_drop(hips: np.ndarray, feet: np.ndarray, reach: float) -> np.ndarray:
    """Per-frame vertical drop (T,) that brings both ankle targets within `reach` of the hips."""
    rel = feet - hips
    horizontal = np.linalg.norm(rel[..., [0, 2]], axis=-1)
    horizontal = np.minimum(horizontal, reach * 0.98)
    drop = -rel[..., 1] - np.sqrt(reach ** 2 - horizontal ** 2)
    return np.clip(drop, 0.0, 0.15 * reach).max(-1)  # a primitive asking for more is a bug; don't hide it


def leg_targets(body: Body, root: np.ndarray, pelvis: np.ndarray, legs: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Track fields that make `assemble` reproduce a leg pose given by angles.

    root (T, 3) pelvis position, pelvis (T, 4) its world rotation (heading included), legs (T, 2, 3, 4)
    the local rotations of thigh, shank and foot (joints knee, ankle and foot of LEGS), left then
    right -> ankle targets (T, 2, 3), foot yaw (T, 2), foot pitch (T, 2) and knee poles (T, 2, 3)."""
    local = np.zeros((len(root), NUM_JOINTS, 4))
    local[..., 0] = 1.0
    local[:, 0] = pelvis
    for side, (_, knee, ankle, foot) in enumerate(LEGS):
        local[:, [knee, ankle, foot]] = legs[:, side]
    joints = body.skeleton.forward_kinematics(local, root)
    feet = joints[:, [7, 8]]
    toes = joints[:, [10, 11]] - feet
    yaw = np.arctan2(toes[..., 0], toes[..., 2])
    pitch = -np.arcsin(np.clip(toes[..., 1] / np.linalg.norm(toes, axis=-1), -1.0, 1.0))
    # the knee bends towards the thigh's own front (+Z of the thigh's frame): defined even for a straight leg
    thigh_rot = qmul(pelvis[:, None], legs[:, :, 0])
    pole = qrot(thigh_rot, np.broadcast_to([0.0, 0.0, 1.0], thigh_rot.shape[:-1] + (3,)))
    return feet, yaw, pitch, pole


_COLLAR_RAISE = 1.1   # rad above the horizontal: the collar bone rises from the chest to the shoulder


def _anatomical_girdle(local: np.ndarray) -> np.ndarray:
    """Collars up and out, shoulder joints beside them, the head above the neck, with the upper arms
    turned back so that the arm angles of demo.pose keep their meaning in the chest's frame."""
    local = local.copy()
    collar = axis_quat(2, _COLLAR_RAISE)
    shoulder = axis_quat(2, np.pi / 2 - _COLLAR_RAISE)   # collar * shoulder: the shoulder bone points outwards
    undo = qinv(qmul(collar, shoulder))
    for c, sh, elbow, mirror in ((13, 16, 18, False), (14, 17, 19, True)):
        cq, sq, uq = (mirror_quat(q) if mirror else q for q in (collar, shoulder, undo))
        local[:, c], local[:, sh] = cq, sq
        local[:, elbow] = qmul(uq, local[:, elbow])
    local[:, 15] = axis_quat(0, -np.pi / 2)   # head bone straight up from the neck
    return local


def assemble(track: Track, body: Body) -> np.ndarray:
    """Joint positions (T, 22, 3) of `body` performing `track`; bone lengths are exact."""
    skeleton = body.skeleton
    local = _anatomical_girdle(track.local) if body.girdle == "anatomical" else track.local.copy()
    local[:, 0] = qnormalize(qmul(yaw_quat(track.heading), local[:, 0]))
    for hip, knee, ankle, foot in LEGS:  # legs hang in the rest pose; IK places them below
        local[:, [hip, knee, ankle, foot]] = (1.0, 0.0, 0.0, 0.0)
    root = np.stack([track.root_xz[:, 0], track.pelvis_y, track.root_xz[:, 1]], -1)
    joints = skeleton.forward_kinematics(local, root)

    thigh, shank = float(body.lengths[4]), float(body.lengths[7])
    hips = joints[:, [1, 2]]
    drop = _pelvis_drop(hips, track.feet, _REACH * (thigh + shank))
    if drop.any():  # widen, then smooth, so the lowered pelvis moves gently and still covers the need
        drop = gaussian_filter1d(maximum_filter1d(drop, 7, mode="nearest"), 1.5, mode="nearest")
        joints[..., 1] -= drop[:, None]
    up = np.array([0.0, 1.0, 0.0])
    for side, (hip, knee, ankle, foot) in enumerate(LEGS):
        target = track.feet[:, side]
        forward = _forward(track.foot_yaw[:, side])
        pole = track.knee_pole[:, side]
        pole = np.where(np.isnan(pole), forward + 0.3 * up, pole)
        joints[:, knee] = two_bone_knee(joints[:, hip], target, thigh, shank, pole)
        # the ankle lies exactly one shank from the knee even where the target was out of reach
        shin = target - joints[:, knee]
        joints[:, ankle] = joints[:, knee] + shank * shin / np.linalg.norm(shin, axis=-1, keepdims=True)
        pitch = track.foot_pitch[:, side, None]
        joints[:, foot] = joints[:, ankle] + body.foot * (np.cos(pitch) * forward - np.sin(pitch) * up)
    return joints
