"""HumanML3D's released folders -> samples, the features taken as they are.

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

from motion.importers.humanml3d import load_sample, read_split

from .common import Skipped, caption, clean_key, convert_all, make_sample

DATASET = "humanml3d"


def humanml3d_samples(root: str | Path, split: str, *, with_joints: bool = False, events: bool = True,
                      dataset: str = DATASET, num_workers: int = 0) -> Iterator[dict | Skipped]:
    """Samples of `<root>/<split>.txt` in file order; `with_joints` stores new_joints/ when present."""
    convert = partial(_convert, root=str(root), split=split, with_joints=with_joints, events=events, dataset=dataset)
    return convert_all(read_split(root, split), convert, num_workers)


def _convert(sample_id: str, root: str, split: str, with_joints: bool, events: bool, dataset: str) -> list:
    bad: list[str] = []
    item = load_sample(root, sample_id, bad)
    mirrored = sample_id.startswith("M")
    texts = [caption(t["text"], t["start"], t["end"], events) for t in item.texts if t["text"].strip()]
    sample = make_sample(clean_key(dataset, sample_id), item.features, dataset=dataset, split=split,
                         source=sample_id[1:] if mirrored else sample_id, mirrored=mirrored, texts=texts,
                         joints=item.joints if with_joints else None)
    return [*(Skipped("caption_line", line) for line in bad), sample]
