"""Build the demo shard sets: `<out>/retrieval/` (with videos) and `<out>/localization/`.

Plans are made in `workers` processes (ordered), captions are assigned in this process (the
leakage rule needs every split's captions), and samples are rendered and written through
shards.writer.write_shards, whose ordered pool keeps the shards byte-identical for a given seed
and any worker count. Feature statistics in each `shards.json` come from the train split only.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from demo.corpus import (
    DEFAULT_GENERATOR, SIZES, ClipPlan, CorpusSize, assign_captions, generator_spec, plan_localization, plan_retrieval,
    render_sample,
)
from shards.schema import INDEX_NAME, stats_to_json
from shards.writer import compute_feature_stats, write_shards

try:
    from tqdm import tqdm
except ImportError:  # tqdm is a dependency, but progress bars must never break a build
    tqdm = None


@dataclass
class SetSummary:
    """What one shard set holds."""

    name: str
    clips: dict[str, int] = field(default_factory=dict)
    captions: int = 0
    moments: int = 0
    hours: float = 0.0
    shards: int = 0
    bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _map(fn: Callable, items: Iterable, workers: int, total: int, desc: str, progress: bool) -> list:
    bar = tqdm(total=total, desc=desc, unit="clip", disable=not progress or tqdm is None) if tqdm else None
    out = []
    if workers > 0:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for result in pool.imap(fn, items, chunksize=8):
                out.append(result)
                bar and bar.update()
    else:
        for item in items:
            out.append(fn(item))
            bar and bar.update()
    bar and bar.close()
    return out


def _counted(plans: list[ClipPlan], desc: str, progress: bool) -> Iterable[ClipPlan]:
    """The plans, with a progress bar advancing as the writer takes them."""
    if tqdm is None or not progress:
        return plans
    return tqdm(plans, desc=desc, unit="clip")


def build_set(name: str, planner: Callable[[int], ClipPlan], count: int, out_dir: str, seed: int, *,
              video: dict | None, workers: int, maxcount: int, progress: bool, command: str | None,
              extra: dict | None = None) -> SetSummary:
    started = time.perf_counter()
    plans = _map(planner, range(count), workers, count, f"{name}: planning", progress)
    plans, dropped = assign_captions(plans, seed)
    index = write_shards(_counted(plans, f"{name}: rendering", progress), out_dir,
                         convert=partial(render_sample, video=video), num_workers=workers, maxcount=maxcount,
                         stats_convention=None, command=command,
                         extra={"dataset": "trimo-demo", "set": name, "seed": seed, "video": video, **(extra or {})})
    # normalization statistics from the train split only, so val/test stay unseen
    urls = [os.path.join(out_dir, entry.name) for entry in index.shards]
    index.feature_stats = stats_to_json(compute_feature_stats(urls, "per_dim", f"trimo-demo {name} train", split="train"))
    index.save(os.path.join(out_dir, INDEX_NAME))
    summary = SetSummary(name, dict(Counter(p.split for p in plans)), dropped=dropped)
    summary.captions = sum(len(p.captions) + sum(len(m.captions) for m in p.moments) for p in plans)
    summary.moments = sum(len(p.moments) for p in plans)
    summary.hours = sum(p.num_frames - 1 for p in plans) / 20.0 / 3600
    summary.shards, summary.bytes = len(index.shards), sum(e.bytes for e in index.shards)
    summary.seconds = time.perf_counter() - started
    return summary


def build_demo(out: str, size: str | CorpusSize = "default", seed: int = 0, video: bool = True,
               video_fps: float = 10.0, video_size: int = 128, video_body: str = "capsule",
               video_backend: str = "auto", workers: int = 2, maxcount: int | None = None,
               progress: bool = True, command: str | None = None, moment_style: str = "context",
               generator: int = DEFAULT_GENERATOR) -> list[SetSummary]:
    """Write both shard sets under `out`; returns their summaries.

    With an OpenGL video backend, call this from a process that has not rendered yet: workers are
    forked, and a forked child cannot open its own EGL context (see render.video)."""
    corpus = SIZES[size] if isinstance(size, str) else size
    if workers > 0:  # one rasterizer thread per worker: with one worker per core, Mesa's llvmpipe threads only contend
        os.environ.setdefault("LP_NUM_THREADS", "1")
    maxcount = maxcount or (8 if corpus.retrieval <= 64 else 256)
    generator_spec(generator)   # an unknown version fails before any work
    # the version is recorded from 2 on: a generator 1 corpus stays byte-identical to the old one
    recorded = {} if generator == 1 else {"generator": generator}
    video_args = ({"fps": video_fps, "size": video_size, "body": video_body, "backend": video_backend}
                  if video else None)
    return [
        build_set("retrieval", partial(plan_retrieval, seed=seed, generator=generator), corpus.retrieval,
                  os.path.join(out, "retrieval"), seed, video=video_args, workers=workers, maxcount=maxcount,
                  progress=progress, command=command, extra=recorded),
        build_set("localization", partial(plan_localization, seed=seed, seconds=corpus.localization_seconds,
                                          moment_style=moment_style, generator=generator),
                  corpus.localization, os.path.join(out, "localization"), seed, video=None, workers=workers,
                  maxcount=max(4, maxcount // 4), progress=progress, command=command,
                  extra={**recorded, **({"moments": moment_style} if moment_style == "context" else {})}),
    ]

