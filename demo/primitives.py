"""The demo corpus's action primitives: parameterized recipes that turn (params, body, rng) into a Track.

Each primitive starts and ends in the neutral stance at its own origin, facing +Z (sit_down ends
seated and stand_up starts seated, at a seat that depends only on the body; get_up starts lying on
the floor), so primitives chain in any order the posture allows. `sample(rng)` draws the
parameters a caption talks about (direction, pace, side, count, angle, ...) and the ones it does
not (exact speed, amplitudes); `make(params, body, rng)` adds timing noise of about +-15 % to
every phase.

Directions are the body's own: forward +Z, left +X; turning left increases the heading.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from demo.body import FOOT_PITCH, FPS, Body, Track, assemble, axis_quat, chain, home_feet, leg_targets, mirror_quat
from demo.gait import bump, place_feet, smoothstep, step_schedule, times
from demo.pose import NEUTRAL, blend_pose, neutral_pose, pose_to_local

GRAVITY = 9.81
DIRECTIONS = {"forward": (0.0, 1.0), "backward": (0.0, -1.0), "left": (1.0, 0.0), "right": (-1.0, 0.0)}
SIDE_SIGN = {"left": 1.0, "right": -1.0}
COUNT_CHOICES = (1, 2, 3, 4)


@dataclass(frozen=True)
class Primitive:
    """One kind of action. `starts`/`ends` are the posture before and after ("stand", "sit" or
    "floor": lying); `group` is the action set it belongs to ("core" or "extended")."""

    name: str
    sample: Callable[[np.random.Generator], dict[str, Any]]
    make: Callable[[dict[str, Any], Body, np.random.Generator], Track]
    starts: str = "stand"
    ends: str = "stand"
    group: str = "core"


PRIMITIVES: dict[str, Primitive] = {}


def _register(name: str, sample, starts: str = "stand", ends: str = "stand", group: str = "core"):
    def wrap(make):
        PRIMITIVES[name] = Primitive(name, sample, make, starts, ends, group)
        return make
    return wrap


def _jitter(rng: np.random.Generator, seconds: float, spread: float = 0.15) -> float:
    return seconds * rng.uniform(1 - spread, 1 + spread)


def _frames(seconds: float) -> int:
    return int(np.ceil(seconds * FPS)) + 1


def _window(t: np.ndarray, rise: tuple[float, float], fall: tuple[float, float]) -> np.ndarray:
    """0 before rise[0], eases to 1 by rise[1], holds, eases back to 0 over [fall[0], fall[1]]."""
    up = smoothstep((t - rise[0]) / max(rise[1] - rise[0], 1e-6))
    down = smoothstep((t - fall[0]) / max(fall[1] - fall[0], 1e-6))
    return up * (1 - down)


def _track(body: Body, num_frames: int, pose: dict[str, np.ndarray] | None = None, **fields) -> Track:
    """The neutral stance with the given fields replaced and `pose` as the upper body."""
    track = Track.standing(body, num_frames)
    for name, value in fields.items():
        setattr(track, name, np.asarray(value))
    if pose is not None:
        track.local = pose_to_local(pose)
    return track


def _side_keys(side: str) -> list[str]:
    return {"left": ["l"], "right": ["r"], "both": ["l", "r"]}[side]


# ----------------------------------------------------------------------------- locomotion

def _locomotion(body: Body, rng: np.random.Generator, *, direction: tuple[float, float], speed: float,
                cadence: float, duty: float, num_steps: int, step_height: float, bob: float = 0.0,
                drop: float = 0.0, turn: float = 0.0, arm_swing: float = 0.3, elbow: float = 0.3,
                bend: float = 0.0, first_foot: int | None = None, arms_out: float = 0.0) -> Track:
    period = 1.0 / cadence
    start = _jitter(rng, 0.25)
    swing = (1 - duty) * 2 * period
    move_end = start + (num_steps - 1) * period + swing
    end = move_end + _jitter(rng, 0.3)
    num_frames = _frames(end)
    t = times(num_frames)
    first_foot = int(rng.integers(2)) if first_foot is None else first_foot

    ramp = min(period, 0.45 * (move_end - start))
    pace = _window(t, (start, start + ramp), (move_end - 1.5 * ramp, move_end))
    heading = turn * smoothstep((t - start) / (move_end - start))
    local_dir = np.asarray(direction, dtype=np.float64)
    c, s = np.cos(heading), np.sin(heading)
    # body (x=left, z=forward) -> world; yaw by `heading` maps +X to (cos, -sin), +Z to (sin, cos)
    world = np.stack([local_dir[0] * c + local_dir[1] * s, -local_dir[0] * s + local_dir[1] * c], -1)
    velocity = speed * pace[:, None] * world
    root_xz = np.concatenate([np.zeros((1, 2)), np.cumsum(velocity[:-1], axis=0) / FPS])

    steps = step_schedule(first_foot, num_steps, start, period, duty, end)
    feet, yaw, pitch, contact = place_feet(body, root_xz, heading, steps, step_height)

    posture = _window(t, (0.0, start + period), (move_end - period, end))
    phase = (t - start) / period
    pelvis_y = body.stand_height - drop * body.leg * posture + bob * np.cos(2 * np.pi * (phase - (1 - duty))) * pace
    pose = neutral_pose(num_frames)
    arm = np.cos(np.pi * (t - start - swing / 2) / period) * pace * (1.0 if first_foot == 0 else -1.0)
    pose["r_flex"] = pose["r_flex"] + arm_swing * arm
    pose["l_flex"] = pose["l_flex"] - arm_swing * arm
    blend_pose(pose, {"l_elbow": elbow, "r_elbow": elbow, "bend": bend, "tilt": 0.3 * bend,
                      "l_abd": NEUTRAL["abd"] + arms_out, "r_abd": NEUTRAL["abd"] + arms_out}, posture)
    pose["twist"] = -0.15 * arm_swing * arm
    return _track(body, num_frames, pose, root_xz=root_xz, heading=heading, pelvis_y=pelvis_y, feet=feet,
                  foot_yaw=yaw, foot_pitch=pitch, contact=contact)


def _walk_params(rng, directions=("forward", "forward", "backward", "left", "right")):
    return {"direction": str(rng.choice(directions)), "pace": str(rng.choice(["slow", "normal", "fast"])),
            "steps": int(rng.integers(4, 9))}


@_register("walk", _walk_params)
def walk(p, body, rng):
    speed = {"slow": 0.7, "normal": 1.1, "fast": 1.5}[p["pace"]] * rng.uniform(0.9, 1.1)
    forward = p["direction"] == "forward"
    if not forward:
        speed *= 0.55
    cadence = (1.3 + 0.45 * speed) * rng.uniform(0.95, 1.05)
    return _locomotion(body, rng, direction=DIRECTIONS[p["direction"]], speed=speed, cadence=cadence, duty=0.62,
                       num_steps=p["steps"], step_height=rng.uniform(0.06, 0.1), bob=0.015,
                       arm_swing=(0.25 + 0.15 * speed) if forward else 0.1,
                       bend=-0.05 if p["direction"] == "backward" else 0.05,
                       first_foot=None if forward or p["direction"] == "backward" else int(p["direction"] == "right"))


@_register("jog", lambda rng: {"direction": str(rng.choice(["forward", "forward", "backward"])),
                               "steps": int(rng.integers(6, 11))})
def jog(p, body, rng):
    speed = rng.uniform(1.9, 2.6) * (1.0 if p["direction"] == "forward" else 0.6)
    return _locomotion(body, rng, direction=DIRECTIONS[p["direction"]], speed=speed, cadence=rng.uniform(2.6, 2.9),
                       duty=0.42, num_steps=p["steps"], step_height=rng.uniform(0.1, 0.14), bob=-0.025, drop=0.04,
                       arm_swing=0.5, elbow=1.4, bend=0.1 if p["direction"] == "forward" else -0.05)


@_register("run", lambda rng: {"pace": str(rng.choice(["normal", "fast"])), "steps": int(rng.integers(6, 13))})
def run(p, body, rng):
    # stance lengths (speed x stance time) stay within what a 0.8 m leg can sweep
    speed = (rng.uniform(2.8, 3.3) if p["pace"] == "normal" else rng.uniform(3.6, 4.1))
    return _locomotion(body, rng, direction=DIRECTIONS["forward"], speed=speed, cadence=rng.uniform(3.1, 3.4),
                       duty=0.3, num_steps=p["steps"], step_height=rng.uniform(0.16, 0.22), bob=-0.03, drop=0.06,
                       arm_swing=0.8, elbow=1.5, bend=0.2)


@_register("crouch_walk", lambda rng: {"direction": str(rng.choice(["forward", "forward", "left", "right"])),
                                       "steps": int(rng.integers(4, 8))})
def crouch_walk(p, body, rng):
    return _locomotion(body, rng, direction=DIRECTIONS[p["direction"]], speed=rng.uniform(0.45, 0.7),
                       cadence=rng.uniform(1.4, 1.7), duty=0.65, num_steps=p["steps"], step_height=0.07,
                       drop=rng.uniform(0.22, 0.3), arm_swing=0.15, elbow=0.9, bend=rng.uniform(0.4, 0.6),
                       first_foot=None if p["direction"] == "forward" else int(p["direction"] == "right"))


@_register("turn", lambda rng: {"side": str(rng.choice(["left", "right"])), "angle": int(rng.choice([45, 90, 90, 135, 180]))})
def turn(p, body, rng):
    angle = np.radians(p["angle"]) * SIDE_SIGN[p["side"]]
    steps = 2 + int(abs(angle) // (np.pi / 3))
    return _locomotion(body, rng, direction=(0.0, 0.0), speed=0.0, cadence=rng.uniform(1.6, 2.0), duty=0.6,
                       num_steps=steps, step_height=0.05, turn=angle, arm_swing=0.05,
                       first_foot=0 if p["side"] == "left" else 1)


@_register("spin", lambda rng: {"side": str(rng.choice(["left", "right"])), "turns": int(rng.choice([1, 1, 2]))})
def spin(p, body, rng):
    angle = 2 * np.pi * p["turns"] * SIDE_SIGN[p["side"]]
    return _locomotion(body, rng, direction=(0.0, 0.0), speed=0.0, cadence=rng.uniform(2.8, 3.2), duty=0.55,
                       num_steps=2 + 4 * p["turns"], step_height=0.06, turn=angle, arm_swing=0.0,
                       arms_out=rng.uniform(0.6, 1.2), first_foot=0 if p["side"] == "left" else 1)


@_register("march", lambda rng: {"steps": int(rng.integers(6, 11))})
def march(p, body, rng):
    return _locomotion(body, rng, direction=(0.0, 0.0), speed=0.0, cadence=rng.uniform(1.5, 1.9), duty=0.55,
                       num_steps=p["steps"], step_height=rng.uniform(0.22, 0.3), arm_swing=0.7, elbow=1.3)


# ----------------------------------------------------------------------------- jumps

def _hermite(y0: float, v0: float, y1: float, v1: float, u: np.ndarray, duration: float) -> np.ndarray:
    """Cubic with value/slope (y0, v0) at u=0 and (y1, v1) at u=1; slopes in units per second."""
    h00, h10 = 2 * u ** 3 - 3 * u ** 2 + 1, u ** 3 - 2 * u ** 2 + u
    h01, h11 = -2 * u ** 3 + 3 * u ** 2, u ** 3 - u ** 2
    return h00 * y0 + h10 * v0 * duration + h01 * y1 + h11 * v1 * duration


def _jump_profile(body: Body, rng: np.random.Generator, apex: float, crouch: float, start: float,
                  t: np.ndarray, pace: float = 1.0) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """Pelvis height offsets (T,) (0 = standing) for one jump, airborne mask, takeoff, landing, end times.

    `pace` < 1 shortens the crouch, push and landing phases (small rhythmic jumps)."""
    down, push = _jitter(rng, 0.35 * pace), _jitter(rng, 0.18 * max(pace, 0.8))
    absorb, rise = _jitter(rng, 0.2 * max(pace, 0.8)), _jitter(rng, 0.35 * pace)
    v0 = np.sqrt(2 * GRAVITY * apex)
    flight = 2 * v0 / GRAVITY
    takeoff = start + down + push
    land = takeoff + flight
    end = land + absorb + rise
    low = -crouch * body.leg
    y = np.zeros_like(t)
    for lo, hi, values in (
        (start, start + down, lambda u: low * smoothstep(u)),
        (start + down, takeoff, lambda u: _hermite(low, 0.0, 0.0, v0, u, push)),
        (takeoff, land, lambda u: v0 * (u * flight) - 0.5 * GRAVITY * (u * flight) ** 2),
        (land, land + absorb, lambda u: _hermite(0.0, -v0, 0.7 * low, 0.0, u, absorb)),
        (land + absorb, end, lambda u: 0.7 * low * (1 - smoothstep(u))),
    ):
        m = (t >= lo) & (t < hi)
        y[m] = values((t[m] - lo) / (hi - lo))
    return y, (t > takeoff) & (t < land), takeoff, land, end


def _jumps(body: Body, rng: np.random.Generator, count: int, apex: float, distance: float = 0.0,
           one_leg: int | None = None, jacks: bool = False) -> Track:
    crouch = 0.05 if one_leg is not None or jacks else rng.uniform(0.12, 0.2)
    horizon = 0.5 + (2 * count if jacks else count) * 2.0
    t = times(_frames(horizon))
    offset, airborne = np.zeros_like(t), np.zeros_like(t, dtype=bool)
    forward = np.zeros_like(t)
    wide = np.zeros_like(t)  # jumping jacks: 0 feet together, 1 feet apart
    arms = np.zeros_like(t)
    start, flights = _jitter(rng, 0.2), []
    for k in range(2 * count if jacks else count):  # a jumping jack is a jump apart and one back together
        y, air, takeoff, land, end = _jump_profile(body, rng, apex, crouch, start, t, pace=0.5 if crouch < 0.1 else 1.0)
        active = (t >= start) & (t < end)
        offset[active] = y[active]
        airborne |= air
        forward += distance * smoothstep((t - takeoff) / (land - takeoff))
        flights.append((takeoff, land))
        if jacks:
            wide += smoothstep((t - takeoff) / (land - takeoff)) * (1 if k % 2 == 0 else -1)
            arms += smoothstep((t - takeoff + 0.15) / (land - takeoff + 0.3)) * (1 if k % 2 == 0 else -1)
        start = end
    end_time = start + _jitter(rng, 0.25)
    num_frames = _frames(end_time)
    t, offset, airborne = t[:num_frames], offset[:num_frames], airborne[:num_frames]
    forward, wide, arms = forward[:num_frames], wide[:num_frames], arms[:num_frames]

    stand = body.stand_height
    root_xz = np.stack([np.zeros(num_frames), forward], -1)
    feet = home_feet(body, root_xz, np.zeros(num_frames))
    feet[:, 0, 0] += 0.25 * body.leg * wide
    feet[:, 1, 0] -= 0.25 * body.leg * wide
    lift = np.maximum(offset, 0.0)
    tuck = np.zeros(num_frames)
    for takeoff, land in flights:
        tuck += 0.6 * apex * bump((t - takeoff) / (land - takeoff))
    feet[..., 1] += (lift + tuck)[:, None]
    pitch = np.full((num_frames, 2), FOOT_PITCH) + (0.5 * np.minimum(tuck / max(apex, 1e-6), 1.0))[:, None]
    contact = np.repeat(~airborne[:, None], 2, axis=1)
    pose = neutral_pose(num_frames)
    # arms swing back in the crouch and forward-up at takeoff
    swing = np.clip(-offset / max(crouch * body.leg, 1e-6), 0, 1)
    if jacks:
        blend_pose(pose, {"l_abd": 2.8, "r_abd": 2.8, "l_elbow": 0.1, "r_elbow": 0.1}, np.clip(arms, 0, 1))
    elif one_leg is None:
        pose["l_flex"] = pose["l_flex"] - 0.6 * swing + 1.2 * np.clip(offset / 0.2, 0, 1)
        pose["r_flex"] = pose["l_flex"]
        pose["bend"] = 0.5 * swing
        pose["tilt"] = 0.3 * swing
    if one_leg is not None:
        held = _window(t, (0.0, 0.25), (t[-1] - 0.3, t[-1]))
        feet[:, one_leg, 1] = body.ankle_height + held * 0.3 * body.leg + lift + tuck
        feet[:, one_leg, 2] -= held * 0.15 * body.leg
        contact[:, one_leg] = held < 1e-3
        blend_pose(pose, {"l_abd": 0.5, "r_abd": 0.5}, held)
    pelvis_y = stand + offset
    return _track(body, num_frames, pose, root_xz=root_xz, pelvis_y=pelvis_y, feet=feet, foot_pitch=pitch,
                  contact=contact)


@_register("jump", lambda rng: {"count": int(rng.choice([1, 1, 2, 3]))})
def jump(p, body, rng):
    return _jumps(body, rng, p["count"], apex=rng.uniform(0.12, 0.3))


@_register("jump_forward", lambda rng: {"count": int(rng.choice([1, 1, 2]))})
def jump_forward(p, body, rng):
    return _jumps(body, rng, p["count"], apex=rng.uniform(0.15, 0.3), distance=rng.uniform(0.5, 1.0))


@_register("hop", lambda rng: {"side": str(rng.choice(["left", "right"])), "count": int(rng.choice([2, 3, 4]))})
def hop(p, body, rng):
    # hopping on the left foot means the right foot is held up
    return _jumps(body, rng, p["count"], apex=rng.uniform(0.06, 0.12), one_leg=1 if p["side"] == "left" else 0)


@_register("jumping_jacks", lambda rng: {"count": int(rng.choice([2, 3, 4]))})
def jumping_jacks(p, body, rng):
    return _jumps(body, rng, p["count"], apex=rng.uniform(0.06, 0.1), jacks=True)


# ----------------------------------------------------------------------------- in place, legs

def _reps(rng: np.random.Generator, count: int, seconds: float, lead: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """A 0 -> 1 -> 0 bump per repetition (T,) and the times; holds the neutral pose around them."""
    periods = [_jitter(rng, seconds) for _ in range(count)]
    start = _jitter(rng, lead)
    total = start + sum(periods) + _jitter(rng, 0.25)
    t = times(_frames(total))
    w = np.zeros_like(t)
    for period in periods:
        w += bump((t - start) / period)
        start += period
    return w, t


@_register("squat", lambda rng: {"count": int(rng.choice(COUNT_CHOICES[:3]))})
def squat(p, body, rng):
    w, t = _reps(rng, p["count"], 1.8)
    depth = rng.uniform(0.3, 0.42) * body.leg
    pose = neutral_pose(len(t))
    blend_pose(pose, {"bend": 0.45, "tilt": 0.45, "l_flex": 1.4, "r_flex": 1.4, "l_elbow": 0.1, "r_elbow": 0.1}, w)
    return _track(body, len(t), pose, pelvis_y=body.stand_height - depth * w,
                  root_xz=np.stack([np.zeros(len(t)), -0.12 * body.leg * w], -1))


@_register("lunge", lambda rng: {"side": str(rng.choice(["left", "right"]))})
def lunge(p, body, rng):
    front = 0 if p["side"] == "left" else 1
    step_out, hold = _jitter(rng, 0.45), _jitter(rng, 0.7)
    start = _jitter(rng, 0.2)
    back = start + step_out + hold
    end = back + step_out + _jitter(rng, 0.25)
    t = times(_frames(end))
    reach = rng.uniform(0.55, 0.7) * body.leg
    depth = _window(t, (start, start + step_out), (back, back + step_out))
    feet = home_feet(body, np.zeros((len(t), 2)), np.zeros(len(t)))
    u_out, u_back = (t - start) / step_out, (t - back) / step_out
    feet[:, front, 2] += reach * (smoothstep(u_out) - smoothstep(u_back))
    feet[:, front, 1] += 0.06 * (bump(u_out) + bump(u_back))
    contact = np.ones((len(t), 2), bool)
    contact[:, front] = ~(((u_out > 0) & (u_out < 1)) | ((u_back > 0) & (u_back < 1)))
    pitch = np.full((len(t), 2), FOOT_PITCH)
    pitch[:, 1 - front] += 0.6 * depth  # the back heel comes up, turning about the ball of the foot
    heel_up = body.foot * (np.cos(FOOT_PITCH) - np.cos(pitch[:, 1 - front]))
    feet[:, 1 - front, 2] += heel_up
    feet[:, 1 - front, 1] += body.foot * (np.sin(pitch[:, 1 - front]) - np.sin(FOOT_PITCH))
    pose = neutral_pose(len(t))
    blend_pose(pose, {"l_abd": 0.25, "r_abd": 0.25}, depth)
    return _track(body, len(t), pose, root_xz=np.stack([np.zeros(len(t)), 0.45 * reach * depth], -1),
                  pelvis_y=body.stand_height - 0.32 * body.leg * depth, feet=feet, foot_pitch=pitch, contact=contact)


def seat(body: Body) -> tuple[float, float]:
    """Where the pelvis rests when seated: (distance behind the standing position, height)."""
    return 0.3 * body.leg, body.ankle_height + 0.52 * body.leg


def _sitting(body: Body, rng: np.random.Generator, sit: bool) -> Track:
    duration, lead, tail = _jitter(rng, 1.6), _jitter(rng, 0.2), _jitter(rng, 0.3)
    t = times(_frames(lead + duration + tail))
    u = smoothstep((t - lead) / duration)
    if not sit:
        u = 1 - u
    behind, height = seat(body)
    lean = bump((t - lead) / duration)  # the trunk leans forward while the weight moves over the feet
    # Stand_up starts seated at its own origin: the feet (and the final standing root) are ahead.
    root_z = -behind * u if sit else behind * (1 - u)
    feet = home_feet(body, np.zeros((len(t), 2)), np.zeros(len(t)))
    if not sit:
        feet[..., 2] += behind
    pose = neutral_pose(len(t))
    blend_pose(pose, {"l_flex": 0.5, "r_flex": 0.5, "l_elbow": 0.7, "r_elbow": 0.7, "tilt": 0.15}, u)
    blend_pose(pose, {"bend": 0.55, "tilt": 0.45, "l_flex": 1.0, "r_flex": 1.0}, lean)
    return _track(body, len(t), pose, root_xz=np.stack([np.zeros(len(t)), root_z], -1),
                  pelvis_y=body.stand_height + (height - body.stand_height) * u, feet=feet)


@_register("sit_down", lambda rng: {}, ends="sit")
def sit_down(p, body, rng):
    return _sitting(body, rng, sit=True)


@_register("stand_up", lambda rng: {}, starts="sit")
def stand_up(p, body, rng):
    return _sitting(body, rng, sit=False)


@_register("kick", lambda rng: {"side": str(rng.choice(["left", "right"])), "height": str(rng.choice(["low", "high"])),
                                "count": int(rng.choice([1, 1, 2]))})
def kick(p, body, rng):
    f = 0 if p["side"] == "left" else 1
    starts, t_end = [], _jitter(rng, 0.25)
    for _ in range(p["count"]):
        starts.append(t_end)
        t_end += _jitter(rng, 0.3) + _jitter(rng, 0.18) + _jitter(rng, 0.45)
    t = times(_frames(t_end + _jitter(rng, 0.3)))
    stand = body.stand_height
    aim_height = body.ankle_height + (rng.uniform(0.25, 0.35) if p["height"] == "low" else rng.uniform(0.55, 0.75)) * body.leg
    aim_forward = np.sqrt((0.95 * body.leg) ** 2 - (stand - aim_height) ** 2)
    feet = home_feet(body, np.zeros((len(t), 2)), np.zeros(len(t)))
    pitch = np.full((len(t), 2), FOOT_PITCH)
    contact = np.ones((len(t), 2), bool)
    strike = np.zeros(len(t))
    windup_total = np.zeros(len(t))
    for s in starts:
        wind, hit, back = _jitter(rng, 0.3), _jitter(rng, 0.18), _jitter(rng, 0.45)
        # the foot draws back (rises to 1 by s + wind), then swings through while the strike takes over
        back_swing = bump((t - s) / (2 * wind)) * (t < s + wind)
        release = ((t >= s + wind) & (t < s + wind + hit)) * (1 - smoothstep((t - s - wind) / hit))
        windup = back_swing + release
        out = smoothstep((t - s - wind) / hit) * (1 - smoothstep((t - s - wind - hit) / back))
        strike += out
        windup_total += windup
        moving = (t > s) & (t < s + wind + hit + back)
        contact[moving, f] = False
    feet[:, f, 2] += -0.25 * body.leg * windup_total + aim_forward * strike
    feet[:, f, 1] += 0.2 * body.leg * windup_total + (aim_height - body.ankle_height) * strike
    pitch[:, f] += 0.3 * windup_total - (FOOT_PITCH + 0.3) * strike
    busy = np.clip(windup_total + strike, 0, 1)
    pose = neutral_pose(len(t))
    o = "r" if f == 0 else "l"
    blend_pose(pose, {"tilt": -0.25, "bend": 0.1, f"{o}_flex": 0.7, f"{o}_abd": 0.4}, strike)
    blend_pose(pose, {"l_abd": 0.5, "r_abd": 0.5}, busy * 0.5)
    # the pelvis shifts over the standing foot
    shift = -SIDE_SIGN[p["side"]] * 0.05 * _window(t, (0.0, starts[0]), (t[-1] - 0.35, t[-1]))
    return _track(body, len(t), pose, root_xz=np.stack([shift, np.zeros(len(t))], -1),
                  pelvis_y=np.full(len(t), stand) - 0.02 * busy, feet=feet, foot_pitch=pitch, contact=contact)


# ----------------------------------------------------------------------------- upper body

def _gesture(body: Body, rng: np.random.Generator, seconds: float, target: dict[str, float], lead: float = 0.2,
             ease: float = 0.4) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A pose held for `seconds` between ease-in and ease-out; returns (pose, weight, times)."""
    start, ease_in, hold, ease_out = _jitter(rng, lead), _jitter(rng, ease), _jitter(rng, seconds), _jitter(rng, ease)
    t = times(_frames(start + ease_in + hold + ease_out + _jitter(rng, 0.2)))
    w = _window(t, (start, start + ease_in), (start + ease_in + hold, start + ease_in + hold + ease_out))
    pose = neutral_pose(len(t))
    blend_pose(pose, target, w)
    return pose, w, t


