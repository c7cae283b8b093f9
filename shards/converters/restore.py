"""HumanML3D (Restore) for localization (MLP): HumanML3D segments put back into their AMASS sources.

HumanML3D's `index.csv` (columns source_path, start_frame, end_frame, new_name) says that clip
`new_name` is the Python slice [start_frame:end_frame] of `./pose_data/<AMASS path>.npy`, after
HumanML3D dropped the first 20 * `TRIM_SECONDS` frames of some subsets. Its raw_pose_processing
made that array by keeping every `int(fps / 20)`-th frame of the AMASS sequence, so one of its
frames lasts int(fps / 20) / fps seconds: 1/20 s for rates that are multiples of 20, but 0.048 s
for Eyes_Japan's 250 fps and 1/30 s for SSM_synced's 59.99999 fps (`frame_seconds`). Caption
times inside a clip count the same frames (HumanML3D crops `motion[int(start*20):int(end*20)]`).
Segments are grouped by source; each source becomes one untrimmed sample whose `moments` are its
segments' captions at absolute times: (trim + start_frame + 20 * caption start) * frame_seconds.
Rows the release gets odd are read as upstream reads them: HumanAct12 rows (`end_frame` -1; not
AMASS) are left out and counted, an AMASS row's -1 ends one frame before the source's end (the
slice's meaning), and a row with an empty or negative span is skipped and counted.

- Motion: the whole AMASS sequence from frame 0 at 20 fps through smplx (motion.importers.amass,
  the same striding as HumanML3D), on the uniform skeleton. HumanML3D's own new_joints cannot be
  used: each clip is re-centred and re-rotated on its own, and the gaps between clips are missing.
- Moments longer than 80% of their source are dropped (MLP); a source left without one is dropped.
- Mirrored copy (`M` key prefix) of every source: features mirrored, moment texts swapped with
  motion.mirror.swap_left_right (not HumanML3D's M captions: ours apply to the whole source).
- Split by source (MLP re-split to stop sources leaking across splits): a source goes to the most
  held-out split any of its segments (or their M twins) is in, test > val > train, so no segment a
  HumanML3D-trained model saw in training is ever in Restore's test or val. HumanAct12 rows
  (not AMASS) and segments in no split file are left out and counted. `split_files` instead takes
  fixed lists of sources per split (e.g. the MLP authors'), so numbers compare with the paper.
"""
from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from motion.importers.amass import probe_amass_npz
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
    """One HumanML3D clip inside its source: frames of HumanML3D's strided array (trim included;
    `last` None = up to one frame before the end) and its captions with times inside the clip in
    HumanML3D's nominal seconds (20 of its frames; None = the whole clip)."""

    id: str
    first: int
    last: int | None
    captions: list[dict]

    def span(self, frame_seconds: float, frames: int) -> tuple[float, float]:
        """(start, end) in seconds of the source, for a strided array of `frames` frames."""
        last = frames - 1 if self.last is None else min(self.last, frames)
        return self.first * frame_seconds, max(last, self.first) * frame_seconds


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


def frame_seconds(fps: float) -> float:
    """Seconds one frame of HumanML3D's array lasts: it kept every int(fps / 20)-th frame."""
    step = int(fps / FPS)
    if step < 1:
        raise MotionImportError(f"a {fps} fps source is slower than 20 fps; HumanML3D's striding is undefined",
                                reason="source_below_20fps")
    return step / fps


def read_index(path: str | Path, counter: Counter | None = None) -> dict[str, tuple[str, int, int]]:
    """index.csv -> {clip id: (source_path, start_frame, end_frame)}; end_frame -1 is kept (the
    slice's meaning), a row with an empty or negative span is left out and counted."""
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
            if start < 0 or (end != -1 and end <= start):
                if counter is not None:
                    counter["index_row_empty_span"] += 1
                continue
            out[Path(row["new_name"]).stem] = (row["source_path"], start, end)
    return out


def assign_split(splits: set[str]) -> str:
    return next(s for s in SPLIT_PRIORITY if s in splits)


def source_id(path: str) -> str:
    """A source path in any of the usual spellings (index.csv's `./pose_data/X_poses.npy`, the AMASS
    `X_poses.npz`, with or without the subset folder's prefix) -> `X_poses`, to match split lists."""
    return str(Path(path.strip().removeprefix("./").removeprefix("pose_data/").removeprefix("amass_data/"))
               .with_suffix(""))


def read_split_files(folder: str | Path) -> dict[str, set[str]]:
    """<folder>/{train,val,test}.txt, one source path per line -> {split: source ids}."""
    out = {}
    for split in SPLIT_PRIORITY:
        path = Path(folder) / f"{split}.txt"
        if not path.is_file():
            raise MotionImportError(f"{path}: split list not found; --split-files needs train.txt, val.txt and "
                                    "test.txt with one source path per line")
        out[split] = {source_id(line) for line in path.read_text().splitlines() if line.strip()}
    return out


