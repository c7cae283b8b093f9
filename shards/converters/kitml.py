"""KIT-ML (HumanML3D's release of it) -> samples with trimo's 22-joint, 263-d features at 20 fps.

KIT-ML ships 251-d features of a 21-joint MMM skeleton at 12.5 fps. They cannot go into a
trimo shard as they are: the schema, the GCN over 22 joints and the 263-d stats all assume
SMPL's skeleton. So this converter reads `new_joints/<id>.npy` (T, 21, 3), maps the MMM joints
onto the 22 SMPL-order joints, resamples 12.5 -> 20 fps (motion.features.resample, linear) and
recomputes the features on the uniform skeleton (motion.importers.common.ImportedMotion).

The mapping is an approximation, recorded in every sample's meta (`skeleton_source`):
- MMM has no collar joints: each collar is placed halfway between the lower neck (BLN) and
  that side's shoulder;
- MMM has three torso joints above the root (BP, BT, BLN) for SMPL's four (spine1..3, neck):
  spine1 = BP, spine2 = halfway BP-BT, spine3 = BT, neck = BLN, head = BUN;
- the SMPL foot joint is the MMM metatarsal joint (LMrot / RMrot).
Numbers trained or evaluated on these shards are NOT comparable with published KIT-ML results,
which use the 251-d MMM features.

Joint order and sides: the published MMM joint list (language2pose's, which HumanML3D's KIT joints
follow) is root, BP, BT, BLN, BUN, LS, LE, LW, RS, RE, RW, LH, LK, LA, LMrot, LF, RH, RK, RA,
RMrot, RF: joint 5 is the LEFT shoulder and 11 the LEFT hip. HumanML3D's KIT raw offsets agree
(5 and 11 point to +X, the side SMPL's left joints are on), although its KIT processing calls its
face joints [11, 16, 5, 8] "r_hip, l_hip, sdr_r, sdr_l". trimo follows the joint list; the facing
comes from its own canonicalization of the mapped joints.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np

from motion.importers.common import ImportedMotion, MotionImportError
from motion.importers.humanml3d import read_split, read_texts
from motion.features import joints_to_features, resample
from motion.skeleton import JOINT_NAMES

from .common import FPS, Skipped, caption, clean_key, convert_all, make_sample

DATASET = "kitml"
KIT_FPS = 12.5
KIT_JOINT_NAMES = ("root", "BP", "BT", "BLN", "BUN", "LS", "LE", "LW", "RS", "RE", "RW",
                   "LH", "LK", "LA", "LMrot", "LF", "RH", "RK", "RA", "RMrot", "RF")
# canonical joint -> MMM joint name, or a pair whose midpoint stands in for it
KIT_TO_SMPL_NAMES: dict[str, str | tuple[str, str]] = {
    "pelvis": "root", "left_hip": "LH", "right_hip": "RH", "spine1": "BP", "left_knee": "LK", "right_knee": "RK",
    "spine2": ("BP", "BT"), "left_ankle": "LA", "right_ankle": "RA", "spine3": "BT", "left_foot": "LMrot",
    "right_foot": "RMrot", "neck": "BLN", "left_collar": ("BLN", "LS"), "right_collar": ("BLN", "RS"), "head": "BUN",
    "left_shoulder": "LS", "right_shoulder": "RS", "left_elbow": "LE", "right_elbow": "RE", "left_wrist": "LW",
    "right_wrist": "RW",
}
KIT_TO_SMPL: dict[str, int | tuple[int, int]] = {
    ours: KIT_JOINT_NAMES.index(theirs) if isinstance(theirs, str) else tuple(KIT_JOINT_NAMES.index(t) for t in theirs)
    for ours, theirs in KIT_TO_SMPL_NAMES.items()}
SKELETON_NOTE = "kit-mmm-21 mapped to smpl-22 (collars and spine2 interpolated); not comparable with 251-d KIT-ML"


def kit_to_smpl22(joints: np.ndarray, source: str = "kit joints") -> np.ndarray:
    """(T, 21, 3) MMM joint positions -> (T, 22, 3) in SMPL order (see KIT_TO_SMPL)."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (21, 3):
        raise MotionImportError(f"{source}: KIT-ML joints have shape {joints.shape}, expected (T, 21, 3) "
                                "MMM positions (new_joints/<id>.npy)")
    out = np.empty((len(joints), len(JOINT_NAMES), 3))
    for j, name in enumerate(JOINT_NAMES):
        src = KIT_TO_SMPL[name]
        out[:, j] = joints[:, src] if isinstance(src, int) else 0.5 * (joints[:, src[0]] + joints[:, src[1]])
    return out


def load_kit_joints(root: Path, sample_id: str) -> np.ndarray:
    path = root / "new_joints" / f"{sample_id}.npy"
    if not path.is_file():
        vecs = root / "new_joint_vecs" / f"{sample_id}.npy"
        hint = (f" ({vecs.name} holds KIT's 251-d MMM features, which trimo's 263-d 22-joint schema cannot store)"
                if vecs.is_file() else "")
        raise MotionImportError(f"{path}: missing; the KIT-ML converter recomputes features from new_joints/"
                                f"{hint}: unpack new_joints.zip of the KIT-ML release into {root}",
                                reason="no_joints")
    try:
        joints = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MotionImportError(f"{path}: cannot read joints ({err})", reason="unreadable_joints") from None
    return kit_to_smpl22(joints, str(path))


def kitml_samples(root: str | Path, split: str, *, with_joints: bool = False, events: bool = True,
                  source_fps: float = KIT_FPS, dataset: str = DATASET, num_workers: int = 0,
                  dry_run: bool = False, definition: str = "trimo") -> Iterator[dict | Skipped]:
    """Samples of `<root>/<split>.txt`: features recomputed at 20 fps from the mapped joints; an id
    without joints or captions is skipped with the reason."""
    convert = partial(_convert, root=str(root), split=split, with_joints=with_joints, events=events,
                      source_fps=source_fps, dataset=dataset, dry_run=dry_run, definition=definition)
    return convert_all(read_split(root, split), convert, num_workers)


def _convert(sample_id: str, root: str, split: str, with_joints: bool, events: bool, source_fps: float,
             dataset: str, dry_run: bool, definition: str) -> list:
    root = Path(root)
    joints = load_kit_joints(root, sample_id)
    text_path = root / "texts" / f"{sample_id}.txt"
    if not text_path.is_file():
        raise MotionImportError(f"{text_path}: missing captions for id {sample_id}; unpack texts.zip into {root}",
                                reason="no_captions")
    bad: list[str] = []
    texts = [caption(t["text"], t["start"], t["end"], events) for t in read_texts(text_path, bad) if t["text"].strip()]
    source = str(root / "new_joints" / f"{sample_id}.npy")
    if dry_run:   # the length only: the root's trajectory resampled like the whole motion
        canonical, features = None, np.zeros((len(resample(joints[:, :1], source_fps, FPS, source)) - 1, 263))
    else:
        canonical = ImportedMotion(joints, source_fps, source).to_canonical()
        features = joints_to_features(canonical, source=source, definition=definition)
    mirrored = sample_id.startswith("M")
    sample = make_sample(clean_key(dataset, sample_id), features, dataset=dataset, split=split,
                         source=sample_id[1:] if mirrored else sample_id, mirrored=mirrored, texts=texts,
                         joints=canonical if with_joints else None, skeleton_source=SKELETON_NOTE)
    return [*(Skipped("caption_line", line) for line in bad), sample]
