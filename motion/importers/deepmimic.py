"""DeepMimic humanoid motion files (JSON `.txt`: the clips pybullet ships in
`pybullet_data/data/motions/humanoid3d_*.txt` and `.../motions/walker/*.txt`, retargeted mocap).

A file is {"Loop": ..., "Frames": [[duration, root xyz (3), root quaternion w x y z (4), then per
joint: chest q4, neck q4, right hip q4, right knee angle, right ankle q4, right shoulder q4, right
elbow angle, left hip q4, left knee angle, left ankle q4, left shoulder q4, left elbow angle], ...]}
(44 numbers), Y up, metres, the character facing +X (so its right is +Z). Knees and elbows turn
about their local Z axis. The skeleton is the humanoid's URDF (pybullet's `humanoid/humanoid.urdf`)
at the scale pybullet loads it (0.25): the offsets below. Some files store quaternions that are
not unit length (0.58-1.12); they are normalized.

The humanoid has 15 points; the 22 canonical joints add spine1/spine3 (on the pelvis-chest and
chest-neck segments), collars (a third of the way from the neck base to each shoulder), the head
(0.12 m up the neck's axis) and toes (0.13 m forward, 0.05 m down in the ankle's frame). Their
directions only matter: `to_canonical()` retargets every bone to the uniform skeleton's length.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from motion.rotations import qnormalize, quat_to_matrix
from motion.skeleton import JOINT_NAMES

from .common import ImportedMotion, MotionImportError

# name, parent, offset in the parent's frame (m), degrees of freedom (4: quaternion, 1: hinge about z)
_JOINTS = (
    ("chest", "root", (0.0, 0.236151, 0.0), 4),
    ("neck", "chest", (0.0, 0.223894, 0.0), 4),
    ("right_hip", "root", (0.0, 0.0, 0.084887), 4),
    ("right_knee", "right_hip", (0.0, -0.421546, 0.0), 1),
    ("right_ankle", "right_knee", (0.0, -0.40987, 0.0), 4),
    ("right_shoulder", "chest", (-0.02405, 0.2435, 0.18311), 4),
    ("right_elbow", "right_shoulder", (0.0, -0.274788, 0.0), 1),
    ("left_hip", "root", (0.0, 0.0, -0.084887), 4),
    ("left_knee", "left_hip", (0.0, -0.421546, 0.0), 1),
    ("left_ankle", "left_knee", (0.0, -0.40987, 0.0), 4),
    ("left_shoulder", "chest", (-0.02405, 0.2435, -0.18311), 4),
    ("left_elbow", "left_shoulder", (0.0, -0.274788, 0.0), 1),
)
FRAME_SIZE = 1 + 3 + 4 + sum(dof for *_, dof in _JOINTS)   # 44
_WRIST = (0.0, -0.258947, 0.0)       # the hand's end, below the elbow
_HEAD = (0.0, 0.12, 0.0)             # above the neck joint
_TOE = (0.13, -0.05, 0.0)            # forward (+X) and down from the ankle


def _hinge(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    m = np.zeros(angle.shape + (3, 3))
    m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1], m[..., 2, 2] = c, -s, s, c, 1.0
    return m


def deepmimic_points(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Forward kinematics of (T, 44) frames: {point name: (T, 3) positions}."""
    pos = {"root": frames[:, 1:4]}
    rot = {"root": quat_to_matrix(qnormalize(frames[:, 4:8]))}
    i = 8
    for name, parent, offset, dof in _JOINTS:
        pos[name] = pos[parent] + rot[parent] @ np.asarray(offset)
        local = quat_to_matrix(qnormalize(frames[:, i:i + 4])) if dof == 4 else _hinge(frames[:, i])
        rot[name] = rot[parent] @ local
        i += dof
    for side in ("left", "right"):
        pos[f"{side}_wrist"] = pos[f"{side}_elbow"] + rot[f"{side}_elbow"] @ np.asarray(_WRIST)
        pos[f"{side}_toe"] = pos[f"{side}_ankle"] + rot[f"{side}_ankle"] @ np.asarray(_TOE)
    pos["head"] = pos["neck"] + rot["neck"] @ np.asarray(_HEAD)
    return pos


def load_deepmimic(path: str | Path) -> ImportedMotion:
    """A DeepMimic motion file as 22 canonical joints at its own frame rate."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        frames = np.asarray(data["Frames"], dtype=np.float64)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise MotionImportError(f"{path}: not a DeepMimic motion file ({type(err).__name__}: {err}); expected "
                                'JSON {"Frames": [[duration, root xyz, root wxyz, joints...], ...]}') from None
    if frames.ndim != 2 or frames.shape[1] != FRAME_SIZE or len(frames) < 2:
        raise MotionImportError(f"{path}: frames of shape {frames.shape}; a DeepMimic humanoid clip has two or more "
                                f"frames of {FRAME_SIZE} numbers")
    duration = float(frames[0, 0])
    if not np.isfinite(duration) or duration <= 0:
        raise MotionImportError(f"{path}: frame duration {duration} is not positive")
    p = deepmimic_points(frames)
    neck_base, chest = p["neck"], p["chest"]
    by_name = {
        "pelvis": p["root"], "left_hip": p["left_hip"], "right_hip": p["right_hip"],
        "spine1": (p["root"] + chest) / 2, "spine2": chest, "spine3": (chest + neck_base) / 2,
        "left_knee": p["left_knee"], "right_knee": p["right_knee"],
        "left_ankle": p["left_ankle"], "right_ankle": p["right_ankle"],
        "left_foot": p["left_toe"], "right_foot": p["right_toe"], "neck": neck_base, "head": p["head"],
        "left_collar": neck_base + (p["left_shoulder"] - neck_base) / 3,
        "right_collar": neck_base + (p["right_shoulder"] - neck_base) / 3,
        "left_shoulder": p["left_shoulder"], "right_shoulder": p["right_shoulder"],
        "left_elbow": p["left_elbow"], "right_elbow": p["right_elbow"],
        "left_wrist": p["left_wrist"], "right_wrist": p["right_wrist"],
    }
    joints = np.stack([by_name[name] for name in JOINT_NAMES], axis=1)
    return ImportedMotion(joints, 1.0 / duration, str(path), {name: "deepmimic" for name in JOINT_NAMES})
