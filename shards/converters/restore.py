"""HumanML3D (Restore) for localization (MLP): HumanML3D segments put back into their AMASS sources.

HumanML3D's `index.csv` (columns source_path, start_frame, end_frame, new_name) says that clip
`new_name` is frames [start_frame, end_frame) at 20 fps of `./pose_data/<AMASS path>.npy`, counted
after HumanML3D dropped the first seconds of some subsets (`TRIM_SECONDS`). Segments are grouped
by source; each source becomes one untrimmed sample whose `moments` are its segments' captions
at absolute times: (trim + start_frame) / 20 + the caption's own start inside the clip.

- Motion: the whole AMASS sequence from frame 0 at 20 fps through smplx (motion.importers.amass,
  the same striding as HumanML3D), on the uniform skeleton. HumanML3D's own new_joints cannot be
  used: each clip is re-centred and re-rotated on its own, and the gaps between clips are missing.
- Moments longer than 80% of their source are dropped (MLP); a source left without one is dropped.
- Mirrored copy (`M` key prefix) of every source: features mirrored, moment texts swapped with
  motion.mirror.swap_left_right (not HumanML3D's M captions: ours apply to the whole source).
- Split by source (MLP re-split to stop sources leaking across splits): a source goes to the most
  held-out split any of its segments (or their M twins) is in, test > val > train, so no segment a
  HumanML3D-trained model saw in training is ever in Restore's test or val. HumanAct12 rows
  (not AMASS) and segments in no split file are left out and counted.
"""
from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from motion.importers.common import MotionImportError
from motion.importers.humanml3d import read_split, read_texts

from .common import FPS, amass_motion, clean_key, convert_all, make_sample, mirror_sample

DATASET = "humanml3d_restore"
MAX_MOMENT_FRACTION = 0.8
# HumanML3D's raw_pose_processing drops these leading seconds (at 20 fps) of some AMASS subsets
TRIM_SECONDS = {"Eyes_Japan_Dataset": 3.0, "MPI_HDM05": 3.0, "TotalCapture": 1.0, "MPI_Limits": 1.0,
                "Transitions_mocap": 0.5}
INDEX_COLUMNS = ("source_path", "start_frame", "end_frame", "new_name")
SPLIT_PRIORITY = ("test", "val", "train")  # the most held-out split wins


@dataclass
class Segment:
    """One HumanML3D clip inside its source, with absolute times in seconds."""

    id: str
    start: float
    end: float
    captions: list[dict]


@dataclass
class Source:
    path: str  # source_path of index.csv, e.g. ./pose_data/KIT/3/kick_high_left02_poses.npy
    split: str
    segments: list[Segment] = field(default_factory=list)

    @property
    def amass_path(self) -> str:
        """The AMASS npz beside HumanML3D's pose_data copy: KIT/3/kick_high_left02_poses.npz."""
        rel = self.path.removeprefix("./").removeprefix("pose_data/")
        return str(Path(rel).with_suffix(".npz"))


def trim_frames(source_path: str) -> int:
    """Frames (20 fps) HumanML3D removed from the start of this source before cutting clips."""
    for subset, seconds in TRIM_SECONDS.items():
        if subset in source_path:
            return int(seconds * FPS)
    return 0


def read_index(path: str | Path) -> dict[str, tuple[str, int, int]]:
    """index.csv -> {clip id: (source_path, start_frame, end_frame)}."""
    path = Path(path)
    if not path.is_file():
        raise MotionImportError(f"{path}: not found; HumanML3D's index.csv ships with its repository")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in INDEX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise MotionImportError(f"{path}: columns {missing} missing; expected {', '.join(INDEX_COLUMNS)}")
        out = {}
        for line_no, row in enumerate(reader, 2):
            try:
                start, end = int(row["start_frame"]), int(row["end_frame"])
            except (TypeError, ValueError):
                raise MotionImportError(f"{path}:{line_no}: start_frame/end_frame must be integers") from None
            if end <= start or start < 0:
                raise MotionImportError(f"{path}:{line_no}: frames [{start}, {end}) are empty or negative")
            out[Path(row["new_name"]).stem] = (row["source_path"], start, end)
    return out


