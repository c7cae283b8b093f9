"""The result every importer returns, and the one error type they raise.

`ImportedMotion` holds global joint positions of the 22 canonical joints (SMPL order, metres,
Y up) at the source frame rate; `to_canonical` brings them onto HumanML3D's uniform skeleton at
20 fps through `motion.features`, so every source ends up in one representation.

The first frame is turned to face +Z using the same Gaussian-smoothed facing (sigma 20 frames)
that `joints_to_features` uses, so `features_to_joints(features())` returns `to_canonical()`'s
positions exactly; HumanML3D's process turns by the unsmoothed facing, leaving its saved
`new_joints` a small yaw away from what its own `recover_from_ric` returns.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from motion.features import (
    HUMANML3D_FACING_SIGMA, MotionError, canonicalize, joints_to_features, resample, retarget_to_uniform,
)
from motion.features import check_joints as motion_check_joints

TARGET_FPS = 20.0


class MotionImportError(MotionError):
    """Bad mocap input; the message names the file, the problem and the fix (one line). `reason`
    is a short category (a converter counts skipped samples by it)."""

    def __init__(self, message: str, reason: str = "bad_input"):
        super().__init__(message)
        self.reason = reason


def check_joints(joints: np.ndarray, source: str | Path) -> np.ndarray:
    """Return `joints` as float64 (T >= 2, 22, 3), finite, or raise MotionImportError naming `source`."""
    try:
        return motion_check_joints(joints, str(source))
    except MotionError as err:
        raise MotionImportError(str(err)) from None


def frame_range(frames: int, fps: float, start: float | None, end: float | None) -> slice:
    """The frames of [start, end) seconds of a clip of `frames` frames (None = its start / end)."""
    first = 0 if start is None else max(0, int(round(start * fps)))
    stop = frames if end is None else min(frames, int(round(end * fps)))
    return slice(first, max(first, stop))


@dataclass
class ImportedMotion:
    """Global positions of the 22 canonical joints, float64 (T, 22, 3), metres, Y up, at `fps`."""

    joints: np.ndarray
    fps: float
    source: str
    # canonical name -> the source joint used (ASF: "bone:start|end|mid"; AMASS: "smplh:<index>")
    joint_names_used: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.source = str(self.source)
        self.joints = check_joints(self.joints, self.source)
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise MotionImportError(f"{self.source}: frame rate {self.fps} is not positive; pass fps=")

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    def piece(self, start: float | None, end: float | None) -> ImportedMotion:
        """The motion's [start, end) seconds (a clip too short for that fails with the source named)."""
        joints = self.joints[frame_range(self.num_frames, self.fps, start, end)]
        where = f"{self.source} [{start or 0:g} s, {'end' if end is None else f'{end:g} s'})"
        if len(joints) < 2:
            raise MotionImportError(f"{where}: fewer than 2 frames in this piece of a {self.num_frames / self.fps:.2f} s "
                                    "take; check --start/--end", reason="empty_piece")
        return ImportedMotion(joints, self.fps, where, self.joint_names_used)

    def to_canonical(self, target_fps: float = TARGET_FPS,
                     facing_sigma: float = HUMANML3D_FACING_SIGMA) -> np.ndarray:
        """Resample to `target_fps`, retarget to the uniform skeleton, put on the floor facing +Z."""
        joints = self.joints
        if abs(self.fps - target_fps) > 1e-6:
            joints = resample(joints, self.fps, target_fps, source=self.source)
        if joints.shape[0] < 2:
            raise MotionImportError(
                f"{self.source}: only {joints.shape[0]} frame(s) remain at {target_fps} fps "
                f"(clip is {self.num_frames / self.fps:.3f} s); the clip is too short")
        retargeted = retarget_to_uniform(joints, source=self.source)
        return canonicalize(retargeted, facing_sigma=facing_sigma, source=self.source)

    def features(self, target_fps: float = TARGET_FPS) -> np.ndarray:
        """HumanML3D 263-d features (T'-1, 263) float32 of the canonical motion."""
        return joints_to_features(self.to_canonical(target_fps), source=self.source)
