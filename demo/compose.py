"""Chain primitives into one motion: carry the root across events and blend the joints between them.

Each event's Track is turned and moved so that it starts where the previous one ended (root
position and heading carried exactly, so feet planted at the boundary stay put). The upper-body
rotations and the pelvis height are then blended by inertialization: the difference between
the previous event's last frame and this event's first frame is added to this event and faded
out with a minimum-jerk ease over `blend` seconds (0.3-0.5 s by default), i.e. each joint slerps
from where it was to where the new event takes it. The event's span (frames) is recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from demo.body import FPS, Body, Track, assemble
from demo.gait import smoothstep
from demo.primitives import PRIMITIVES
from motion.rotations import qinv, qmul, qnormalize, slerp


@dataclass
class Event:
    """One action of a clip: primitive name, parameters, the seed of its timing noise, and its
    frames [start, end) in the clip (filled in by chain_events)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    start: int = 0
    end: int = 0

    def seconds(self, fps: float = FPS) -> tuple[float, float]:
        return self.start / fps, self.end / fps


class PostureError(ValueError):
    """The events cannot follow each other (e.g. standing up while standing)."""


def check_order(names: list[str]) -> None:
    """Raise PostureError unless each event starts in the posture the previous one ended in."""
    for before, after in zip(names, names[1:]):
        if PRIMITIVES[before].ends != PRIMITIVES[after].starts:
            raise PostureError(f"{after} cannot follow {before}: it starts {PRIMITIVES[after].starts}ing, "
                               f"{before} ends {PRIMITIVES[before].ends}ing")


def _fade_offset(track: Track, prev: Track, frames: int) -> None:
    """In place: start `track` at `prev`'s last pose and ease into its own motion over `frames`."""
    n = min(frames, len(track))
    weight = 1 - smoothstep(np.arange(n) / max(frames, 1))  # 1 at the boundary, 0 at the end
    offset = qmul(prev.local[-1], qinv(track.local[0]))  # per joint, (22, 4)
    identity = np.zeros_like(offset)
    identity[:, 0] = 1.0
    fade = slerp(np.broadcast_to(identity, (n,) + identity.shape), np.broadcast_to(offset, (n,) + offset.shape),
                 weight[:, None])
    track.local = track.local.copy()
    track.local[:n] = qnormalize(qmul(fade, track.local[:n]))
    track.pelvis_y = track.pelvis_y.copy()
    track.pelvis_y[:n] += weight * (prev.pelvis_y[-1] - track.pelvis_y[0])


def chain_events(events: list[Event], body: Body, blend: tuple[float, float] = (0.3, 0.5)) -> Track:
    """One Track for the events in order; fills each event's start/end frames.

    Each event draws its noise from its own seed, so the result depends only on the events and
    the body (planning and rendering may run in different processes)."""
    check_order([e.name for e in events])
    pieces: list[Track] = []
    frame = 0
    for event in events:
        rng = np.random.default_rng(event.seed)
        track = PRIMITIVES[event.name].make(event.params, body, rng)
        if pieces:
            prev = pieces[-1]
            track = track.transformed(float(prev.heading[-1]), prev.root_xz[-1])
            _fade_offset(track, prev, int(round(rng.uniform(*blend) * FPS)))
            track = _drop_first(track)  # the boundary frame is the previous event's last one
        event.start, event.end = frame, frame + len(track)
        frame = event.end
        pieces.append(track)
    return _concat(pieces)


def _drop_first(track: Track) -> Track:
    return Track(*(getattr(track, name)[1:] for name in Track.__dataclass_fields__))


def _concat(pieces: list[Track]) -> Track:
    return Track(*(np.concatenate([getattr(p, name) for p in pieces]) for name in Track.__dataclass_fields__))


def perform(events: list[Event], body: Body) -> np.ndarray:
    """World joint positions (T, 22, 3) of `body` performing `events` (their spans are filled in)."""
    return assemble(chain_events(events, body), body)
