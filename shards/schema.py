"""The trimo shard format, version 2: one WebDataset sample per motion clip, plus an index.

A shard is a plain (uncompressed) tar written by webdataset's ShardWriter. A sample is the group
of members sharing a key `<key>.<ext>`; only these extensions exist (anything else in a shard is
ignored by the reader and never decoded, so pickles such as `.pyd` / `.pickle` are harmless):

  motion.npy   required  float32 (T, 263) HumanML3D features at `meta.fps` (20) fps, saved
                         without pickle (read back with np.load(..., allow_pickle=False))
  joints.npy   optional  float32 (Tj, 22, 3) joint positions in metres, Y up; Tj is T or T+1
                         (the features lose one frame to velocities)
  video.mp4    optional  H.264 (yuv420p) rendering of the same motion, any size and frame rate
  meta.json    required  UTF-8 JSON object:
      dataset: str, split: str, fps: float (frame rate of motion.npy), duration: float seconds,
      mirrored: bool, source: str (id of the raw clip),
      texts: [{text: str, events: [str] | null, start: float | null, end: float | null}, ...]
             start/end in seconds inside this clip; null (or 0/0) means the whole clip;
             events: the caption's event sentences in temporal order ("a person walks
             forward"), null when not decomposed (then no chronological negative is made),
      moments (localization samples only): [{text: str, start: float, end: float, kind?: str}, ...] inside
             the untrimmed motion; the optional kind labels the query's form (the demo corpus:
             plain, compound, neighbour, ordinal) and evaluation reports each kind apart.
  Keys: letters, digits, `_`, `-` and `/` (no dots: WebDataset splits the member name at the
  first dot); mirrored clips carry an `M` prefix on the last path part.

The index `shards.json` beside the shards (`ShardIndex`) records the schema version, which 263-d
feature definition the motions follow (`motion_features`: "trimo" or "humanml3d"), per-shard
sample counts (in all and per meta.split), bytes and frames, the feature statistics
(motion.features.FeatureStats, inline as lists, so the index alone gives normalization), and the
command that wrote the set.
"""
from __future__ import annotations

import io
import json
import math
import re
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from motion.features import MOTION_FEATURES

SCHEMA_NAME = "trimo-shards"
# 2: meta.texts[].events hold sentences with the subject (version 1: phrases without it), and
# the index says which feature definition the motions follow (`motion_features`).
SCHEMA_VERSION = 2
FEATURE_DIM = 263
NUM_JOINTS = 22
MEMBERS = ("motion.npy", "joints.npy", "video.mp4", "meta.json")
REQUIRED_MEMBERS = ("motion.npy", "meta.json")
INDEX_NAME = "shards.json"
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)*$")


class ShardError(ValueError):
    """A bad sample or shard; `reason` is a short category used by the reader's skip counter."""

    def __init__(self, message: str, reason: str = "bad_sample"):
        super().__init__(message)
        self.reason = reason


# ----------------------------------------------------------------------------- one sample

