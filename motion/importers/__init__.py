"""Mocap importers: BVH, Acclaim ASF/AMC, AMASS (SMPL-H via smplx), joint .npy, DeepMimic .txt,
HumanML3D folders.

Every loader returns an `ImportedMotion` (22 SMPL-order joints, metres, Y up, source fps);
`ImportedMotion.to_canonical()` / `.features()` give HumanML3D-style joints / 263-d features at
20 fps. `load_motion(path, **kw)` picks the loader from the file extension.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import ImportedMotion, MotionImportError, check_joints
from .mapping import PRESETS, JointSource, MappingSpec, resolve_mapping

# what folder conversions pick up; a DeepMimic .txt is read when named (folders hold notes too)
SUPPORTED_SUFFIXES = (".bvh", ".amc", ".npz", ".npy")

__all__ = ["ImportedMotion", "MotionImportError", "JointSource", "PRESETS", "SUPPORTED_SUFFIXES",
           "load_motion", "load_joints_npy", "resolve_mapping"]


def load_joints_npy(path: str | Path, fps: float = 20.0) -> ImportedMotion:
    """A (T, 22, 3) joint-position array in metres, Y up, SMPL order, at `fps`."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MotionImportError(f"{path}: cannot read .npy ({err}); expected a plain (T, 22, 3) float array") from None
    return ImportedMotion(check_joints(arr, path), fps, str(path), {})


def load_motion(path: str | Path, *, mapping: MappingSpec | None = None, units: str = "auto", asf: str | Path | None = None,
                body_model_dir: str | Path | None = None, gender: str | None = None, fps: float | None = None,
                device: str = "cpu") -> ImportedMotion:
    """Load any supported mocap file by extension.

    .bvh: `mapping` (default "lafan1"), `units`; .amc: the .asf beside it (same stem, or the only
    .asf in the folder) or `asf=`, `mapping` (default "cmu"), `fps` (default 120); .npz: AMASS,
    needs `body_model_dir`; .npy: joints (T, 22, 3) at `fps` (default 20); .txt: a DeepMimic
    humanoid motion (JSON), when named (folder scans take SUPPORTED_SUFFIXES only).
    """
    path = Path(path)
    if not path.is_file():
        raise MotionImportError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        from .bvh import load_bvh

        return load_bvh(path, mapping or "lafan1", units)
    if suffix == ".amc":
        from .asf_amc import CMU_FPS, load_asf_amc

        return load_asf_amc(asf or _find_asf(path), path, mapping or "cmu", fps or CMU_FPS)
    if suffix == ".npz":
        if body_model_dir is None:
            raise MotionImportError(f"{path}: AMASS .npz needs an SMPL-H body model; pass body_model_dir=")
        from .amass import load_amass_npz

        return load_amass_npz(path, body_model_dir, gender, device)
    if suffix == ".npy":
        return load_joints_npy(path, fps or 20.0)
    if suffix == ".txt":
        from .deepmimic import load_deepmimic

        return load_deepmimic(path)
    raise MotionImportError(f"{path}: unsupported extension {suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}, "
                            ".txt (DeepMimic)")


def _find_asf(amc: Path) -> Path:
    same = amc.with_suffix(".asf")
    if same.is_file():
        return same
    others = sorted(amc.parent.glob("*.asf"))
    if len(others) == 1:
        return others[0]
    # CMU names trials <subject>_<trial>.amc next to <subject>.asf
    subject = amc.parent / f"{amc.stem.split('_')[0]}.asf"
    if subject.is_file():
        return subject
    raise MotionImportError(f"{amc}: no matching .asf skeleton beside it ({same.name}); pass asf=")
