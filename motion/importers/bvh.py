"""Strict BVH (Biovision Hierarchy) reader: hierarchy, channels, frames, forward kinematics.

Rotation channels compose in the order written (`Zrotation Yrotation Xrotation` gives
R = Rz @ Ry @ Rx, i.e. intrinsic Z-Y-X); position channels replace the joint's OFFSET on their
axis, as LAFAN1 and most exporters intend for the root. Errors name the file and line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from .common import ImportedMotion, MotionImportError
from .mapping import MappingSpec, match_names, resolve_mapping

CHANNEL_NAMES = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")
UNIT_TO_METRES = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254}


@dataclass
class BvhJoint:
    name: str
    parent: int  # -1 for the root
    offset: np.ndarray
    channels: list[str]
    children: list[int] = field(default_factory=list)


@dataclass
class BvhClip:
    joints: list[BvhJoint]  # End Sites are not included
    frame_time: float
    motion: np.ndarray  # (T, total channels), as written

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.joints]


class _Tokens:
    """Whitespace tokens with their line numbers, for the hierarchy section."""

    def __init__(self, lines: list[str], path: Path):
        self.path = path
        self.items = [(tok, i + 1) for i, line in enumerate(lines) for tok in line.split()]
        self.pos = 0

    def line(self) -> int:
        return self.items[min(self.pos, len(self.items) - 1)][1] if self.items else 0

    def fail(self, msg: str) -> MotionImportError:
        return MotionImportError(f"{self.path}:{self.line()}: {msg}; the BVH file is malformed or truncated")

    def next(self, what: str) -> str:
        if self.pos >= len(self.items):
            raise MotionImportError(f"{self.path}: file ends while expecting {what}; the BVH file is truncated")
        tok = self.items[self.pos][0]
        self.pos += 1
        return tok

    def expect(self, word: str) -> None:
        tok = self.next(repr(word))
        if tok != word:
            self.pos -= 1
            raise self.fail(f"expected {word!r}, found {tok!r}")

    def number(self, what: str) -> float:
        tok = self.next(what)
        try:
            return float(tok)
        except ValueError:
            self.pos -= 1
            raise self.fail(f"{what} {tok!r} is not a number") from None


def _parse_joint(tok: _Tokens, joints: list[BvhJoint], parent: int) -> None:
    name = tok.next("a joint name")
    tok.expect("{")
    tok.expect("OFFSET")
    offset = np.array([tok.number("OFFSET value") for _ in range(3)])
    tok.expect("CHANNELS")
    count = tok.number("channel count")
    if not count.is_integer() or not 0 <= count <= 6:
        raise tok.fail(f"joint {name!r} declares {count:g} channels; expected 0 to 6 (usually 3 or 6)")
    channels = []
    for _ in range(int(count)):
        ch = tok.next("a channel name")
        if ch not in CHANNEL_NAMES:
            tok.pos -= 1
            raise tok.fail(f"unknown channel {ch!r} in joint {name!r} (valid: {', '.join(CHANNEL_NAMES)})")
        channels.append(ch)
    if len(set(channels)) != len(channels):
        raise tok.fail(f"joint {name!r} repeats a channel: {channels}")
    index = len(joints)
    joints.append(BvhJoint(name, parent, offset, channels))
    if parent >= 0:
        joints[parent].children.append(index)
    while True:
        word = tok.next("JOINT, End Site or '}'")
        if word == "}":
            return
        if word == "JOINT":
            _parse_joint(tok, joints, index)
        elif word == "End":
            tok.expect("Site")
            tok.expect("{")
            tok.expect("OFFSET")
            for _ in range(3):
                tok.number("End Site OFFSET value")
            tok.expect("}")
        else:
            tok.pos -= 1
            raise tok.fail(f"expected JOINT, End Site or '}}' in joint {name!r}, found {word!r}")


def parse_bvh(path: str | Path) -> BvhClip:
    """Parse a BVH file into its hierarchy and the raw channel values per frame."""
    path = Path(path)
    try:
        lines = path.read_text(errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise MotionImportError(f"{path}: cannot read BVH file ({err})") from None
    try:
        motion_line = next(i for i, line in enumerate(lines) if line.strip() == "MOTION")
    except StopIteration:
        raise MotionImportError(f"{path}: no MOTION section; the BVH file is truncated or not a BVH file") from None

    tok = _Tokens(lines[:motion_line], path)
    tok.expect("HIERARCHY")
    tok.expect("ROOT")
    joints: list[BvhJoint] = []
    _parse_joint(tok, joints, -1)
    if tok.pos != len(tok.items):
        raise tok.fail(f"unexpected {tok.items[tok.pos][0]!r} after the root joint (only one ROOT is supported)")
    names = [j.name for j in joints]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MotionImportError(f"{path}: duplicate joint names {dup}; joint names must be unique")

    def header(offset: int, key: str) -> str:
        i = motion_line + offset
        if i >= len(lines) or not lines[i].strip().startswith(key):
            raise MotionImportError(f"{path}:{i + 1}: expected '{key} ...' after MOTION; the BVH file is malformed")
        return lines[i].strip()[len(key):].strip()

    try:
        n_frames = int(header(1, "Frames:"))
        frame_time = float(header(2, "Frame Time:"))
    except ValueError:
        raise MotionImportError(f"{path}:{motion_line + 2}: Frames / Frame Time are not numbers") from None
    if frame_time <= 0:
        raise MotionImportError(f"{path}:{motion_line + 3}: Frame Time {frame_time} must be positive")

    width = sum(len(j.channels) for j in joints)
    motion = np.empty((n_frames, width))
    row = 0
    for i in range(motion_line + 3, len(lines)):
        text = lines[i].strip()
        if not text:
            continue
        if row >= n_frames:
            raise MotionImportError(f"{path}:{i + 1}: more frame lines than the {n_frames} declared in 'Frames:'")
        values = text.split()
        if len(values) != width:
            raise MotionImportError(
                f"{path}:{i + 1}: frame {row} has {len(values)} values, the hierarchy declares {width} channels")
        try:
            motion[row] = [float(v) for v in values]
        except ValueError:
            bad = next(v for v in values if not _is_float(v))
            raise MotionImportError(f"{path}:{i + 1}: non-numeric value {bad!r} in frame {row}") from None
        row += 1
    if row < n_frames:
        raise MotionImportError(
            f"{path}:{len(lines)}: file ends after {row} of the {n_frames} frames declared; the BVH file is truncated")
    return BvhClip(joints, frame_time, motion)


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def forward_kinematics(clip: BvhClip) -> np.ndarray:
    """Global joint positions (T, J, 3) in file units, End Sites excluded."""
    n_frames = clip.motion.shape[0]
    positions = np.zeros((n_frames, len(clip.joints), 3))
    rotations = np.zeros((n_frames, len(clip.joints), 3, 3))
    col = 0
    for j, joint in enumerate(clip.joints):
        values = clip.motion[:, col:col + len(joint.channels)]
        col += len(joint.channels)
        local_pos = np.broadcast_to(joint.offset, (n_frames, 3)).copy()
        axes, angles = "", []
        for k, ch in enumerate(joint.channels):
            axis = "XYZ".index(ch[0])
            if ch.endswith("position"):
                local_pos[:, axis] = values[:, k]
            else:
                axes += ch[0]
                angles.append(values[:, k])
        if axes:  # uppercase = intrinsic: R = R_first @ R_second @ R_third
            local_rot = Rotation.from_euler(axes, np.stack(angles, axis=1), degrees=True).as_matrix()
        else:
            local_rot = np.broadcast_to(np.eye(3), (n_frames, 3, 3))
        if joint.parent < 0:
            positions[:, j] = local_pos
            rotations[:, j] = local_rot
        else:
            parent_rot = rotations[:, joint.parent]
            positions[:, j] = positions[:, joint.parent] + np.einsum("tij,tj->ti", parent_rot, local_pos)
            rotations[:, j] = parent_rot @ local_rot
    return positions


def guess_unit(positions: np.ndarray, mapping: dict, names: list[str]) -> str:
    """Pick the length unit from the leg + spine length, ~1.2-1.6 m for people (cm wins ties with inch)."""
    idx = {canon: names.index(src.name) for canon, src in mapping.items()}
    chain = [("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("pelvis", "spine1"),
             ("spine1", "spine2"), ("spine2", "spine3"), ("spine3", "neck"), ("neck", "head")]
    frame = positions[0]
    size = sum(np.linalg.norm(frame[idx[a]] - frame[idx[b]]) for a, b in chain)
    for unit in ("cm", "m", "inch", "mm"):
        if 0.6 <= size * UNIT_TO_METRES[unit] <= 2.5:
            return unit
    raise MotionImportError(f"cannot infer the length unit (leg+spine length is {size:.3g} file units); pass units=")


def load_bvh(path: str | Path, mapping: MappingSpec = "lafan1", units: str = "auto") -> ImportedMotion:
    """Read a Y-up BVH file and return the 22 canonical joints in metres at the file's frame rate."""
    path = Path(path)
    if units != "auto" and units not in UNIT_TO_METRES:
        raise MotionImportError(f"{path}: units={units!r}; use auto, {', '.join(UNIT_TO_METRES)}")
    clip = parse_bvh(path)
    bound = match_names(resolve_mapping(mapping), clip.names, path)
    for canon, src in bound.items():
        if src.at != "start":
            raise MotionImportError(
                f"{path}: mapping of {canon} asks for at={src.at!r}; BVH joints are points, use 'start'")
    positions = forward_kinematics(clip)
    if units == "auto":
        try:
            units = guess_unit(positions, bound, clip.names)
        except MotionImportError as err:
            raise MotionImportError(f"{path}: {err}") from None
    order = [clip.names.index(bound[c].name) for c in bound]
    joints = positions[:, order] * UNIT_TO_METRES[units]
    fps = 1.0 / clip.frame_time
    if abs(fps - round(fps)) < 0.01:  # "Frame Time: 0.033333" means 30 fps, not 30.0003
        fps = float(round(fps))
    return ImportedMotion(joints, fps, str(path), {c: s.name for c, s in bound.items()})
