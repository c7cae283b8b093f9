"""Reader for HumanML3D's released folders, as they are.

Layout: `new_joint_vecs/<id>.npy` (T-1, 263) features, `new_joints/<id>.npy` (T, 22, 3) joints
(optional here), `texts/<id>.txt` with one `caption#word/POS tokens#start#end` per line (seconds;
`0.0#0.0` or NaN = the whole clip), and `train.txt` / `val.txt` / `test.txt` (...) listing ids.
Ids with an `M` prefix are the left/right mirrored copies that HumanML3D ships.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .common import MotionImportError

FEATURE_DIM = 263


@dataclass
class HumanML3DSample:
    id: str
    features: np.ndarray  # (T-1, 263) float32
    joints: np.ndarray | None  # (T, 22, 3) or None when new_joints/ is absent
    texts: list[dict] = field(default_factory=list)  # {text, tokens, start, end}; None = whole clip

    @property
    def mirrored(self) -> bool:
        return self.id.startswith("M")


def _time(value: str, path: Path, line_no: int) -> float | None:
    try:
        t = float(value)
    except ValueError:
        raise MotionImportError(
            f"{path}:{line_no}: time {value!r} is not a number; expected caption#tokens#start#end") from None
    return None if math.isnan(t) else t


def read_texts(path: str | Path) -> list[dict]:
    """Parse one `texts/<id>.txt`; whole-clip captions get start = end = None."""
    path = Path(path)
    texts = []
    for line_no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit("#", 3)  # captions never end in '#', tokens/times never contain it
        if len(parts) != 4:
            raise MotionImportError(
                f"{path}:{line_no}: expected 4 '#'-separated fields caption#tokens#start#end, got {len(parts)}")
        text, tokens, start, end = parts
        start_t, end_t = _time(start, path, line_no), _time(end, path, line_no)
        if start_t is not None and end_t is not None and start_t == 0.0 and end_t == 0.0:
            start_t = end_t = None
        if (start_t is None) != (end_t is None) or (start_t is not None and end_t <= start_t):
            raise MotionImportError(f"{path}:{line_no}: bad time span {start}#{end}; use start < end or 0.0#0.0")
        texts.append({"text": text.strip(), "tokens": tokens.split(), "start": start_t, "end": end_t})
    return texts


def read_split(root: str | Path, split: str) -> list[str]:
    """Ids listed in `<root>/<split>.txt` (e.g. train, val, test, all)."""
    path = Path(root) / f"{split}.txt"
    if not path.is_file():
        raise MotionImportError(f"{path}: split file not found; HumanML3D ships train.txt, val.txt, test.txt")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _load_array(path: Path, shape_tail: tuple[int, ...], what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MotionImportError(f"{path}: cannot read {what} ({err})") from None
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        expected = ", ".join(map(str, ("T",) + shape_tail))
        raise MotionImportError(f"{path}: {what} has shape {arr.shape}, expected ({expected})")
    if not np.isfinite(arr).all():
        raise MotionImportError(f"{path}: {what} contains NaN/inf; drop or regenerate this sample")
    return arr


def load_sample(root: str | Path, sample_id: str) -> HumanML3DSample:
    root = Path(root)
    feat_path = root / "new_joint_vecs" / f"{sample_id}.npy"
    if not feat_path.is_file():
        raise MotionImportError(f"{feat_path}: missing features for id {sample_id}; is {root} a HumanML3D folder?")
    features = _load_array(feat_path, (FEATURE_DIM,), "features")
    joints_path = root / "new_joints" / f"{sample_id}.npy"
    joints = _load_array(joints_path, (22, 3), "joints") if joints_path.is_file() else None
    text_path = root / "texts" / f"{sample_id}.txt"
    if not text_path.is_file():
        raise MotionImportError(f"{text_path}: missing captions for id {sample_id}")
    return HumanML3DSample(sample_id, features, joints, read_texts(text_path))


def iter_humanml3d(root: str | Path, split: str, include_mirrored: bool = True) -> Iterator[HumanML3DSample]:
    """Samples of one split, in the split file's order."""
    for sample_id in read_split(root, split):
        if include_mirrored or not sample_id.startswith("M"):
            yield load_sample(root, sample_id)