def encode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Turn {key, motion, meta, joints?, video?} into the bytes members ShardWriter writes.

    `video` must already be mp4 bytes (see shards.video_io.encode_mp4).
    """
    validate_sample(sample)
    out: dict[str, Any] = {"__key__": sample["key"], "motion.npy": _npy_bytes(sample["motion"]),
                           "meta.json": json.dumps(sample["meta"], sort_keys=True, ensure_ascii=False).encode()}
    if sample.get("joints") is not None:
        out["joints.npy"] = _npy_bytes(sample["joints"])
    if sample.get("video") is not None:
        out["video.mp4"] = bytes(sample["video"])
    return out


def decode_sample(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Decode the whitelisted members of a raw WebDataset sample (member name -> bytes).

    Returns ({key, motion, meta, joints?, video? (still mp4 bytes), url}, ignored member names).
    Raises ShardError with a reason for anything undecodable; never unpickles.
    """
    key = str(raw.get("__key__"))
    where = f"sample {key!r} in {raw.get('__url__', '?')}"
    ignored = [name for name in raw if not name.startswith("__") and name not in MEMBERS]
    missing = [name for name in REQUIRED_MEMBERS if name not in raw]
    if missing:
        raise ShardError(f"{where}: missing member(s) {missing}; rewrite the shard with shards.writer", "missing_field")
    out: dict[str, Any] = {"key": key, "url": raw.get("__url__")}
    out["motion"] = load_npy_bytes(raw["motion.npy"], f"{where}: motion.npy")
    if "joints.npy" in raw:
        out["joints"] = load_npy_bytes(raw["joints.npy"], f"{where}: joints.npy")
    try:
        out["meta"] = json.loads(bytes(raw["meta.json"]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardError(f"{where}: meta.json is not valid UTF-8 JSON ({err})", "bad_json") from None
    if "video.mp4" in raw:
        out["video"] = bytes(raw["video.mp4"])
    return out, ignored


def validate_sample(sample: dict[str, Any]) -> None:
    """Check a decoded sample against schema v1; raise ShardError(reason) naming the sample."""
    key = sample.get("key")
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ShardError(f"sample key {key!r}: use letters, digits, '_', '-' and '/' only (no dots)", "bad_key")
    where = f"sample {key!r}" + (f" in {sample['url']}" if sample.get("url") else "")
    motion = sample.get("motion")
    if motion is None or sample.get("meta") is None:
        raise ShardError(f"{where}: motion and meta are required", "missing_field")
    _check_array(motion, (FEATURE_DIM,), f"{where}: motion", "(T, 263) float features")
    joints = sample.get("joints")
    if joints is not None:
        _check_array(joints, (NUM_JOINTS, 3), f"{where}: joints", "(T, 22, 3) float positions")
        if len(joints) not in (len(motion), len(motion) + 1):
            raise ShardError(f"{where}: joints have {len(joints)} frames for {len(motion)} feature frames "
                             "(expected T or T+1)", "bad_shape")
    video = sample.get("video")
    if video is not None and (not isinstance(video, (bytes, bytearray, memoryview)) or len(video) == 0):
        raise ShardError(f"{where}: video must be non-empty mp4 bytes", "bad_video")
    validate_meta(sample["meta"], where)


def validate_meta(meta: Any, where: str) -> None:
    """Check meta.json's fields; captions must be non-empty strings, times finite and ordered."""
    if not isinstance(meta, dict):
        raise ShardError(f"{where}: meta.json must be a JSON object", "bad_meta")
    for name, kind in (("dataset", str), ("split", str), ("texts", list)):
        if not isinstance(meta.get(name), kind):
            raise ShardError(f"{where}: meta.{name} must be a {kind.__name__}", "missing_field")
    fps = meta.get("fps")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not math.isfinite(fps) or fps <= 0:
        raise ShardError(f"{where}: meta.fps must be a positive number", "missing_field")
    for i, entry in enumerate(meta["texts"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise ShardError(f"{where}: meta.texts[{i}] must be an object with a 'text' string", "bad_meta")
        events = entry.get("events")
        if events is not None and not (isinstance(events, list) and all(isinstance(e, str) for e in events)):
            raise ShardError(f"{where}: meta.texts[{i}].events must be a list of strings or null", "bad_meta")
        _check_span(entry.get("start"), entry.get("end"), f"{where}: meta.texts[{i}]", optional=True)
    moments = meta.get("moments") or []
    if not isinstance(moments, list):
        raise ShardError(f"{where}: meta.moments must be a list", "bad_meta")
    for i, moment in enumerate(moments):
        if not isinstance(moment, dict) or not isinstance(moment.get("text"), str):
            raise ShardError(f"{where}: meta.moments[{i}] must be an object with a 'text' string", "bad_meta")
        _check_span(moment.get("start"), moment.get("end"), f"{where}: meta.moments[{i}]", optional=False)
    has_caption = any(e["text"].strip() for e in meta["texts"]) or any(m["text"].strip() for m in moments)
    if not has_caption:
        raise ShardError(f"{where}: no non-empty caption in meta.texts or meta.moments", "empty_caption")


def _check_span(start: Any, end: Any, where: str, optional: bool) -> None:
    if optional and start is None and end is None:
        return
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ShardError(f"{where}.{name} must be a finite number of seconds", "bad_meta")
    if start < 0 or end < start:
        raise ShardError(f"{where}: span [{start}, {end}] must satisfy 0 <= start <= end", "bad_meta")


def _check_array(arr: Any, tail: tuple[int, ...], where: str, expected: str) -> None:
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 + len(tail) or arr.shape[1:] != tail or len(arr) == 0:
        shape = getattr(arr, "shape", type(arr).__name__)
        raise ShardError(f"{where} has shape {shape}, expected {expected}", "bad_shape")
    if arr.dtype.kind != "f":
        raise ShardError(f"{where} has dtype {arr.dtype}, expected {expected}", "bad_shape")
    if not np.isfinite(arr).all():
        raise ShardError(f"{where} contains NaN/inf; fix or drop the clip before sharding", "nonfinite")


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


# The header np.save writes for a plain numeric array (format 1.0 / 2.0 / 3.0); see load_npy_bytes.
_NPY_HEADER = re.compile(
    rb"\{'descr': '([<>|=][fiub][1248])', 'fortran_order': False, 'shape': \(((?:\d+, ?)*\d*)\), \}")
_NPY_LEN = {1: ("<H", 2), 2: ("<I", 4), 3: ("<I", 4)}


def load_npy_bytes(data: bytes | bytearray | memoryview, where: str) -> np.ndarray:
    """np.load without pickle. Arrays with exactly the header np.save writes for numeric data are
    read with np.frombuffer: numpy's own header parser (ast.literal_eval) cost more than the rest
    of decoding a sample. Anything else, or any size mismatch, goes through np.load."""
    fast = _npy_view(data)
    if fast is not None:
        return fast
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # numpy raises ValueError/OSError/EOFError/... on corrupt headers
        raise ShardError(f"{where} is not a pickle-free .npy array ({type(err).__name__}: {err})", "bad_npy") from None


def _npy_view(data: bytes | bytearray | memoryview) -> np.ndarray | None:
    if len(data) < 10 or data[:6] != b"\x93NUMPY" or data[6] not in _NPY_LEN:
        return None
    fmt, width = _NPY_LEN[data[6]]
    start = 8 + width
    header_len = struct.unpack_from(fmt, data, 8)[0]
    match = _NPY_HEADER.match(data, start, start + header_len)
    if match is None:
        return None
    dtype = np.dtype(match.group(1).decode())
    shape = tuple(int(d) for d in match.group(2).split(b",") if d.strip())
    count = math.prod(shape)
    if len(data) - start - header_len != count * dtype.itemsize:
        return None  # truncated or padded: let np.load judge it
    array = np.frombuffer(data, dtype=dtype, count=count, offset=start + header_len).reshape(shape)
    # callers get a writable array as from np.load: a view of writable memory that nothing else
    # uses (the shard reader's fresh bytearrays, its copy-on-write mapped shards), else a copy
    return array if isinstance(data, (bytearray, memoryview)) and not memoryview(data).readonly else array.copy()


# ----------------------------------------------------------------------------- time spans

def caption_frames(text: dict, frames: int, fps: float) -> tuple[int, int]:
    """The crop rule: a caption's frames [int(start*fps), int(end*fps)) clipped to the clip;
    start/end null or 0/0 = the whole clip. The reader crops with it and the converters' length
    filter measures with it."""
    start, end = text.get("start"), text.get("end")
    if start is None or end is None or (start == 0 and end == 0):
        return 0, frames
    first = min(int(start * fps), frames)
    return first, min(max(int(end * fps), first), frames)


def length_ok(frames: int, min_frames: int | None, max_frames: int | None) -> bool:
    """Whether a span of `frames` feature frames lies in min_frames..max_frames (None = no bound)."""
    return (min_frames is None or frames >= min_frames) and (max_frames is None or frames <= max_frames)


def moment_in_crop(moment: dict, offset_s: float, duration_s: float, fps: float) -> tuple[float, float] | None:
    """A moment (seconds in the untrimmed motion) in the time of a crop starting at `offset_s` and
    lasting `duration_s`, clipped to it; None when less than one frame of it lies inside."""
    start, end = max(moment["start"] - offset_s, 0.0), min(moment["end"] - offset_s, duration_s)
    return (start, end) if end - start >= 1.0 / fps else None


# ----------------------------------------------------------------------------- the index

@dataclass
class ShardEntry:
    """One shard: its file name (relative to the index), sample count, bytes, motion frames, and
    samples per meta.split (empty in indexes written before splits were counted)."""

    name: str
    count: int
    bytes: int = 0
    frames: int = 0
    splits: dict[str, int] = field(default_factory=dict)


@dataclass
class ShardIndex:
    """`shards.json`: what a shard set holds. `location` (not saved) is where it was loaded from."""

    shards: list[ShardEntry]
    command: str = ""
    feature_stats: dict[str, Any] | None = None
    created: str = ""
    schema: str = SCHEMA_NAME
    schema_version: int = SCHEMA_VERSION
    motion_features: str = "trimo"        # which 263-d definition motion.npy follows (MOTION_FEATURES)
    extra: dict[str, Any] = field(default_factory=dict)
    location: str | None = field(default=None, compare=False)

    @property
    def total(self) -> int:
        return sum(s.count for s in self.shards)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("location")
        data["total"] = self.total
        return data

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=1)
            f.write("\n")

    @classmethod
    def from_json(cls, data: Any, location: str | None = None) -> ShardIndex:
        where = location or "shard index"
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
            raise ShardError(f"{where}: not a trimo shard index (schema must be {SCHEMA_NAME!r})", "bad_index")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ShardError(f"{where}: schema version {data.get('schema_version')} is not supported "
                             f"(this trimo reads {SCHEMA_VERSION}); rewrite the shards", "bad_index")
        try:
            shards = [ShardEntry(**s) for s in data["shards"]]
        except (KeyError, TypeError) as err:
            raise ShardError(f"{where}: malformed 'shards' list ({err})", "bad_index") from None
        if any(s.count < 0 for s in shards) or len({s.name for s in shards}) != len(shards):
            raise ShardError(f"{where}: shard names must be unique and counts non-negative", "bad_index")
        if any(s.splits and (min(s.splits.values()) < 0 or sum(s.splits.values()) != s.count) for s in shards):
            raise ShardError(f"{where}: a shard's per-split counts must be non-negative and add up to its count",
                             "bad_index")
        features = data.get("motion_features")
        if features not in MOTION_FEATURES:
            raise ShardError(f"{where}: motion_features={features!r} must be one of {MOTION_FEATURES} (which "
                             "263-d definition the motions follow); rewrite the shards", "bad_index")
        return cls(shards=shards, command=data.get("command", ""), feature_stats=data.get("feature_stats"),
                   created=data.get("created", ""), motion_features=features, extra=data.get("extra", {}),
                   location=location)

    def require_motion_features(self, expected: str, user: str) -> None:
        """Raise (naming both and the fix) unless this set's motions follow `expected` ("" = any)."""
        if expected and self.motion_features != expected:
            redo = "released" if expected == "humanml3d" else "trimo"
            where = self.location or "shard set"
            folder = where.rsplit("/", 1)[0] if where.endswith(INDEX_NAME) else where
            raise ShardError(f"{where} holds {self.motion_features!r} motion features but {user} {expected!r} "
                             f"ones; convert the set (trimo-convert-features {folder} -o OUT --to {expected}), "
                             f"write it again with {expected!r} features (--features {expected} on "
                             f"trimo-make-shards and trimo-convert; trimo-convert-humanml3d --features {redo}), "
                             f"or train a model on {self.motion_features!r} data", "motion_features")

    def stats(self):
        """The stored feature statistics as a motion.features.FeatureStats (None if absent)."""
        if self.feature_stats is None:
            return None
        from motion.features import FeatureStats
        s = self.feature_stats
        return FeatureStats(name=s["name"], convention=s["convention"], mean=np.array(s["mean"]),
                            std=np.array(s["std"]), count=int(s["count"]),
                            group_divisors=tuple(s.get("group_divisors", (1.0,) * 7)))


def stats_to_json(stats) -> dict[str, Any]:
    """A FeatureStats as the JSON-able dict stored in the index."""
    return {"name": stats.name, "convention": stats.convention, "count": int(stats.count),
            "mean": [float(v) for v in stats.mean], "std": [float(v) for v in stats.std],
            "group_divisors": [float(v) for v in stats.group_divisors]}
