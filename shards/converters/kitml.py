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
which use the 251-d MMM features. MMM joint order and sides follow HumanML3D's KIT processing
(face joints r_hip 11, l_hip 16, r_shoulder 5, l_shoulder 8).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from motion.importers.common import ImportedMotion, MotionImportError
from motion.importers.humanml3d import read_split, read_texts
from motion.features import joints_to_features
from motion.skeleton import JOINT_NAMES

from .common import caption, clean_key, make_sample

DATASET = "kitml"
KIT_FPS = 12.5
KIT_JOINT_NAMES = ("root", "BP", "BT", "BLN", "BUN", "RS", "RE", "RW", "LS", "LE", "LW",
                   "RH", "RK", "RA", "RMrot", "RF", "LH", "LK", "LA", "LMrot", "LF")
# canonical joint -> MMM joint index, or a pair whose midpoint stands in for it
KIT_TO_SMPL: dict[str, int | tuple[int, int]] = {
    "pelvis": 0, "left_hip": 16, "right_hip": 11, "spine1": 1, "left_knee": 17, "right_knee": 12,
    "spine2": (1, 2), "left_ankle": 18, "right_ankle": 13, "spine3": 2, "left_foot": 19, "right_foot": 14,
    "neck": 3, "left_collar": (3, 8), "right_collar": (3, 5), "head": 4, "left_shoulder": 8,
    "right_shoulder": 5, "left_elbow": 9, "right_elbow": 6, "left_wrist": 10, "right_wrist": 7,
}
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
                                f"{hint}: unpack new_joints.zip of the KIT-ML release into {root}")
    try:
        joints = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MotionImportError(f"{path}: cannot read joints ({err})") from None
    return kit_to_smpl22(joints, str(path))


def kitml_samples(root: str | Path, split: str, *, with_joints: bool = False, events: bool = True,
                  source_fps: float = KIT_FPS, dataset: str = DATASET) -> Iterator[dict]:
    """Samples of `<root>/<split>.txt`: features recomputed at 20 fps from the mapped joints."""
    root = Path(root)
    for sample_id in read_split(root, split):
        joints = load_kit_joints(root, sample_id)
        motion = ImportedMotion(joints, source_fps, str(root / "new_joints" / f"{sample_id}.npy"))
        canonical = motion.to_canonical()
        features = joints_to_features(canonical, source=motion.source)
        text_path = root / "texts" / f"{sample_id}.txt"
        if not text_path.is_file():
            raise MotionImportError(f"{text_path}: missing captions for id {sample_id}; unpack texts.zip into {root}")
        texts = [caption(t["text"], t["start"], t["end"], events) for t in read_texts(text_path) if t["text"].strip()]
        mirrored = sample_id.startswith("M")
        yield make_sample(clean_key(dataset, sample_id), features, dataset=dataset, split=split,
                          source=sample_id[1:] if mirrored else sample_id, mirrored=mirrored, texts=texts,
                          joints=canonical if with_joints else None, skeleton_source=SKELETON_NOTE)