def _hold_phase(t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Seconds since the gesture reached full weight (0 before)."""
    full = np.flatnonzero(w > 0.999)
    return np.clip(t - (t[full[0]] if len(full) else t[-1]), 0, None)


@_register("punch", lambda rng: {"side": str(rng.choice(["left", "right", "both"])), "count": int(rng.choice(COUNT_CHOICES))})
def punch(p, body, rng):
    jab = _jitter(rng, 0.42)
    guard = {"l_flex": 0.7, "r_flex": 0.7, "l_elbow": 2.1, "r_elbow": 2.1, "l_horiz": 0.35, "r_horiz": 0.35, "bend": 0.1}
    pose, w, t = _gesture(body, rng, p["count"] * jab + 0.2, guard)
    since = _hold_phase(t, w) - 0.1
    for k in range(p["count"]):
        side = {"left": "l", "right": "r", "both": "lr"[k % 2]}[p["side"]]
        hit = bump((since - k * jab) / jab)
        blend_pose(pose, {f"{side}_flex": 1.5, f"{side}_elbow": 0.05, f"{side}_horiz": 0.25}, hit)
        pose["twist"] += (-0.35 if side == "l" else 0.35) * hit
    return _track(body, len(t), pose)


@_register("wave", lambda rng: {"side": str(rng.choice(["left", "right", "right", "both"])), "count": int(rng.choice([2, 3, 4]))})
def wave(p, body, rng):
    freq = rng.uniform(1.4, 2.2)
    keys = _side_keys(p["side"])
    target = {}
    for s in keys:
        target.update({f"{s}_abd": rng.uniform(2.2, 2.6), f"{s}_flex": 0.3, f"{s}_elbow": 0.0, f"{s}_fore": 0.4})
    pose, w, t = _gesture(body, rng, p["count"] / freq, target)
    swing = 0.55 * np.sin(2 * np.pi * freq * _hold_phase(t, w)) * w
    for s in keys:
        pose[f"{s}_fore"] += swing
    return _track(body, len(t), pose)


@_register("raise_arms", lambda rng: {"side": str(rng.choice(["left", "right", "both", "both"])),
                                      "height": str(rng.choice(["overhead", "shoulder"]))})
def raise_arms(p, body, rng):
    target = {}
    for s in _side_keys(p["side"]):
        if p["height"] == "overhead":
            target.update({f"{s}_flex": rng.uniform(2.7, 3.0), f"{s}_elbow": 0.05, f"{s}_abd": 0.1})
        else:
            target.update({f"{s}_abd": rng.uniform(1.45, 1.65), f"{s}_elbow": 0.0})
    pose, _, t = _gesture(body, rng, rng.uniform(0.6, 1.4), target, ease=0.6)
    return _track(body, len(t), pose)


@_register("clap", lambda rng: {"count": int(rng.choice([2, 3, 4, 5]))})
def clap(p, body, rng):
    freq = rng.uniform(2.0, 2.8)
    target = {"l_flex": 1.1, "r_flex": 1.1, "l_elbow": 0.9, "r_elbow": 0.9, "l_horiz": 0.15, "r_horiz": 0.15}
    pose, w, t = _gesture(body, rng, p["count"] / freq, target)
    together = 0.3 * (1 - np.cos(2 * np.pi * freq * _hold_phase(t, w))) * w
    pose["l_horiz"] += together
    pose["r_horiz"] += together
    return _track(body, len(t), pose)


@_register("arm_circles", lambda rng: {"side": str(rng.choice(["left", "right", "both", "both"])),
                                       "count": int(rng.choice([2, 3, 4]))})
def arm_circles(p, body, rng):
    freq = rng.uniform(0.9, 1.4)
    keys = _side_keys(p["side"])
    target = {f"{s}_abd": 1.5 for s in keys} | {f"{s}_elbow": 0.0 for s in keys}
    pose, w, t = _gesture(body, rng, p["count"] / freq, target)
    angle = 2 * np.pi * freq * _hold_phase(t, w)
    for s in keys:
        pose[f"{s}_flex"] += 0.45 * np.sin(angle) * w
        pose[f"{s}_abd"] += 0.45 * (np.cos(angle) - 1) * w
    return _track(body, len(t), pose)


@_register("pick_up", lambda rng: {"side": str(rng.choice(["left", "right"]))})
def pick_up(p, body, rng):
    s = "l" if p["side"] == "left" else "r"
    down, hold, up = _jitter(rng, 0.8), _jitter(rng, 0.4), _jitter(rng, 0.8)
    lead = _jitter(rng, 0.2)
    t = times(_frames(lead + down + hold + up + _jitter(rng, 0.6)))
    w = _window(t, (lead, lead + down), (lead + down + hold, lead + down + hold + up))
    carry = smoothstep((t - lead - down - hold) / up)
    depth = rng.uniform(0.28, 0.34) * body.leg
    pose = neutral_pose(len(t))
    blend_pose(pose, {f"{s}_flex": 0.55, f"{s}_elbow": 1.5}, carry * (1 - smoothstep((t - t[-1] + 0.5) / 0.5)))
    blend_pose(pose, {"bend": 0.75, "tilt": 0.45, f"{s}_flex": 1.05, f"{s}_elbow": 0.05, "nod": 0.3}, w)
    return _track(body, len(t), pose, pelvis_y=body.stand_height - depth * w,
                  root_xz=np.stack([np.zeros(len(t)), -0.1 * body.leg * w], -1))


@_register("bow", lambda rng: {})
def bow(p, body, rng):
    pose, w, t = _gesture(body, rng, rng.uniform(0.4, 1.0), {"bend": rng.uniform(0.6, 0.9), "tilt": 0.3, "nod": 0.3},
                          ease=0.6)
    return _track(body, len(t), pose, root_xz=np.stack([np.zeros(len(t)), -0.04 * w], -1))


@_register("throw", lambda rng: {"side": str(rng.choice(["left", "right", "right"]))})
def throw(p, body, rng):
    s = "l" if p["side"] == "left" else "r"
    sign = 1.0 if s == "l" else -1.0
    windup, release, recover = _jitter(rng, 0.6), _jitter(rng, 0.25), _jitter(rng, 0.7)
    lead = _jitter(rng, 0.2)
    t = times(_frames(lead + windup + release + recover + 0.2))
    back = _window(t, (lead, lead + windup), (lead + windup, lead + windup + release))
    thrown = lead + windup + release
    through = _window(t, (lead + windup, thrown), (thrown, thrown + recover))
    pose = neutral_pose(len(t))
    blend_pose(pose, {f"{s}_flex": -0.2, f"{s}_abd": 1.6, f"{s}_elbow": 1.8, "twist": 0.5 * sign, "lean": -0.1 * sign}, back)
    blend_pose(pose, {f"{s}_flex": 1.3, f"{s}_abd": 0.5, f"{s}_elbow": 0.3, f"{s}_horiz": 0.4, "twist": -0.45 * sign,
                      "bend": 0.3}, through)
    return _track(body, len(t), pose)


@_register("idle", lambda rng: {"seconds": round(float(rng.uniform(1.0, 2.5)), 2)})
def idle(p, body, rng):
    t = times(_frames(_jitter(rng, p["seconds"])))
    sway = np.sin(2 * np.pi * rng.uniform(0.25, 0.4) * t + rng.uniform(0, 2 * np.pi))
    fade = _window(t, (0.0, 0.4), (t[-1] - 0.4, t[-1]))
    pose = neutral_pose(len(t))
    pose["lean"] += 0.03 * sway * fade
    pose["look"] += 0.2 * np.sin(2 * np.pi * 0.2 * t) * fade
    return _track(body, len(t), pose, root_xz=np.stack([0.02 * sway * fade, np.zeros(len(t))], -1))


# ----------------------------------------------------------------------------- whole-body moves
# The "extended" group: moves that leave the feet (cartwheel, flips, rolls, crawling, getting up
# from the floor) and dancing. Demo generator 2 draws them, generator 1 (the "core" group only)
# does not (demo.corpus.GENERATORS).
#
# These moves are scripted as keyframes of the whole body: pelvis position and rotation (roll about
# the forward axis, pitch about the left one), the upper-body angles of demo.pose and the legs by
# angles (LEG_ANGLES per side: `hip` flexion forwards, `spread` sideways, `knee` bend, `point` the
# foot pointed away from the shin). `legs` blends the feet from the neutral stance (0: planted, IK
# as everywhere else) to the legs' angles (1), and `ground` (0..1) drops the body until its lowest
# joint touches the floor, so lying, kneeling and rolling bodies rest on it whatever their size.

LEG_ANGLES = ("hip", "spread", "knee", "point")
_THICKNESS = 0.06   # m: a grounded body's lowest joint centre rests this far above the floor

def _keys(t: np.ndarray, start: dict[str, float], keys: list[tuple[float, dict[str, float]]]) -> dict[str, np.ndarray]:
    """Every channel over time. `start` gives each one's value at t = 0; keys (time, values) come
    in time order. A channel holds until the key before the first one that names it, then eases
    (minimum jerk) from each key that names it to the next one that does, and holds after its last."""
    channels = {}
    for name, first in start.items():
        points, previous = [(0.0, float(first))], 0.0
        for time, key in keys:
            if name in key:
                if len(points) == 1 and previous > 0:
                    points.append((previous, float(first)))
                points.append((time, float(key[name])))
            previous = time
        value = np.full(len(t), float(first))
        for (t0, v0), (t1, v1) in zip(points, points[1:]):
            value = np.where(t >= t0, v0 + (v1 - v0) * smoothstep((t - t0) / max(t1 - t0, 1e-6)), value)
        channels[name] = value
    return channels


def _whole_body_start(body: Body) -> dict[str, float]:
    """Every channel at the neutral stance."""
    start = {"x": 0.0, "y": body.stand_height, "z": 0.0, "roll": 0.0, "pitch": 0.0, "legs": 0.0, "ground": 0.0}
    start.update({name: float(value[0]) for name, value in neutral_pose(1).items()})
    start.update({f"{s}_{a}": 0.0 for s in "lr" for a in LEG_ANGLES})
    return start


def _whole_body(body: Body, duration: float, keys: list[tuple[float, dict[str, float]]],
                extra: dict[str, np.ndarray] | None = None, start: dict[str, float] | None = None) -> Track:
    """A Track from keyframes (see above); `extra` adds per-frame offsets to channels (cycles)."""
    t = times(_frames(duration))
    ch = _keys(t, {**_whole_body_start(body), **(start or {})}, keys)
    for name, offset in (extra or {}).items():
        ch[name] = ch[name] + offset
    n = len(t)
    local = pose_to_local({name: ch[name] for name in neutral_pose(1)})
    pelvis = chain(axis_quat(2, ch["roll"]), axis_quat(0, ch["pitch"]), local[:, 0])
    local[:, 0] = pelvis
    legs = np.empty((n, 2, 3, 4))
    for side, s in enumerate("lr"):
        thigh = chain(axis_quat(2, ch[f"{s}_spread"]), axis_quat(0, -ch[f"{s}_hip"]))
        shank, foot = axis_quat(0, ch[f"{s}_knee"]), axis_quat(0, FOOT_PITCH + ch[f"{s}_point"])
        if s == "r":
            thigh, shank, foot = mirror_quat(thigh), mirror_quat(shank), mirror_quat(foot)
        legs[:, side] = np.stack([thigh, shank, foot], 1)
    root = np.stack([ch["x"], ch["y"], ch["z"]], -1)
    w = ch["legs"]
    # planted feet: where the body stood before its feet left the floor, or where it stands after
    airborne = np.flatnonzero(w > 0)
    middle = (airborne[0] + airborne[-1]) / 2 if len(airborne) else n
    anchor = np.where((np.arange(n) <= middle)[:, None], root[0, [0, 2]], root[-1, [0, 2]])
    stance = home_feet(body, anchor, np.zeros(n))

    feet, yaw, pitch, pole = leg_targets(body, root, pelvis, legs)
    stand_pole = np.array([0.0, 0.3, 1.0])
    track = Track(root_xz=root[:, [0, 2]], heading=np.zeros(n), pelvis_y=root[:, 1], local=local,
                  feet=stance + w[:, None, None] * (feet - stance), foot_yaw=w[:, None] * yaw,
                  foot_pitch=FOOT_PITCH + w[:, None] * (pitch - FOOT_PITCH), contact=np.repeat((w == 0)[:, None], 2, 1),
                  knee_pole=np.where((w > 0)[:, None, None], stand_pole + w[:, None, None] * (pole - stand_pole), np.nan))
    # Grounded frames rest on their lowest joint; no frame with the feet off their stance goes
    # under the floor. The body moves rigidly (its feet targets too), so one pass suffices.
    lowest = assemble(track, body)[..., 1].min(1)
    g = ch["ground"]
    shift = (g * (_THICKNESS - lowest) + np.maximum(0.0, -(1 - g) * lowest)) * (w > 0)
    track.pelvis_y = track.pelvis_y + shift
    track.feet[..., 1] += shift[:, None]
    return track


_ARMS_DOWN = {"l_flex": 0.0, "r_flex": 0.0, "l_abd": NEUTRAL["abd"], "r_abd": NEUTRAL["abd"],
              "l_elbow": NEUTRAL["elbow"], "r_elbow": NEUTRAL["elbow"]}


def _legs(hip: float, knee: float, spread: float = 0.0, point: float = 0.0) -> dict[str, float]:
    return {"l_hip": hip, "r_hip": hip, "l_knee": knee, "r_knee": knee, "l_spread": spread, "r_spread": spread,
            "l_point": point, "r_point": point}


@_register("cartwheel", lambda rng: {"side": str(rng.choice(["left", "right"])), "count": int(rng.choice([1, 1, 2]))},
           group="extended")
def cartwheel(p, body, rng):
    sign = SIDE_SIGN[p["side"]]
    lead, reach, wheel, settle = _jitter(rng, 0.3), _jitter(rng, 0.4), _jitter(rng, 1.4), _jitter(rng, 0.5)
    t1, t2 = lead + reach, lead + reach + wheel * p["count"]
    arms_up = {"l_abd": np.pi - 0.8, "r_abd": np.pi - 0.8, "l_elbow": 0.1, "r_elbow": 0.1}
    spread = {"legs": 1.0, "ground": 1.0, **_legs(0.0, 0.15, 0.75)}
    stride = rng.uniform(1.9, 2.3) * body.leg
    keys = [(lead, {}), (t1, {**arms_up, "roll": 0.0, "x": 0.0, "legs": 0.0, "ground": 0.0, **_legs(0.0, 0.15)}),
            (t1 + 0.25, spread)]
    # each wheel eases in and out on its own: upright between wheels
    keys += [(t1 + k * wheel, {**arms_up, "roll": -sign * 2 * np.pi * k, "x": sign * stride * k})
             for k in range(1, p["count"])]
    keys += [(t2 - 0.25, spread),
             (t2, {**arms_up, "roll": -sign * 2 * np.pi * p["count"], "x": sign * stride * p["count"],
                   "legs": 0.0, "ground": 0.0, **_legs(0.0, 0.15)}),
             (t2 + settle, _ARMS_DOWN)]
    return _whole_body(body, t2 + settle + _jitter(rng, 0.2), keys)


@_register("backflip", lambda rng: {}, group="extended")
def backflip(p, body, rng):
    lead, crouch, flight, land, recover = (_jitter(rng, s) for s in (0.25, 0.55, 0.85, 0.3, 0.5))
    t1, t2 = lead + crouch, lead + crouch + flight
    low = body.stand_height - 0.25 * body.leg
    keys = [(lead, {}),
            (lead + 0.35 * crouch, {"l_flex": -0.4, "r_flex": -0.4}),
            (lead + 0.7 * crouch, {"y": low, "bend": 0.3}),
            (t1, {"y": body.stand_height, "pitch": 0.0, "z": 0.0, "legs": 0.0, "l_flex": np.pi - 0.6,
                  "r_flex": np.pi - 0.6, "bend": 0.0, **_legs(0.3, 0.5)}),
            (t1 + 0.12, {"legs": 1.0}),
            (t1 + 0.3 * flight, {"l_flex": 1.3, "r_flex": 1.3, "l_elbow": 1.4, "r_elbow": 1.4, "bend": 0.5,
                                 **_legs(2.0, 2.3)}),
            (t1 + 0.5 * flight, {"y": body.stand_height + rng.uniform(0.3, 0.45)}),
            (t2 - 0.15, {"legs": 1.0, **_legs(0.5, 0.6)}),
            (t2, {"y": body.stand_height, "pitch": -2 * np.pi, "z": -rng.uniform(0.3, 0.8) * body.leg, "legs": 0.0,
                  "l_flex": 0.9, "r_flex": 0.9, "l_elbow": 0.3, "r_elbow": 0.3, "bend": 0.2}),
            (t2 + 0.5 * land, {"y": low}),
            (t2 + land + recover, {"y": body.stand_height, "bend": 0.0, **_ARMS_DOWN})]
    return _whole_body(body, t2 + land + recover + _jitter(rng, 0.2), keys)


@_register("roll", lambda rng: {"count": int(rng.choice([1, 1, 2]))}, group="extended")
def forward_roll(p, body, rng):
    lead, down, roll, up = _jitter(rng, 0.3), _jitter(rng, 0.7), _jitter(rng, 1.0) * p["count"], _jitter(rng, 0.8)
    t1, t2 = lead + down, lead + down + roll
    crouch = {"y": body.stand_height - 0.45 * body.leg, "bend": 0.8, "nod": 0.5, "l_flex": 1.2, "r_flex": 1.2,
              "l_elbow": 0.6, "r_elbow": 0.6}
    tuck = {"legs": 1.0, "ground": 1.0, "bend": 1.0, "nod": 0.7, **_legs(2.1, 2.4, point=0.5)}
    keys = [(lead, {}), (t1, {**crouch, "pitch": 0.3, "z": 0.0, "legs": 0.0, "ground": 0.0, **_legs(1.2, 2.0)}),
            (t1 + 0.2, tuck), (t2 - 0.2, tuck),
            (t2, {**crouch, "pitch": 2 * np.pi * p["count"], "z": rng.uniform(1.0, 1.3) * body.leg * p["count"],
                  "legs": 0.0, "ground": 0.0, **_legs(1.2, 2.0)}),
            (t2 + up, {"y": body.stand_height, "bend": 0.0, "nod": 0.0, **_ARMS_DOWN})]
    return _whole_body(body, t2 + up + _jitter(rng, 0.2), keys)


_POINTED = np.pi / 2 - FOOT_PITCH   # the foot in line with the shin (lying face down, kneeling)


def _all_fours() -> dict[str, float]:
    """Hands and knees, looking ahead (with `ground`: resting on the floor). The shoulders ride a
    little above the hips and the elbows bend, so that hands and knees both reach the floor."""
    level = np.pi / 2 - 0.2
    return {"pitch": level, "l_flex": level, "r_flex": level, "l_elbow": 0.75, "r_elbow": 0.75, "l_abd": 0.1,
            "r_abd": 0.1, "nod": -0.9, "bend": 0.0, **_legs(level, np.pi / 2, point=_POINTED)}


@_register("crawl", lambda rng: {"steps": int(rng.integers(4, 9))}, group="extended")
def crawl(p, body, rng):
    lead, down, period, up = _jitter(rng, 0.3), _jitter(rng, 1.1), _jitter(rng, 0.6), _jitter(rng, 1.1)
    t1, t2 = lead + down, lead + down + p["steps"] * period
    kneel = {"pitch": 0.15, "y": 0.0, "legs": 1.0, "ground": 1.0, "l_flex": 0.5, "r_flex": 0.5,
             **_legs(0.15, np.pi / 2, point=_POINTED)}
    fours = {**_all_fours(), "legs": 1.0, "ground": 1.0}
    distance = p["steps"] * rng.uniform(0.22, 0.3) * body.leg
    keys = [(lead, {"legs": 0.0, "ground": 0.0}), (lead + 0.5 * down, kneel), (t1, {**fours, "z": 0.0}),
            (t2, {**fours, "z": distance}), (t2 + 0.5 * up, {**kneel, "z": distance}),
            (t2 + up, {"y": body.stand_height, "pitch": 0.0, "legs": 0.0, "ground": 0.0, "nod": 0.0, **_ARMS_DOWN,
                       **_legs(0.0, 0.1)})]
    duration = t2 + up + _jitter(rng, 0.2)
    t = times(_frames(duration))
    # each knee and the opposite hand step forward together, one side per `period`
    cycle = np.sin(np.pi * (t - t1) / period) * _window(t, (t1, t1 + 0.5 * period), (t2 - 0.5 * period, t2))
    extra = {"l_hip": 0.3 * cycle, "r_hip": -0.3 * cycle, "r_flex": 0.3 * cycle, "l_flex": -0.3 * cycle,
             "twist": 0.1 * cycle}
    return _whole_body(body, duration, keys, extra)


@_register("get_up", lambda rng: {"face": str(rng.choice(["up", "down"]))}, starts="floor", group="extended")
def get_up(p, body, rng):
    """Starts lying on the floor (on the back, face up, or on the front), ends standing."""
    lie, rise, crouch, stand = _jitter(rng, 0.5), _jitter(rng, 0.9), _jitter(rng, 0.7), _jitter(rng, 0.8)
    t1, t2, t3 = lie + rise, lie + rise + crouch, lie + rise + crouch + stand
    squat = {"pitch": 0.5, "legs": 1.0, "ground": 1.0, "l_flex": 1.0, "r_flex": 1.0, "l_elbow": 0.3,
             "r_elbow": 0.3, "nod": 0.0, "bend": 0.3, **_legs(1.8, 2.2)}
    if p["face"] == "down":
        start = {"pitch": np.pi / 2, "l_abd": 0.3, "r_abd": 0.3, "nod": -0.3, **_legs(0.0, 0.1, point=_POINTED)}
        middle = {**_all_fours(), "legs": 1.0, "ground": 1.0}
    else:
        start = {"pitch": -np.pi / 2, **_legs(0.0, 0.1)}
        middle = {"pitch": -0.35, "l_flex": -0.6, "r_flex": -0.6, "l_elbow": 0.2, "r_elbow": 0.2, "nod": 0.3,
                  "legs": 1.0, "ground": 1.0, **_legs(1.8, 1.8)}   # sitting, knees up
    keys = [(lie, {}), (t1, middle), (t2, {**squat, "z": 0.0}),
            (t3, {"y": body.stand_height, "pitch": 0.0, "legs": 0.0, "ground": 0.0, "bend": 0.0,
                  "z": 0.25 * body.leg, **_ARMS_DOWN, **_legs(0.0, 0.1)})]
    return _whole_body(body, t3 + _jitter(rng, 0.2), keys, start={**_whole_body_start(body), "y": 0.0,
                                                                    "legs": 1.0, "ground": 1.0, **start})


@_register("dance", lambda rng: {"arms": str(rng.choice(["up", "swing"])), "steps": int(rng.integers(6, 13))},
           group="extended")
def dance(p, body, rng):
    cadence = rng.uniform(1.8, 2.3)
    track = _locomotion(body, rng, direction=(0.0, 0.0), speed=0.0, cadence=cadence, duty=0.6, num_steps=p["steps"],
                        step_height=rng.uniform(0.05, 0.1), arm_swing=0.0)
    t = times(len(track))
    start = _jitter(rng, 0.25)
    groove = _window(t, (start, start + 0.5), (t[-1] - 0.6, t[-1] - 0.1))
    beat = np.sin(np.pi * cadence * (t - start))   # one sway to each side per two steps
    pose = neutral_pose(len(t))
    if p["arms"] == "up":
        blend_pose(pose, {"l_abd": 2.4 + 0.4 * beat, "r_abd": 2.4 - 0.4 * beat, "l_elbow": 0.6, "r_elbow": 0.6}, groove)
    else:
        blend_pose(pose, {"l_flex": 0.8 + 0.7 * beat, "r_flex": 0.8 - 0.7 * beat, "l_elbow": 1.3, "r_elbow": 1.3,
                          "l_abd": 0.4, "r_abd": 0.4}, groove)
    pose["lean"] += 0.12 * beat * groove
    pose["twist"] += 0.25 * np.sin(2 * np.pi * cadence * (t - start)) * groove
    pose["tilt"] += 0.08 * groove
    track.local = pose_to_local(pose)
    track.root_xz = track.root_xz + np.stack([0.05 * beat * groove, np.zeros(len(t))], -1)
    track.pelvis_y = track.pelvis_y - 0.03 * body.leg * groove * (1 + np.cos(2 * np.pi * cadence * (t - start))) / 2
    return track
