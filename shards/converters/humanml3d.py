"""HumanML3D's released folders -> samples, with the released features or trimo's.

`features="released"` takes `new_joint_vecs/` as they are: the shard set's motion_features is then
"humanml3d". `features="trimo"` recomputes them from `new_joints/` (which the release ships) with
motion.features.joints_to_features on trimo's uniform skeleton, like every other source: motion
features "trimo", heading-invariant and exactly mirrorable. `features="humanml3d"` recomputes
the released definition from `new_joints/` with trimo's implementation of it (what `released`
holds, up to float32 rounding, for a faithful release). A set records which definition it holds,
and a model trained on one is refused data of the other.

One sample per id of a split file (`new_joint_vecs/<id>.npy`, captions from `texts/<id>.txt`
with their `start#end` spans kept for the reader to crop). Mirrored ids (`M` prefix) are
listed in HumanML3D's split files and ship pre-swapped captions; they are converted as given,
with `mirrored=True` and `source` = the id without the prefix. An id whose files are missing or
broken (e.g. features with NaN) is skipped with the reason, and so is a caption line
`motion.importers.humanml3d.read_texts` cannot use.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np

from motion.features import joints_to_features
from motion.importers.common import ImportedMotion, MotionImportError
from motion.importers.humanml3d import load_sample, read_split

from .common import FPS, Skipped, caption, clean_key, convert_all, make_sample

DATASET = "humanml3d"
# --features choice -> the motion_features a shard set records
MOTION_FEATURES_OF = {"released": "humanml3d", "trimo": "trimo", "humanml3d": "humanml3d"}


def humanml3d_samples(root: str | Path, split: str, *, with_joints: bool = False, events: bool = True,
                      dataset: str = DATASET, num_workers: int = 0, features: str = "released"
                      ) -> Iterator[dict | Skipped]:
    """Samples of `<root>/<split>.txt` in file order; `with_joints` stores new_joints/ when present
    (trimo's canonical joints with features="trimo")."""
    if features not in MOTION_FEATURES_OF:
        raise ValueError(f"features={features!r}: use one of {tuple(MOTION_FEATURES_OF)}")
    convert = partial(_convert, root=str(root), split=split, with_joints=with_joints, events=events, dataset=dataset,
                      features=features)
    return convert_all(read_split(root, split), convert, num_workers)


def _convert(sample_id: str, root: str, split: str, with_joints: bool, events: bool, dataset: str,
             features: str) -> list:
    bad: list[str] = []
    item = load_sample(root, sample_id, bad)
    motion, joints = item.features, item.joints
    if with_joints and joints is None:
        raise MotionImportError(f"{Path(root) / 'new_joints' / (sample_id + '.npy')}: missing, and --with-joints "
                                "stores it; unpack new_joints/ from the release or leave out --with-joints",
                                reason="no_joints")
    if features != "released":
        if joints is None:
            raise MotionImportError(f"{Path(root) / 'new_joints' / (sample_id + '.npy')}: missing; --features "
                                    f"{features} recomputes the features from new_joints/ (unpack it from the release)",
                                    reason="no_joints")
        if features == "trimo":   # onto trimo's uniform skeleton, like every other source
            joints = ImportedMotion(joints, FPS, f"{root}/new_joints/{sample_id}.npy").to_canonical()
        motion = joints_to_features(joints.astype(np.float64), source=sample_id, definition=MOTION_FEATURES_OF[features])
    mirrored = sample_id.startswith("M")
    texts = [caption(t["text"], t["start"], t["end"], events) for t in item.texts if t["text"].strip()]
    sample = make_sample(clean_key(dataset, sample_id), motion, dataset=dataset, split=split,
                         source=sample_id[1:] if mirrored else sample_id, mirrored=mirrored, texts=texts,
                         joints=joints if with_joints else None)
    return [*(Skipped("caption_line", line) for line in bad), sample]
