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


def _time(value: str) -> float | None:
    t = float(value)
    return 0.0 if math.isnan(t) else t   # HumanML3D's loaders read NaN as 0.0


def read_texts(path: str | Path, bad: list[str] | None = None) -> list[dict]:
    """Parse one `texts/<id>.txt`; whole-clip captions (0.0#0.0) get start = end = None.

    Read as HumanML3D's loaders read it, NaN times are 0.0 (so `nan#nan` is the whole clip and
    `nan#3.5` the first 3.5 s); a reversed span (`5.0#2.0`) is swapped, as annotation unifiers do.
    A line that still cannot be used (not 4 fields, a time that is not a number, an empty span
    such as `3.0#3.0`) is left out and described in `bad` (raised when `bad` is None).
    """
    path = Path(path)
    texts = []
    for line_no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        problem = None
        parts = line.rsplit("#", 3)  # captions never end in '#', tokens/times never contain it
        if len(parts) != 4:
            problem = f"expected 4 '#'-separated fields caption#tokens#start#end, got {len(parts)}"
        else:
            text, tokens, start, end = parts
            try:
                start_t, end_t = _time(start), _time(end)
            except ValueError:
                problem = f"time {start!r}#{end!r} is not a number"
            else:
                if start_t == 0.0 and end_t == 0.0:
                    start_t = end_t = None
                elif end_t < start_t:
                    start_t, end_t = end_t, start_t
                elif end_t == start_t:
                    problem = f"empty time span {start}#{end}"
        if problem is not None:
            message = f"{path}:{line_no}: {problem}; the caption line is left out"
            if bad is None:
                raise MotionImportError(message, reason="caption_line")
            bad.append(message)
            continue
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
        raise MotionImportError(f"{path}: {what} contains NaN/inf; drop or regenerate this sample",
                                reason="nonfinite_motion")
    return arr


def load_sample(root: str | Path, sample_id: str, bad_lines: list[str] | None = None) -> HumanML3DSample:
    """One id's features, joints (when new_joints/ has them) and captions; `bad_lines` as in read_texts."""
    root = Path(root)
    feat_path = root / "new_joint_vecs" / f"{sample_id}.npy"
    if not feat_path.is_file():
        raise MotionImportError(f"{feat_path}: missing features for id {sample_id}; is {root} a HumanML3D folder?",
                                reason="no_features")
    features = _load_array(feat_path, (FEATURE_DIM,), "features")
    joints_path = root / "new_joints" / f"{sample_id}.npy"
    joints = _load_array(joints_path, (22, 3), "joints") if joints_path.is_file() else None
    text_path = root / "texts" / f"{sample_id}.txt"
    if not text_path.is_file():
        raise MotionImportError(f"{text_path}: missing captions for id {sample_id}", reason="no_captions")
    return HumanML3DSample(sample_id, features, joints, read_texts(text_path, bad_lines))