def assign_split(splits: set[str]) -> str:
    return next(s for s in SPLIT_PRIORITY if s in splits)


def group_sources(humanml3d_dir: str | Path, index_csv: str | Path | None = None,
                  splits: tuple[str, ...] = SPLIT_PRIORITY, counter: Counter | None = None) -> list[Source]:
    """Sources with their segments (absolute times, captions), each in one split; sorted by path."""
    root = Path(humanml3d_dir)
    counter = counter if counter is not None else Counter()
    index = read_index(index_csv or root / "index.csv")
    split_of: dict[str, set[str]] = defaultdict(set)
    for split in splits:
        for clip in read_split(root, split):
            split_of[clip.removeprefix("M") if clip.startswith("M") and clip[1:] in index else clip].add(split)
    by_source: dict[str, list[Segment]] = defaultdict(list)
    source_splits: dict[str, set[str]] = defaultdict(set)
    for clip in sorted(index):
        source_path, start, end = index[clip]
        if "humanact12" in source_path.lower():
            counter["humanact12_segment"] += 1
            continue
        if clip not in split_of:
            counter["segment_in_no_split"] += 1
            continue
        offset = trim_frames(source_path)
        seg_start, seg_end = (offset + start) / FPS, (offset + end) / FPS
        text_path = root / "texts" / f"{clip}.txt"
        if not text_path.is_file():
            raise MotionImportError(f"{text_path}: missing captions for clip {clip} of {source_path}")
        captions = []
        for t in read_texts(text_path):
            if not t["text"].strip():
                continue
            first = seg_start if t["start"] is None else min(seg_start + t["start"], seg_end)
            last = seg_end if t["end"] is None else min(seg_start + t["end"], seg_end)
            if last > first:
                captions.append({"text": t["text"], "start": round(first, 4), "end": round(last, 4)})
        by_source[source_path].append(Segment(clip, seg_start, seg_end, captions))
        source_splits[source_path] |= split_of[clip]
    return [Source(path, assign_split(source_splits[path]), segs) for path, segs in sorted(by_source.items())]


def source_sample(source: Source, features, joints=None) -> dict | None:
    """The localization sample of one source (None when every moment is too long)."""
    duration = len(features) / FPS
    moments, dropped = [], 0
    for seg in source.segments:
        for cap in seg.captions:
            start, end = cap["start"], min(cap["end"], duration)
            if end <= start or end - start > MAX_MOMENT_FRACTION * duration:
                dropped += 1
                continue
            moments.append({"text": " ".join(cap["text"].split()), "start": start, "end": end, "segment": seg.id})
    if not moments:
        return None
    key = clean_key(DATASET, source.amass_path.removesuffix(".npz"))
    return make_sample(key, features, dataset=DATASET, split=source.split, source=source.path, mirrored=False,
                       texts=[], moments=moments, joints=joints, moments_dropped=dropped,
                       segments=[{"id": s.id, "start": s.start, "end": s.end} for s in source.segments])


def _convert(source: Source, amass_root: str, body_model_dir: str, gender: str | None,
             with_joints: bool, mirror: bool) -> list[dict]:
    features, joints = amass_motion(_find(Path(amass_root), source), body_model_dir, gender)
    sample = source_sample(source, features, joints if with_joints else None)
    if sample is None:
        return []
    return [sample, mirror_sample(sample)] if mirror else [sample]


def _find(amass_root: Path, source: Source) -> Path:
    path = amass_root / source.amass_path
    if not path.is_file():
        raise MotionImportError(f"{path}: AMASS source of {source.path} not found; pass --amass-root the folder "
                                "HumanML3D's raw_pose_processing read (amass_data)")
    return path


def restore_samples(sources: list[Source], amass_root: str | Path, body_model_dir: str | Path, *,
                    gender: str | None = None, with_joints: bool = False, mirror: bool = True,
                    num_workers: int = 0) -> Iterator[dict]:
    convert = partial(_convert, amass_root=str(amass_root), body_model_dir=str(body_model_dir), gender=gender,
                      with_joints=with_joints, mirror=mirror)
    return convert_all(sources, convert, num_workers)
