"""Footsteps: where the feet go while the pelvis follows a path on the floor.

Every step lifts one foot, swings it along a low arc and puts it down at the neutral-stance
position the body will have half a stance later (the foot is then under the body mid-stance, as
in human gait). Between steps a foot does not move, so planted feet never slide. Walking, jogging,
running, side-stepping, turning on the spot and marching all come from this one routine with
different paths, cadences and duty factors (fraction of the cycle a foot is on the floor; below
0.5 there is a flight phase).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demo.body import FOOT_PITCH, FPS, Body, home_feet


def smoothstep(u) -> np.ndarray:
    """Minimum-jerk ease 0 -> 1 over u in [0, 1] (clipped outside)."""
    u = np.clip(u, 0.0, 1.0)
    return u ** 3 * (10 - 15 * u + 6 * u ** 2)


def bump(u) -> np.ndarray:
    """0 -> 1 -> 0 over u in [0, 1] with zero slope at both ends."""
    u = np.clip(u, 0.0, 1.0)
    return np.sin(np.pi * u) ** 2


def times(num_frames: int) -> np.ndarray:
    return np.arange(num_frames) / FPS


@dataclass
class Step:
    """Foot `foot` (0 left, 1 right) leaves at `lift` s, lands at `land` s under the body of time `aim`."""

    foot: int
    lift: float
    land: float
    aim: float


def step_schedule(first_foot: int, num_steps: int, start: float, period: float, duty: float,
                  end: float) -> list[Step]:
    """Alternating steps, one every `period` s from `start`; the last step of each foot aims at `end`."""
    swing = (1 - duty) * 2 * period
    steps = []
    for k in range(num_steps):
        lift = start + k * period
        land = lift + swing
        aim = end if k >= num_steps - 2 else min(land + duty * period, end)
        steps.append(Step((first_foot + k) % 2, lift, land, aim))
    return steps


def place_feet(body: Body, root_xz: np.ndarray, heading: np.ndarray, steps: list[Step], step_height: float,
               swing_pitch: float = 0.25, stance_scale: float = 1.0):
    """Ankle targets (T, 2, 3), foot yaw (T, 2), pitch (T, 2) and contact (T, 2) for the steps."""
    num_frames = len(heading)
    t = times(num_frames)
    frame_of = lambda seconds: min(int(round(seconds * FPS)), num_frames - 1)  # noqa: E731
    home = home_feet(body, root_xz, heading)
    centre = np.stack([root_xz[:, 0], np.zeros(num_frames), root_xz[:, 1]], -1)[:, None]
    home[..., [0, 2]] = centre[..., [0, 2]] + stance_scale * (home[..., [0, 2]] - centre[..., [0, 2]])
    feet = np.repeat(home[:1], num_frames, axis=0)
    yaw = np.full((num_frames, 2), float(heading[0]))
    pitch = np.full((num_frames, 2), FOOT_PITCH)
    contact = np.ones((num_frames, 2), bool)
    for step in steps:
        f = step.foot
        aim = frame_of(step.aim)
        before, after = feet[frame_of(step.lift), f].copy(), home[aim, f]
        yaw_before, yaw_after = yaw[frame_of(step.lift), f], heading[aim]
        u = (t - step.lift) / (step.land - step.lift)
        swing = (u > 0) & (u < 1)
        later = u >= 1
        s = 0.5 - 0.5 * np.cos(np.pi * u[swing])[:, None]  # gentlest peak speed of the smooth eases
        feet[swing, f] = before + s * (after - before)
        feet[swing, f, 1] += step_height * np.sin(np.pi * u[swing])
        yaw[swing, f] = yaw_before + s[:, 0] * (yaw_after - yaw_before)
        pitch[swing, f] += swing_pitch * np.sin(np.pi * u[swing])
        contact[swing, f] = False
        feet[later, f], yaw[later, f] = after, yaw_after
    return feet, yaw, pitch, contact
