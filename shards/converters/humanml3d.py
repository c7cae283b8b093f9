"""HumanML3D's released folders -> samples, the features taken as they are.

One sample per id of a split file (`new_joint_vecs/<id>.npy`, captions from `texts/<id>.txt`
with their `start#end` spans kept for the reader to crop). Mirrored ids (`M` prefix) are
listed in HumanML3D's split files and ship pre-swapped captions; they are converted as given,
with `mirrored=True` and `source` = the id without the prefix.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from motion.importers.humanml3d import iter_humanml3d

from .common import caption, clean_key, make_sample

DATASET = "humanml3d"


def humanml3d_samples(root: str | Path, split: str, *, with_joints: bool = False, events: bool = True,
                      dataset: str = DATASET) -> Iterator[dict]:
    """Samples of `<root>/<split>.txt` in file order; `with_joints` stores new_joints/ when present."""
    for item in iter_humanml3d(root, split):
        sample_id = item.id
        mirrored = sample_id.startswith("M")
        texts = [caption(t["text"], t["start"], t["end"], events) for t in item.texts if t["text"].strip()]
        yield make_sample(clean_key(dataset, sample_id), item.features, dataset=dataset, split=split,
                          source=sample_id[1:] if mirrored else sample_id, mirrored=mirrored, texts=texts,
                          joints=item.joints if with_joints else None)
