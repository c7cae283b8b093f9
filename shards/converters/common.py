"""What every dataset converter shares (tools/convert_*.py): released datasets -> shard sets.

Every converter turns its source into schema-v1 sample dicts (shards.schema) and hands them to
`write_dataset`, which writes one shard set per split (`<out>/<split>/shards.json`, because a
ShardDataset reads a whole set) and:
- applies the length filter at write time: a caption whose span is not `min_frames..max_frames`
  feature frames (the reader's crop rule, shards.schema.caption_frames) is dropped, and a clip
  left without captions is dropped; by default only train/val are filtered (HumanML3D loaders keep
  40..200 frames for training; TMR keeps every length at test). Localization samples (moments,
  no texts) are filtered on the whole motion. Drops are counted in the index's `extra`;
- computes the feature statistics from the train split only and stores them in every split's
  index, so val/test are normalized with the training statistics.
Captions get their events from motion.events.decompose (CAR); keys are cleaned to the schema's
charset (letters, digits, '_', '-', '/').
"""
from __future__ import annotations

import multiprocessing
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motion.events import decompose
from motion.importers.common import MotionImportError
from motion.mirror import mirror_features, mirror_joints, swap_left_right
from motion.features import joints_to_features
from configs.schema import MAX_FRAMES, MIN_FRAMES
from shards.schema import ShardError, ShardIndex, caption_frames, length_ok, stats_to_json
from shards.writer import compute_feature_stats, write_shards

FPS = 20.0
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]+")


def clean_key(*parts: str) -> str:
    """Join path parts into a schema-valid key: other characters (dots included) become '_'."""
    cleaned = [_BAD_KEY_CHARS.sub("_", str(p)).strip("_") for part in parts for p in str(part).split("/")]
    cleaned = [p for p in cleaned if p]
    if not cleaned:
        raise ShardError(f"cannot make a sample key from {parts!r}: no letters or digits", "bad_key")
    return "/".join(cleaned)


def mirrored_key(key: str) -> str:
    """The key of a mirrored copy: `M` prefix on the last path part (HumanML3D's convention)."""
    head, _, last = key.rpartition("/")
    return f"{head}/M{last}" if head else f"M{key}"


def caption(text: str, start: float | None = None, end: float | None = None, events: bool = True) -> dict:
    """A meta.texts entry; `events` stores the caption's event sentences from the rule-based
    decomposer (motion.events): the one place a converted caption is decomposed."""
    text = " ".join(text.split())
    return {"text": text, "events": decompose(text).sentences if events and text else None,
            "start": None if start is None else float(start), "end": None if end is None else float(end)}


def make_sample(key: str, motion: np.ndarray, *, dataset: str, split: str, source: str, mirrored: bool,
                texts: list[dict], moments: list[dict] | None = None, joints: np.ndarray | None = None,
                fps: float = FPS, **extra_meta: Any) -> dict:
    """A schema-v1 sample dict {key, motion, meta, joints?} with duration = feature frames / fps."""
    motion = np.asarray(motion, dtype=np.float32)
    meta = {"dataset": dataset, "split": split, "fps": float(fps), "duration": len(motion) / fps,
            "mirrored": bool(mirrored), "source": str(source), "texts": texts, **extra_meta}
    if moments is not None:
        meta["moments"] = moments
    sample = {"key": key, "motion": motion, "meta": meta}
    if joints is not None:
        sample["joints"] = np.asarray(joints, dtype=np.float32)
    return sample


