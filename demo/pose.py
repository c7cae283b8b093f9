"""Upper-body poses as named joint angles (radians per frame) -> local rotations (T, 22, 4).

Angles are easier to script and to interpolate than quaternions. Per arm (prefix `l_` / `r_`):
  flex   raise the arm forward (pi/2: pointing forward, pi: overhead)
  abd    raise the arm sideways (pi/2: horizontal, to the body's side)
  horiz  swing the raised arm towards the body's midline
  elbow  bend the elbow (forearm forwards/up relative to the upper arm)
  fore   swing the forearm sideways, towards the outside (a wave)
Trunk: `bend` forward through the three spine joints, `twist` about the spine (positive turns
the chest towards the body's left), `lean` sideways (positive towards the left), `tilt` the pelvis
forward; head: `nod` down, `look` towards the left. The right arm's angles mean the same thing
mirrored, so a primitive written for one side serves the other.
"""
from __future__ import annotations

import numpy as np

from demo.body import axis_quat, chain, mirror_quat
from motion.skeleton import NUM_JOINTS

X, Y, Z = 0, 1, 2
ARM_ANGLES = ("flex", "abd", "horiz", "elbow", "fore")
TRUNK_ANGLES = ("bend", "twist", "lean", "tilt", "nod", "look")
# A relaxed stance: arms a little away from the body, elbows a little bent.
NEUTRAL = {"abd": 0.12, "elbow": 0.2}
SIDES = ("l", "r")


def neutral_pose(num_frames: int) -> dict[str, np.ndarray]:
    """Every angle as a (T,) array at its relaxed value."""
    pose = {f"{s}_{a}": np.full(num_frames, NEUTRAL.get(a, 0.0)) for s in SIDES for a in ARM_ANGLES}
    pose.update({a: np.zeros(num_frames) for a in TRUNK_ANGLES})
    return pose


def blend_pose(pose: dict[str, np.ndarray], target: dict[str, float | np.ndarray], weight: np.ndarray) -> None:
    """In place: pose[k] += weight * (target[k] - pose[k]) for the angles named in `target`."""
    for name, value in target.items():
        pose[name] = pose[name] + weight * (value - pose[name])


def _arm(flex, abd, horiz, elbow, fore) -> tuple[np.ndarray, np.ndarray]:
    """Left-arm local rotations of the upper arm (elbow joint) and forearm (wrist joint)."""
    upper = chain(axis_quat(Y, -horiz), axis_quat(Z, abd), axis_quat(X, -flex))
    forearm = chain(axis_quat(Z, fore), axis_quat(X, -elbow))
    return upper, forearm


def pose_to_local(pose: dict[str, np.ndarray]) -> np.ndarray:
    """Local rotations (T, 22, 4) for the trunk, head and arms; legs stay at identity."""
    num_frames = len(pose["bend"])
    local = np.zeros((num_frames, NUM_JOINTS, 4))
    local[..., 0] = 1.0
    local[:, 0] = axis_quat(X, pose["tilt"])
    spine = chain(axis_quat(Z, -pose["lean"] / 3), axis_quat(Y, pose["twist"] / 3), axis_quat(X, pose["bend"] / 3))
    local[:, [3, 6, 9]] = spine[:, None]
    local[:, 12] = chain(axis_quat(Y, pose["look"]), axis_quat(X, pose["nod"]))
    for side, (elbow_joint, wrist_joint) in (("l", (18, 20)), ("r", (19, 21))):
        upper, forearm = _arm(*(pose[f"{side}_{a}"] for a in ARM_ANGLES))
        if side == "r":
            upper, forearm = mirror_quat(upper), mirror_quat(forearm)
        local[:, elbow_joint], local[:, wrist_joint] = upper, forearm
    return local
