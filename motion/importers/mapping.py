"""Which source joint stands for each of the 22 canonical (SMPL-order) joints.

A mapping is `{canonical_name: JointSource}`. `JointSource.at` says where on the source element the
canonical joint sits: BVH and SMPL sources name joints (points), so `start` is the joint itself;
Acclaim ASF names bones, so `start` is where the bone leaves its parent, `end` its tip and `mid`
halfway (used for the collar joints, which CMU skeletons do not have as separate points).

Presets: `cmu` (Acclaim bone names), `lafan1` (Ubisoft LAFAN1 BVH), `mixamo` (with or without a
`mixamorig:` style namespace prefix). A custom mapping is a dict or a JSON/YAML file:
`{"pelvis": "Hips", "left_knee": {"joint": "lfemur", "at": "end"}, ...}`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Union

from .common import MotionImportError

from motion.skeleton import JOINT_NAMES

POSITIONS = ("start", "end", "mid")


@dataclass(frozen=True)
class JointSource:
    name: str
    at: str = "start"  # "start" | "end" | "mid" of the source bone


JointMapping = dict[str, JointSource]
MappingSpec = Union[str, Path, Mapping[str, object]]

_LAFAN1 = {
    "pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg", "spine1": "Spine",
    "left_knee": "LeftLeg", "right_knee": "RightLeg", "spine2": "Spine1",
    "left_ankle": "LeftFoot", "right_ankle": "RightFoot", "spine3": "Spine2",
    "left_foot": "LeftToe", "right_foot": "RightToe", "neck": "Neck",
    "left_collar": "LeftShoulder", "right_collar": "RightShoulder", "head": "Head",
    "left_shoulder": "LeftArm", "right_shoulder": "RightArm",
    "left_elbow": "LeftForeArm", "right_elbow": "RightForeArm",
    "left_wrist": "LeftHand", "right_wrist": "RightHand",
}
# Mixamo rigs differ from LAFAN1 only in the toe name.
_MIXAMO = {**_LAFAN1, "left_foot": "LeftToeBase", "right_foot": "RightToeBase"}

# Acclaim bones run from the parent's tip to their own tip; each canonical joint is a bone end.
_CMU = {
    "pelvis": ("root", "start"),
    "left_hip": ("lfemur", "start"), "right_hip": ("rfemur", "start"),
    "spine1": ("lowerback", "end"),
    "left_knee": ("lfemur", "end"), "right_knee": ("rfemur", "end"),
    "spine2": ("upperback", "end"),
    "left_ankle": ("ltibia", "end"), "right_ankle": ("rtibia", "end"),
    "spine3": ("thorax", "end"),
    "left_foot": ("lfoot", "end"), "right_foot": ("rfoot", "end"),
    "neck": ("lowerneck", "end"),
    "left_collar": ("lclavicle", "mid"), "right_collar": ("rclavicle", "mid"),
    "head": ("upperneck", "end"),
    "left_shoulder": ("lhumerus", "start"), "right_shoulder": ("rhumerus", "start"),
    "left_elbow": ("lhumerus", "end"), "right_elbow": ("rhumerus", "end"),
    "left_wrist": ("lradius", "end"), "right_wrist": ("rradius", "end"),
}

PRESETS: dict[str, JointMapping] = {
    "lafan1": {k: JointSource(v) for k, v in _LAFAN1.items()},
    "mixamo": {k: JointSource(v) for k, v in _MIXAMO.items()},
    "cmu": {k: JointSource(*v) for k, v in _CMU.items()},
}


def _parse_entry(key: str, value: object, origin: str) -> JointSource:
    if isinstance(value, JointSource):
        return value
    if isinstance(value, str):
        return JointSource(value)
    if isinstance(value, Mapping) and isinstance(value.get("joint"), str):
        at = str(value.get("at", "start"))
        if at not in POSITIONS:
            raise MotionImportError(f"{origin}: '{key}' has at={at!r}; use one of {', '.join(POSITIONS)}")
        return JointSource(value["joint"], at)
    raise MotionImportError(
        f"{origin}: entry '{key}' is {value!r}; give a source joint name or "
        '{"joint": NAME, "at": "start"|"end"|"mid"}')


def _read_mapping_file(path: Path) -> Mapping[str, object]:
    if not path.is_file():
        raise MotionImportError(
            f"mapping {str(path)!r} is neither a preset ({', '.join(PRESETS)}) nor an existing JSON/YAML file")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml  # a dependency of omegaconf

            data = yaml.safe_load(text)
    except ValueError as err:  # json.JSONDecodeError and yaml.YAMLError's parse errors
        raise MotionImportError(f"{path}: not valid JSON/YAML ({err}); fix the mapping file") from None
    except Exception as err:  # yaml.YAMLError is not a ValueError
        first_line = str(err).splitlines()[0]
        raise MotionImportError(f"{path}: not valid JSON/YAML ({first_line}); fix the mapping file") from None
    if not isinstance(data, Mapping):
        raise MotionImportError(f"{path}: expected a mapping canonical_name -> source joint, got {type(data).__name__}")
    return data


def resolve_mapping(spec: MappingSpec) -> JointMapping:
    """Turn a preset name, a dict or a JSON/YAML file path into a full 22-joint mapping."""
    if isinstance(spec, str) and spec in PRESETS:
        return dict(PRESETS[spec])
    origin = "custom mapping"
    if isinstance(spec, (str, Path)):
        origin = str(spec)
        spec = _read_mapping_file(Path(spec))
    unknown = sorted(set(spec) - set(JOINT_NAMES))
    if unknown:
        raise MotionImportError(
            f"{origin}: unknown canonical joint name(s) {unknown}; valid names: {', '.join(JOINT_NAMES)}")
    missing = [n for n in JOINT_NAMES if n not in spec]
    if missing:
        raise MotionImportError(f"{origin}: no source joint given for canonical joint(s) {missing}; all 22 are needed")
    return {k: _parse_entry(k, spec[k], origin) for k in JOINT_NAMES}


def _strip_namespace(name: str) -> str:
    return name.rsplit(":", 1)[-1]


def match_names(mapping: JointMapping, available: Iterable[str], source: str | Path) -> JointMapping:
    """Bind the mapping to the names present in a file; namespace prefixes ("mixamorig:") are optional.

    Raises one error listing every canonical joint whose source name is missing.
    """
    available = list(available)
    by_bare = {}
    for name in available:
        by_bare.setdefault(_strip_namespace(name), name)
    bound, missing = {}, []
    for canon, src in mapping.items():
        if src.name in available:
            bound[canon] = src
        elif _strip_namespace(src.name) in by_bare:
            bound[canon] = JointSource(by_bare[_strip_namespace(src.name)], src.at)
        else:
            missing.append(f"{canon}->{src.name}")
    if missing:
        raise MotionImportError(
            f"{source}: joint(s) not found in the file: {', '.join(missing)}; the file has "
            f"{', '.join(available)}; pass mapping= a preset ({', '.join(PRESETS)}) or a JSON/YAML file "
            "canonical_name -> source joint name")
    return bound
