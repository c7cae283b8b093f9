"""Acclaim ASF skeleton + AMC motion reader (the CMU mocap format), with forward kinematics.

Acclaim convention per bone: `axis` gives the bone's local frame C (Euler angles, rotation order
as written, e.g. XYZ = x first); the AMC dof values give M (rotations applied in the order the
`dof` line lists them); the bone's global rotation is G = G_parent @ C @ M @ C^-1 and its tip is
start + G @ (direction * length), with `direction` in the global rest frame. Lengths are in the
ASF's unit: value / `length` scale = inches (CMU writes `length 0.45`), converted to metres.
CMU skeletons are Y up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from .common import ImportedMotion, MotionImportError
from .mapping import MappingSpec, match_names, resolve_mapping

INCH = 0.0254
CMU_FPS = 120.0
ROT_DOFS = ("rx", "ry", "rz")
ALL_DOFS = ("tx", "ty", "tz", "rx", "ry", "rz", "l")


@dataclass
class AsfBone:
    name: str
    direction: np.ndarray = field(default_factory=lambda: np.zeros(3))
    length: float = 0.0
    axis: np.ndarray = field(default_factory=lambda: np.eye(3))  # C
    axis_spec: tuple[str, np.ndarray] | None = None  # (order, angles) as written, until units are known
    dof: list[str] = field(default_factory=list)
    parent: str | None = None


@dataclass
class AsfSkeleton:
    bones: dict[str, AsfBone]  # "root" included, parents before children after `order()`
    length_scale: float  # file length units per inch
    angle_unit: str  # "deg" | "rad"
    root_order: list[str]  # AMC channel order of the root, e.g. TX TY TZ RX RY RZ
    root_position: np.ndarray

    def order(self) -> list[str]:
        """Bone names, every parent before its children."""
        done, out = set(), []

        def visit(name: str) -> None:
            if name in done:
                return
            parent = self.bones[name].parent
            if parent is not None:
                visit(parent)
            done.add(name)
            out.append(name)

        for name in self.bones:
            visit(name)
        return out


def _euler(order: str, angles_deg: np.ndarray) -> np.ndarray:
    # lowercase = extrinsic, so "xyz" gives Rz @ Ry @ Rx (x applied first), the Acclaim reading
    return Rotation.from_euler(order.lower(), angles_deg, degrees=True).as_matrix()


def parse_asf(path: str | Path) -> AsfSkeleton:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise MotionImportError(f"{path}: cannot read ASF file ({err})") from None

    def fail(i: int, msg: str) -> MotionImportError:
        return MotionImportError(f"{path}:{i + 1}: {msg}; the ASF file is malformed")

    def floats(i: int, parts: list[str], n: int) -> np.ndarray:
        try:
            vals = [float(p) for p in parts[:n]]
        except ValueError:
            raise fail(i, f"non-numeric value in {' '.join(parts)!r}") from None
        if len(vals) != n:
            raise fail(i, f"expected {n} numbers, got {len(parts)}")
        return np.array(vals)

    bones = {"root": AsfBone("root")}
    scale, angle = 1.0, "deg"
    root_order = ["TX", "TY", "TZ", "RX", "RY", "RZ"]
    root_pos, root_orientation, root_axis_order = np.zeros(3), np.zeros(3), "XYZ"
    section, bone, seen_hierarchy = None, None, False
    for i, raw in enumerate(lines):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(":"):
            section = line.split()[0][1:]
            continue
        key, *rest = line.split()
        if section == "units":
            if key == "length":
                scale = float(floats(i, rest, 1)[0])
            elif key == "angle":
                angle = rest[0] if rest else ""
                if angle not in ("deg", "rad"):
                    raise fail(i, f"angle unit {angle!r}; expected deg or rad")
        elif section == "root":
            if key == "order":
                root_order = [r.upper() for r in rest]
            elif key == "axis":
                root_axis_order = rest[0] if rest else "XYZ"
            elif key == "position":
                root_pos = floats(i, rest, 3)
            elif key == "orientation":
                root_orientation = floats(i, rest, 3)
        elif section == "bonedata":
            if key == "begin":
                bone = AsfBone("")
            elif key == "end":
                if bone is None or not bone.name:
                    raise fail(i, "bone without a name")
                bones[bone.name] = bone
                bone = None
            elif bone is None:
                raise fail(i, f"{key!r} outside begin/end")
            elif key == "name":
                bone.name = rest[0]
            elif key == "direction":  # unit by definition; files round it to 6 digits
                bone.direction = floats(i, rest, 3)
                norm = np.linalg.norm(bone.direction)
                if norm == 0:
                    raise fail(i, f"bone {bone.name!r} has a zero direction")
                bone.direction = bone.direction / norm
            elif key == "length":
                bone.length = float(floats(i, rest, 1)[0])
            elif key == "axis":
                if len(rest) != 4:
                    raise fail(i, "axis needs three angles and an order such as XYZ")
                bone.axis_spec = (rest[3], floats(i, rest, 3))
            elif key == "dof":
                bad = [d for d in rest if d not in ALL_DOFS]
                if bad:
                    raise fail(i, f"unknown dof {bad}")
                bone.dof = rest
        elif section == "hierarchy":
            if key in ("begin", "end"):
                seen_hierarchy = True
                continue
            for child in rest:
                if child not in bones or key not in bones:
                    raise fail(i, f"hierarchy names unknown bone {child if child not in bones else key!r}")
                bones[child].parent = key
    if not seen_hierarchy:
        raise MotionImportError(f"{path}: no :hierarchy section; the ASF file is truncated")
    orphans = [b.name for b in bones.values() if b.name != "root" and b.parent is None]
    if orphans:
        raise MotionImportError(f"{path}: bones {orphans} are not in the :hierarchy; the ASF file is malformed")

    # `axis` angles are in the file's angle unit, which may be declared after the bones are read
    to_deg = 1.0 if angle == "deg" else 180.0 / np.pi
    bones["root"].axis = _euler(root_axis_order, root_orientation * to_deg)
    for bone in bones.values():
        if bone.axis_spec is not None:
            bone.axis = _euler(bone.axis_spec[0], bone.axis_spec[1] * to_deg)
    return AsfSkeleton(bones, scale, angle, root_order, root_pos)


def parse_amc(path: str | Path, skeleton: AsfSkeleton) -> dict[str, np.ndarray]:
    """Per bone, the (T, n_dof) values in the order of its `dof` line (root: its `order`)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise MotionImportError(f"{path}: cannot read AMC file ({err})") from None
    width = {name: len(b.dof) for name, b in skeleton.bones.items()}
    width["root"] = len(skeleton.root_order)
    frames: list[dict[str, list[float]]] = []
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith(":"):
            continue
        parts = line.split()
        if len(parts) == 1 and parts[0].isdigit():
            frames.append({})
            continue
        if not frames:
            raise MotionImportError(f"{path}:{i + 1}: bone values before the first frame number")
        name, values = parts[0], parts[1:]
        if name not in width:
            raise MotionImportError(
                f"{path}:{i + 1}: bone {name!r} is not in the ASF skeleton; use the ASF that belongs to this AMC")
        if len(values) != width[name]:
            raise MotionImportError(
                f"{path}:{i + 1}: bone {name!r} has {len(values)} values, the ASF declares {width[name]}")
        try:
            frames[-1][name] = [float(v) for v in values]
        except ValueError:
            raise MotionImportError(f"{path}:{i + 1}: non-numeric value in {line!r}") from None
    if not frames:
        raise MotionImportError(f"{path}: no frames; the AMC file is empty or truncated")
    out = {}
    for name, n in width.items():
        if n == 0:
            continue
        missing = [k for k, f in enumerate(frames) if name not in f]
        if missing:
            raise MotionImportError(
                f"{path}: bone {name!r} missing in {len(missing)} frame(s) (first: frame index {missing[0]}); "
                "the AMC file is truncated")
        out[name] = np.array([f[name] for f in frames])
    return out


