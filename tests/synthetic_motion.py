"""Procedural test motion: FK of smooth random joint rotations on a walking, turning root.

Used by the motion representation tests where real mocap is not needed (or not present).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from motion.rotations import qmul, yaw_quat
from motion.skeleton import DEFAULT_BONE_LENGTHS, NUM_JOINTS, Skeleton


def smooth_signal(rng: np.random.Generator, num_frames: int, fps: float, dims: int, amplitude: float) -> np.ndarray:
    """Sum of three random sinusoids (0.2-1.5 Hz) per dimension, (T, dims)."""
    t = np.arange(num_frames)[:, None, None] / fps
    freq = rng.uniform(0.2, 1.5, size=(1, dims, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(1, dims, 3))
    return amplitude / 3 * np.sin(2 * np.pi * freq * t + phase).sum(-1)


def random_skeleton(rng: np.random.Generator, spread: float = 0.15) -> Skeleton:
    """The default skeleton with every bone scaled by a random factor in [1 - spread, 1 + spread]."""
    scale = rng.uniform(1 - spread, 1 + spread, size=NUM_JOINTS)
    return Skeleton.from_bone_lengths(DEFAULT_BONE_LENGTHS * scale)


def synthetic_clip(num_frames: int = 120, fps: float = 20.0, seed: int = 0, turn_rate: float = 0.8,
                   speed: float = 1.2, skeleton: Skeleton | None = None, return_rotations: bool = False):
    """Joint positions (T, 22, 3): a body walking at `speed` m/s while its heading turns at a
    time-varying rate up to `turn_rate` rad/s (through +-180 degrees on long clips), with
    smooth random local joint rotations (up to ~0.4 rad) and a little body sway."""
    rng = np.random.default_rng(seed)
    skeleton = skeleton or random_skeleton(rng)
    t = np.arange(num_frames) / fps
    heading = 0.4 + turn_rate * np.cumsum(np.sin(0.3 * t + 0.5) + 0.3) / fps
    step = speed / fps * np.stack([np.sin(heading), np.zeros_like(heading), np.cos(heading)], -1)
    root = np.cumsum(step, axis=0) + np.array([1.5, 0.0, -2.0])
    root[:, 1] = 1.0 + 0.03 * np.sin(2 * np.pi * 1.8 * t)

    local = Rotation.from_rotvec(smooth_signal(rng, num_frames, fps, NUM_JOINTS * 3, 0.4).reshape(-1, 3))
    local = local.as_quat(scalar_first=True).reshape(num_frames, NUM_JOINTS, 4)
    sway = Rotation.from_rotvec(smooth_signal(rng, num_frames, fps, 3, 0.1)).as_quat(scalar_first=True)
    local[:, 0] = qmul(yaw_quat(heading), sway)
    joints = skeleton.forward_kinematics(local, root)
    return (joints, local) if return_rotations else joints
