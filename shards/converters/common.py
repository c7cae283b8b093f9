"""What every dataset converter shares (tools/convert_*.py): released datasets -> shard sets.

Every converter turns its source into schema-v1 sample dicts (shards.schema) and hands them to
`write_dataset`, which writes one shard set per split (`<out>/<split>/shards.json`, because a
ShardDataset reads a whole set) and:
- applies the length filter at write time: a caption whose span is not `min_frames..max_frames`
  feature frames (the reader's crop rule, shards.schema.caption_frames) is dropped, and a clip
  left without captions is dropped; by default only train/val are filtered (HumanML3D loaders keep
  40 to 199 frames for training; TMR keeps every length at test). Localization samples (moments,
  no texts) are filtered on the whole motion. Drops are counted in the index's `extra`;
- computes the feature statistics from the train split only and stores them in every split's
  index, so val/test are normalized with the training statistics;
- skips, rather than fails on, what a release gets wrong: a converter yields a `Skipped` (reason +
  one line naming the file) for a bad sample or caption line, `convert_all` turns an importer's
  error on one item into one, and the counts by reason (with the first lines) go into the index and
  the final report. A run fails only when nothing converts;
- `--dry-run` reads the whole release with the expensive steps (body model, features) replaced by
  cheap checks, and reports what would be converted, dropped and skipped, without writing.
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
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from motion.events import decompose
from motion.importers.common import MotionImportError
from motion.mirror import mirror_features, mirror_joints, swap_left_right
from motion.features import MOTION_FEATURES, MotionError, features_to_joints, joints_to_features
from configs.schema import MAX_FRAMES, MIN_FRAMES
from shards.schema import ShardError, caption_frames, length_ok, stats_to_json
from shards.writer import compute_feature_stats, write_shards

FPS = 20.0
SKIP_LINES_KEPT = 50   # skip lines listed in an index (all are counted)
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class Skipped:
    """A source sample or caption line left out of a conversion: `reason` is the category counted
    in the index, `detail` one line naming the file and the problem."""

    reason: str
    detail: str


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
    """A sample dict {key, motion, meta, joints?} with duration = feature frames / fps; a motion with
    NaN or inf values is refused (MotionImportError, so the conversion skips it)."""
    motion = np.asarray(motion, dtype=np.float32)
    if not np.isfinite(motion).all():
        raise MotionImportError(f"sample {key}: motion features contain NaN/inf; the source is broken "
                                "(regenerate it or leave it out)", reason="nonfinite_motion")
    meta = {"dataset": dataset, "split": split, "fps": float(fps), "duration": len(motion) / fps,
            "mirrored": bool(mirrored), "source": str(source), "texts": texts, **extra_meta}
    if moments is not None:
        meta["moments"] = moments
    sample = {"key": key, "motion": motion, "meta": meta}
    if joints is not None:
        sample["joints"] = np.asarray(joints, dtype=np.float32)
    return sample


def amass_motion(npz_path: str | Path, body_model_dir: str | Path, gender: str | None = None,
                 dry_run: bool = False, definition: str = "trimo") -> tuple[np.ndarray, np.ndarray | None]:
    """A whole AMASS sequence -> (features (T-1, 263) of `definition`, canonical joints (T, 22, 3))
    at 20 fps, via smplx. `dry_run`: the file is only checked, and the features are zeros of the
    right length."""
    from motion.importers.amass import frames_at, load_amass_npz, probe_amass_npz

    if dry_run:
        return np.zeros((frames_at(*probe_amass_npz(npz_path)) - 1, 263), np.float32), None
    motion = load_amass_npz(npz_path, body_model_dir, gender)
    joints = motion.to_canonical()
    return joints_to_features(joints, source=str(npz_path), definition=definition), joints


def refeature_sample(sample: dict, definition: str) -> dict:
    """The sample with its features recomputed in another 263-d definition: from its stored
    joints (T+1 frames: the same length) when it has them, else from `features_to_joints` of its
    features (one frame shorter, and as exact as that reconstruction)."""
    joints = sample.get("joints")
    if joints is None or len(joints) != len(sample["motion"]) + 1:
        joints = features_to_joints(sample["motion"].astype(np.float64))
    motion = joints_to_features(joints, source=sample["key"], definition=definition)
    meta = dict(sample["meta"], duration=len(motion) / float(sample["meta"]["fps"]))
    return dict(sample, motion=motion, meta=meta)


def mirror_sample(sample: dict, key: str | None = None) -> dict:
    """The left/right mirrored copy: features and joints mirrored, captions and moments swapped
    (the features of either definition mirror as features: tests/motion check both)."""
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
        if len(kept) < len(meta["texts"]):
            counter["caption_length"] += len(meta["texts"]) - len(kept)
        if not kept:
            counter["no_caption_left"] += 1
            return None
        return dict(sample, meta=dict(meta, texts=kept))


def _span_length(text: dict, frames: int, fps: float) -> int:
    first, stop = caption_frames(text, frames, fps)
    return stop - first


def convert_all(items: Iterable[Any], convert: Callable[[Any], list], num_workers: int = 0
                ) -> Iterator[dict | Skipped]:
    """Samples (and Skipped entries) from `convert(item)` (a list each: e.g. a clip and its mirrored
    copy), in item order. An importer's error on one item (MotionImportError, a bad file) becomes
    one Skipped entry with the error's reason instead of ending the conversion.

    With num_workers > 0 `convert` runs in forked processes (it must be a module-level function or
    a functools.partial of one); the order, and so the shards, do not depend on the worker count.
    """
    guarded = partial(_guarded, convert)
    if num_workers <= 0:
        for item in items:
            yield from guarded(item)
        return
    with multiprocessing.get_context("fork").Pool(num_workers) as pool:
        for samples in pool.imap(guarded, items, chunksize=2):
            yield from samples


def _guarded(convert: Callable[[Any], list], item: Any) -> list:
    try:
        return convert(item)
    except (MotionError, ShardError, OSError) as err:
        return [Skipped(getattr(err, "reason", None) or type(err).__name__, " ".join(str(err).split()))]


@dataclass
class SplitReport:
    """What a conversion did with one split: samples written (or, in a dry run, that would be),
    drops by the length filter and skips by reason, with the first skip lines."""

    converted: int = 0
    dropped: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    skip_lines: list[str] = field(default_factory=list)


def write_dataset(samples_by_split: Mapping[str, Iterable[dict | Skipped]], out_dir: str, *, dataset: str,
                  length_filter: LengthFilter | None = None, stats_split: str = "train",
                  stats_convention: str = "per_dim", maxcount: int = 1000, command: str | None = None,
                  extra: dict | None = None, dry_run: bool = False,
                  motion_features: str = "trimo") -> dict[str, SplitReport]:
    """Write each split to `out_dir/<split>/` (the stats split first) and report on each.

    A split whose samples are all filtered out or skipped is not written (its report says why);
    `dry_run` goes through every sample, filters and skips included, and writes nothing;
    `motion_features` is recorded in every index (which 263-d definition the motions follow).
    """
    order = sorted(samples_by_split, key=lambda s: s != stats_split)
    reports: dict[str, SplitReport] = {}
    stats = None
    for split in order:
        report = reports[split] = SplitReport()
        samples = _filtered(samples_by_split[split], length_filter, report, f"{dataset}/{split}")
        if dry_run:
            report.converted = sum(1 for _ in samples)
            continue
        first = next(samples, None)
        if first is None:
            continue
        split_dir = os.path.join(out_dir, split)
        info = {"dataset": dataset, "split": split, "stats_split": stats_split,
                "length_filter": asdict(length_filter) if length_filter else None, **(extra or {})}
        index = write_shards(_chain(first, samples), split_dir, maxcount=maxcount, stats_convention=None,
                             command=command, extra=info, motion_features=motion_features)
        report.converted = index.total
        index.extra.update(dropped=dict(report.dropped), skipped=dict(report.skipped), skip_lines=report.skip_lines)
        if split == stats_split:
            urls = [os.path.join(split_dir, e.name) for e in index.shards]
            stats = stats_to_json(compute_feature_stats(urls, convention=stats_convention,
                                                        name=f"{dataset}/{split}"))
        index.feature_stats = stats
        index.save(index.location)
    if stats is None and not dry_run and any(r.converted for r in reports.values()):
        print(f"{dataset}: no {stats_split!r} split written, so the indices carry no feature statistics")
    return reports


def write_one_set(samples: Iterable[dict | Skipped], out_dir: str, *, dataset: str, motion_features: str = "trimo",
                  stats_split: str = "train", stats_convention: str = "per_dim", convert: Callable | None = None,
                  num_workers: int = 0, maxcount: int = 1000, command: str | None = None, extra: dict | None = None,
                  dry_run: bool = False) -> SplitReport:
    """All splits in one shard set `out_dir/shards.json` (per-split counts in the index), skips
    counted as in write_dataset, feature statistics from the `stats_split` samples only.
    `convert` (picklable, run in `num_workers` processes) finishes each sample, e.g. renders it."""
    report = SplitReport()
    samples = _filtered(samples, None, report, dataset)
    if dry_run:
        report.converted = sum(1 for _ in samples)
        return report
    first = next(samples, None)
    if first is None:
        return report
    index = write_shards(_chain(first, samples), out_dir, convert=convert, num_workers=num_workers, maxcount=maxcount,
                         stats_convention=None, command=command, motion_features=motion_features,
                         extra={"dataset": dataset, "stats_split": stats_split, **(extra or {})})
    report.converted = index.total
    if any(e.splits.get(stats_split) for e in index.shards):
        index.feature_stats = stats_to_json(compute_feature_stats(
            [os.path.join(out_dir, e.name) for e in index.shards], convention=stats_convention,
            name=f"{dataset}/{stats_split}", split=stats_split))
    else:
        print(f"{dataset}: no {stats_split!r} sample, so the index carries no feature statistics")
    index.extra.update(skipped=dict(report.skipped), skip_lines=report.skip_lines)
    index.save(index.location)
    return report


def _filtered(samples: Iterable[dict | Skipped], length_filter: LengthFilter | None, report: SplitReport,
              where: str) -> Iterator[dict]:
    for sample in samples:
        if isinstance(sample, Skipped):
            report.skipped[sample.reason] += 1
            if len(report.skip_lines) < SKIP_LINES_KEPT:
                report.skip_lines.append(sample.detail)
            print(f"{where}: skipped ({sample.reason}): {sample.detail}", file=sys.stderr, flush=True)
            continue
        meta = sample["meta"]
        if not any(t["text"].strip() for t in meta["texts"]) and not meta.get("moments"):
            report.dropped["no_caption"] += 1  # the schema rejects a sample that nothing describes
            continue
        kept = length_filter.apply(sample, report.dropped) if length_filter else sample
        if kept is not None:
            yield kept


def _chain(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest


# ----------------------------------------------------------------------------- CLI pieces

def add_write_args(parser, min_frames: int | None = MIN_FRAMES, max_frames: int | None = MAX_FRAMES,
                   features: bool = True) -> None:
    """The output options every tools/convert_<dataset>.py shares (`features`: add --features,
    the 263-d definition computed from joints)."""
    if features:
        parser.add_argument("--features", choices=MOTION_FEATURES, default="trimo",
                            help="263-d definition to compute: trimo (heading-invariant, exactly mirrorable; "
                                 "mixes with every trimo source) or humanml3d (HumanML3D's released extraction, to "
                                 "use with models trained on the released files); the index records it")
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
    parser.add_argument("--dry-run", action="store_true",
                        help="read the whole release and report what would be converted, dropped and skipped; "
                             "write nothing (the body model and features are replaced by cheap checks)")


def write_options(args) -> dict:
    """write_dataset's keyword arguments from the add_write_args options."""
    length_filter = None
    if args.min_frames is not None or args.max_frames is not None:
        length_filter = LengthFilter(args.min_frames, args.max_frames,
                                     tuple(s for s in args.filter_splits.split(",") if s))
    return {"length_filter": length_filter, "stats_convention": args.stats_convention, "maxcount": args.maxcount,
            "dry_run": args.dry_run}


def run_converter(tool: str, write: Callable[[], dict[str, SplitReport]], out_dir: str, dry_run: bool = False) -> int:
    """A converter CLI's body: `write()` the splits and print a line per split (converted, dropped
    by the length filter, skipped by reason). Exit status 0 when something converted, 1 when
    nothing did or the release itself is unreadable (one line on stderr naming the file and fix)."""
    try:
        reports = write()
    except (MotionImportError, ValueError) as err:
        print(f"{tool}: {err}", file=sys.stderr)
        return 1
    verb = "would convert" if dry_run else "converted"
    for split, report in reports.items():
        where = "" if dry_run or not report.converted else f" -> {os.path.join(out_dir, split)}"
        print(f"{split}: {verb} {report.converted} samples{where}"
              + (f"; dropped {dict(report.dropped)}" if report.dropped else "")
              + (f"; skipped {dict(report.skipped)}" if report.skipped else ""))
    if not any(r.converted for r in reports.values()):
        print(f"{tool}: nothing converted; see the skip reasons above", file=sys.stderr)
        return 1
    return 0


def _optional_int(value: str) -> int | None:
    return None if value.lower() == "none" else int(value)