def group_sources(humanml3d_dir: str | Path, index_csv: str | Path | None = None,
                  splits: tuple[str, ...] = SPLIT_PRIORITY, counter: Counter | None = None,
                  split_files: dict[str, set[str]] | None = None) -> list[Source]:
    """Sources with their segments (frames, captions), each in one split; sorted by path. The split
    of a source comes from `split_files` when given (a source in none is left out and counted),
    else from HumanML3D's split files (see the module doc)."""
    root = Path(humanml3d_dir)
    counter = counter if counter is not None else Counter()
    index = read_index(index_csv or root / "index.csv", counter)
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
        text_path = root / "texts" / f"{clip}.txt"
        if not text_path.is_file():
            counter["segment_without_texts"] += 1
            continue
        bad_lines: list[str] = []
        captions = [{"text": t["text"], "start": t["start"], "end": t["end"]}
                    for t in read_texts(text_path, bad_lines) if t["text"].strip()]
        if bad_lines:
            counter["caption_line_skipped"] += len(bad_lines)
        last = None if end == -1 else offset + end
        by_source[source_path].append(Segment(clip, offset + start, last, captions))
        source_splits[source_path] |= split_of[clip]
    if split_files is None:
        return [Source(path, assign_split(source_splits[path]), segs) for path, segs in sorted(by_source.items())]
    out = []
    for path, segs in sorted(by_source.items()):
        listed = [split for split in SPLIT_PRIORITY if source_id(path) in split_files[split]]
        if listed:
            out.append(Source(path, listed[0], segs))
        else:
            counter["source_in_no_split_file"] += 1
    return out


def source_sample(source: Source, features, fps: float, strided_frames: int, joints=None) -> dict | None:
    """The localization sample of one source (None when every moment is too long). `fps` is the
    AMASS sequence's rate and `strided_frames` the length of HumanML3D's array of it."""
    duration = len(features) / FPS
    step_s = frame_seconds(fps)
    moments, dropped, segments = [], 0, []
    for seg in source.segments:
        seg_start, seg_end = seg.span(step_s, strided_frames)
        segments.append({"id": seg.id, "start": round(seg_start, 4), "end": round(seg_end, 4)})
        for cap in seg.captions:
            start = seg_start if cap["start"] is None else min(seg_start + cap["start"] * FPS * step_s, seg_end)
            end = seg_end if cap["end"] is None else min(seg_start + cap["end"] * FPS * step_s, seg_end)
            start, end = round(start, 4), round(min(end, duration), 4)
            if end <= start or end - start > MAX_MOMENT_FRACTION * duration:
                dropped += 1
                continue
            moments.append({"text": " ".join(cap["text"].split()), "start": start, "end": end, "segment": seg.id})
    if not moments:
        return None
    key = clean_key(DATASET, source.amass_path.removesuffix(".npz"))
    return make_sample(key, features, dataset=DATASET, split=source.split, source=source.path, mirrored=False,
                       texts=[], moments=moments, joints=joints, moments_dropped=dropped, segments=segments)


def _convert(source: Source, amass_root: str, body_model_dir: str, gender: str | None,
             with_joints: bool, mirror: bool, dry_run: bool = False, definition: str = "trimo") -> list[dict]:
    npz = _find(Path(amass_root), source)
    fps, frames = probe_amass_npz(npz)
    features, joints = amass_motion(npz, body_model_dir, gender, dry_run=dry_run, definition=definition)
    sample = source_sample(source, features, fps, -(-frames // int(fps / FPS)), joints if with_joints else None)
    if sample is None:
        return []
    return [sample, mirror_sample(sample)] if mirror else [sample]


def _find(amass_root: Path, source: Source) -> Path:
    path = amass_root / source.amass_path
    if not path.is_file():
        raise MotionImportError(f"{path}: AMASS source of {source.path} not found; pass --amass-root the folder "
                                "HumanML3D's raw_pose_processing read (amass_data)", reason="amass_file_missing")
    return path


def restore_samples(sources: list[Source], amass_root: str | Path, body_model_dir: str | Path, *,
                    gender: str | None = None, with_joints: bool = False, mirror: bool = True,
                    num_workers: int = 0, dry_run: bool = False, definition: str = "trimo") -> Iterator[dict]:
    convert = partial(_convert, amass_root=str(amass_root), body_model_dir=str(body_model_dir), gender=gender,
                      with_joints=with_joints, mirror=mirror, dry_run=dry_run, definition=definition)
    return convert_all(sources, convert, num_workers)