def amass_motion(npz_path: str | Path, body_model_dir: str | Path, gender: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A whole AMASS sequence -> (features (T-1, 263), canonical joints (T, 22, 3)) at 20 fps, via smplx."""
    from motion.importers.amass import load_amass_npz

    motion = load_amass_npz(npz_path, body_model_dir, gender)
    joints = motion.to_canonical()
    return joints_to_features(joints, source=str(npz_path)), joints


def mirror_sample(sample: dict, key: str | None = None) -> dict:
    """The left/right mirrored copy: features and joints mirrored, captions and moments swapped."""
    meta = dict(sample["meta"], mirrored=True)
    meta["texts"] = [caption(swap_left_right(t["text"]), t["start"], t["end"], t["events"] is not None)
                     for t in meta["texts"]]
    if "moments" in meta:
        meta["moments"] = [dict(m, text=swap_left_right(m["text"])) for m in meta["moments"]]
    out = {"key": key or mirrored_key(sample["key"]), "motion": mirror_features(sample["motion"]), "meta": meta}
    if sample.get("joints") is not None:
        out["joints"] = mirror_joints(sample["joints"]).astype(np.float32)
    return out


@dataclass
class LengthFilter:
    """Keep captions whose span has min_frames..max_frames feature frames (None = no bound), in `splits`."""

    min_frames: int | None = MIN_FRAMES
    max_frames: int | None = MAX_FRAMES
    splits: tuple[str, ...] = ("train", "val")

    def ok(self, n: int) -> bool:
        return length_ok(n, self.min_frames, self.max_frames)

    def apply(self, sample: dict, counter: Counter) -> dict | None:
        """The sample with out-of-range captions removed, or None (counted in `counter`)."""
        meta = sample["meta"]
        if meta["split"] not in self.splits:
            return sample
        frames, fps = len(sample["motion"]), float(meta["fps"])
        if not meta["texts"]:  # a localization sample: the whole motion is what the model sees
            if self.ok(frames):
                return sample
            counter["motion_length"] += 1
            return None
        kept = [t for t in meta["texts"] if self.ok(_span_length(t, frames, fps))]
        counter["caption_length"] += len(meta["texts"]) - len(kept)
        if not kept:
            counter["no_caption_left"] += 1
            return None
        return dict(sample, meta=dict(meta, texts=kept))


def _span_length(text: dict, frames: int, fps: float) -> int:
    first, stop = caption_frames(text, frames, fps)
    return stop - first


def convert_all(items: Iterable[Any], convert: Callable[[Any], list[dict]], num_workers: int = 0) -> Iterator[dict]:
    """Samples from `convert(item)` (a list each: e.g. a clip and its mirrored copy), in item order.

    With num_workers > 0 `convert` runs in forked processes (it must be a module-level function or
    a functools.partial of one); the order, and so the shards, do not depend on the worker count.
    """
    if num_workers <= 0:
        for item in items:
            yield from convert(item)
        return
    with multiprocessing.get_context("fork").Pool(num_workers) as pool:
        for samples in pool.imap(convert, items, chunksize=2):
            yield from samples


def write_dataset(samples_by_split: Mapping[str, Iterable[dict]], out_dir: str, *, dataset: str,
                  length_filter: LengthFilter | None = None, stats_split: str = "train",
                  stats_convention: str = "per_dim", maxcount: int = 1000, command: str | None = None,
                  extra: dict | None = None) -> dict[str, ShardIndex]:
    """Write each split to `out_dir/<split>/` and return the indices; the stats split goes first.

    A split whose samples are all filtered out is left out (with a note on stdout).
    """
    order = sorted(samples_by_split, key=lambda s: s != stats_split)
    indices: dict[str, ShardIndex] = {}
    stats = None
    for split in order:
        counter: Counter = Counter()
        samples = _filtered(samples_by_split[split], length_filter, counter)
        first = next(samples, None)
        if first is None:
            print(f"{dataset}: split {split!r} has no samples left after filtering ({dict(counter)}); not written")
            continue
        split_dir = os.path.join(out_dir, split)
        info = {"dataset": dataset, "split": split, "stats_split": stats_split,
                "length_filter": asdict(length_filter) if length_filter else None, **(extra or {})}
        index = write_shards(_chain(first, samples), split_dir, maxcount=maxcount, stats_convention=None,
                             command=command, extra=info)
        index.extra["dropped"] = dict(counter)
        if split == stats_split:
            urls = [os.path.join(split_dir, e.name) for e in index.shards]
            stats = stats_to_json(compute_feature_stats(urls, convention=stats_convention,
                                                        name=f"{dataset}/{split}"))
        index.feature_stats = stats
        index.save(index.location)
        indices[split] = index
    if stats is None:
        print(f"{dataset}: no {stats_split!r} split written, so the indices carry no feature statistics")
    return indices


def _filtered(samples: Iterable[dict], length_filter: LengthFilter | None, counter: Counter) -> Iterator[dict]:
    for sample in samples:
        meta = sample["meta"]
        if not any(t["text"].strip() for t in meta["texts"]) and not meta.get("moments"):
            counter["no_caption"] += 1  # the schema rejects a sample that nothing describes
            continue
        kept = length_filter.apply(sample, counter) if length_filter else sample
        if kept is not None:
            yield kept


def _chain(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest


# ----------------------------------------------------------------------------- CLI pieces

def add_write_args(parser, min_frames: int | None = MIN_FRAMES, max_frames: int | None = MAX_FRAMES) -> None:
    """The output options every tools/convert_<dataset>.py shares."""
    parser.add_argument("-o", "--out", required=True, help="output folder; each split goes to OUT/<split>/")
    parser.add_argument("--min-frames", type=_optional_int, default=min_frames,
                        help="shortest caption span kept, in 20 fps feature frames "
                             f"('none' = no bound; default {min_frames})")
    parser.add_argument("--max-frames", type=_optional_int, default=max_frames,
                        help=f"longest caption span kept ('none' = no bound; default {max_frames})")
    parser.add_argument("--filter-splits", default="train,val",
                        help="comma-separated splits the length filter applies to "
                             "(default train,val; TMR keeps every length at test)")
    parser.add_argument("--stats-convention", default="per_dim", choices=("per_dim", "humanml3d_group"),
                        help="feature statistics from the train split: per_dim (TMR) or humanml3d_group")
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard")
    parser.add_argument("--workers", type=int, default=0, help="conversion processes")
    parser.add_argument("--with-joints", action="store_true", help="also store joints.npy (T, 22, 3)")


def write_options(args) -> dict:
    """write_dataset's keyword arguments from the add_write_args options."""
    length_filter = None
    if args.min_frames is not None or args.max_frames is not None:
        length_filter = LengthFilter(args.min_frames, args.max_frames,
                                     tuple(s for s in args.filter_splits.split(",") if s))
    return {"length_filter": length_filter, "stats_convention": args.stats_convention, "maxcount": args.maxcount}


def run_converter(tool: str, write: Callable[[], dict[str, ShardIndex]]) -> int:
    """A converter CLI's body: `write()` the splits and print a line per split; a bad input ends
    with one line on stderr (the importers name the file and the fix) and exit status 1."""
    try:
        indices = write()
    except (MotionImportError, ValueError) as err:
        print(f"{tool}: {err}", file=sys.stderr)
        return 1
    for split, index in indices.items():
        print(f"{split}: {index.total} samples in {len(index.shards)} shard(s) -> {index.location}"
              + (f"; dropped {index.extra['dropped']}" if index.extra.get("dropped") else ""))
    return 0


def _optional_int(value: str) -> int | None:
    return None if value.lower() == "none" else int(value)
