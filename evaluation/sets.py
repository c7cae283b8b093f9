"""Test sets in memory: every sample of a shard set read once, as training's reader reads it.

Retrieval items keep their first caption and its stored events; localization queries keep their
moments, shifted into the motion as read (`shards.schema.moment_in_crop`, the rule training uses).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shards.reader import ShardDataset, ShardLoader
from shards.schema import ShardIndex, moment_in_crop


@dataclass
class RetrievalSet:
    """One entry per test item: its first caption, raw motion and joints (when stored).

    Videos are not kept in memory (a full test set of 224 px clips takes gigabytes): `iter_videos`
    streams them from `source` again when the video protocols run; `video` holds the reader
    options for that (None: no video protocols).
    """

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    events: list[list[str] | None] = field(default_factory=list)
    motions: list[np.ndarray] = field(default_factory=list)
    joints: list[np.ndarray | None] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    source: str = ""
    split: str | None = None
    reader_options: dict[str, Any] = field(default_factory=dict)
    video: dict[str, Any] | None = None
    index: ShardIndex | None = None     # the shard set's index (motion_features, statistics)


@dataclass
class LocalizationSet:
    """Untrimmed motions and their queries: query q asks for `spans[q]` (seconds) in motion `motion[q]`."""

    ids: list[str] = field(default_factory=list)
    motions: list[np.ndarray] = field(default_factory=list)
    fps: list[float] = field(default_factory=list)
    joints: list[np.ndarray | None] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    motion: list[int] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    kinds: list[str | None] = field(default_factory=list)   # meta.moments[].kind, None where absent
    skipped: dict[str, int] = field(default_factory=dict)
    index: ShardIndex | None = None     # the shard set's index (motion_features, statistics)

    def duration(self, m: int) -> float:
        return len(self.motions[m]) / self.fps[m]


def _iter_samples(shards: str, skipped: dict[str, int] | None = None, split: str | None = None, out=None,
                  rank: int = 0, world: int = 1, num_workers: int = 0, **kw):
    """Every sample of a shard set once, in index order (evaluation mode: first caption), keeping
    only `meta.split == split` when given; the reader's skip counts are added to `skipped`, and
    the set's index is put in `out.index`. With `world` > 1, only this rank's contiguous share;
    `num_workers` reader processes decode ahead."""
    if not shards.startswith(("pipe:", "http:", "https:")) and "{" not in shards and not Path(shards).exists():
        raise FileNotFoundError(f"shard set {shards!r} does not exist; pass the folder holding shards.json "
                                "or the shards.json file")
    ds = ShardDataset(shards, training=False, rank=rank, world_size=world, fill_skipped=False, uneven="pad",
                      split=split, **kw)
    if out is not None:
        out.index = ds.index
    loader = ShardLoader(ds, batch_size=64 if num_workers == 0 else 8, num_workers=num_workers, collate_fn=list)
    for batch in loader:
        yield from (s for s in batch if not s.get("repeat"))
    if skipped is not None:
        skipped.update(loader.skipped)


def read_retrieval_set(shards: str, *, load_video: bool = True, min_frames: int | None = None,
                       max_frames: int | None = None, video_frames: int = 8, video_size: int = 224,
                       split: str | None = None) -> RetrievalSet:
    options = {"min_frames": min_frames, "max_frames": max_frames}
    out = RetrievalSet(source=shards, reader_options=options, split=split,
                       video={"num_video_frames": video_frames, "video_size": video_size} if load_video else None)
    for s in _iter_samples(shards, out.skipped, split, out, load_video=False, **options):
        if not s["text"]:
            out.skipped["no_caption"] = out.skipped.get("no_caption", 0) + 1
            continue
        out.ids.append(s["key"])
        out.texts.append(s["text"])
        out.events.append(s["events"])
        out.motions.append(s["motion"])
        out.joints.append(s.get("joints"))
    if not out.ids:
        raise ValueError(f"{shards}: no test item with a caption; retrieval shards need meta.texts")
    return out


def iter_videos(data: RetrievalSet, rank: int = 0, world: int = 1, num_workers: int = 0):
    """(item index, uint8 video (l_v, 3, H, W)) for the items of `data` that have a video, streamed
    from its shards with the same reader options (so the same caption crop). With `world` > 1,
    the items of this rank's share of the shards only (every video is decoded by one rank);
    `num_workers` reader processes decode while the caller embeds."""
    if data.video is None:
        return
    where = {key: i for i, key in enumerate(data.ids)}
    for s in _iter_samples(data.source, None, data.split, rank=rank, world=world, num_workers=num_workers,
                           load_joints=False, **data.reader_options, **data.video):
        if s["key"] in where and "video" in s:
            yield where[s["key"]], s["video"]


def read_localization_set(shards: str, *, min_frames: int | None = None, max_frames: int | None = None,
                          split: str | None = None) -> LocalizationSet:
    out = LocalizationSet()
    for s in _iter_samples(shards, out.skipped, split, out, load_video=False, min_frames=min_frames, max_frames=max_frames,
                           crop_to_caption=False):
        fps = float(s["meta"]["fps"])
        offset, duration = s["span"][0] / fps, len(s["motion"]) / fps
        queries = [(m["text"], *inside, m.get("kind")) for m in s["moments"] if m["text"].strip()
                   and (inside := moment_in_crop(m, offset, duration, fps)) is not None]
        if not queries:
            out.skipped["no_moment"] = out.skipped.get("no_moment", 0) + 1
            continue
        index = len(out.ids)
        out.ids.append(s["key"])
        out.motions.append(s["motion"])
        out.fps.append(fps)
        out.joints.append(s.get("joints"))
        for text, start, end, kind in queries:
            out.texts.append(text)
            out.motion.append(index)
            out.spans.append((start, end))
            out.kinds.append(kind)
    if not out.texts:
        raise ValueError(f"{shards}: no localization query; localization shards need "
                         "meta.moments [{text, start, end}]")
    return out