def forward_kinematics(skeleton: AsfSkeleton,
                       values: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(start, end) global positions (T, 3) of every bone, in the ASF's length units."""
    n_frames = next(iter(values.values())).shape[0]
    to_deg = 1.0 if skeleton.angle_unit == "deg" else 180.0 / np.pi
    root_vals = values["root"]
    trans = skeleton.root_position + np.stack(
        [root_vals[:, skeleton.root_order.index(a)] if a in skeleton.root_order else np.zeros(n_frames)
         for a in ("TX", "TY", "TZ")], axis=1)
    root_rot_axes = "".join(a[1] for a in skeleton.root_order if a.startswith("R"))
    root_angles = np.stack([root_vals[:, skeleton.root_order.index("R" + a.upper())] for a in root_rot_axes], axis=1)
    c_root = skeleton.bones["root"].axis
    glob_rot = {"root": c_root @ _euler(root_rot_axes, root_angles * to_deg) @ c_root.T}
    ends = {"root": (trans, trans)}
    for name in skeleton.order():
        if name == "root":
            continue
        bone = skeleton.bones[name]
        rot_dofs = [d for d in bone.dof if d in ROT_DOFS]
        if rot_dofs:
            cols = [bone.dof.index(d) for d in rot_dofs]
            local = _euler("".join(d[1] for d in rot_dofs), values[name][:, cols] * to_deg)
        else:
            local = np.broadcast_to(np.eye(3), (n_frames, 3, 3))
        rot = glob_rot[bone.parent] @ bone.axis @ local @ bone.axis.T
        start = ends[bone.parent][1]
        end = start + np.einsum("tij,j->ti", rot, bone.direction * bone.length)
        glob_rot[name] = rot
        ends[name] = (start, end)
    return ends


def load_asf_amc(asf_path: str | Path, amc_path: str | Path, mapping: MappingSpec = "cmu",
                 fps: float = CMU_FPS) -> ImportedMotion:
    """Read an ASF + AMC pair into the 22 canonical joints in metres (Y up) at `fps` (CMU: 120)."""
    skeleton = parse_asf(asf_path)
    bound = match_names(resolve_mapping(mapping), list(skeleton.bones), asf_path)
    ends = forward_kinematics(skeleton, parse_amc(amc_path, skeleton))
    metres = INCH / skeleton.length_scale
    at = {"start": lambda s, e: s, "end": lambda s, e: e, "mid": lambda s, e: 0.5 * (s + e)}
    joints = np.stack([at[src.at](*ends[src.name]) for src in bound.values()], axis=1) * metres
    names = {c: f"{s.name}:{s.at}" for c, s in bound.items()}
    return ImportedMotion(joints, fps, str(amc_path), names)
