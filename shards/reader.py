"""Streaming, resumable reader of trimo shard sets for training and evaluation.

How an epoch is split (all ranks compute the same plan from the index counts, no communication):
1. The shard order of epoch e is a permutation seeded from (seed, e) in training, the index
   order in evaluation. Concatenated, the shards give N global positions (with `split`, only
   the samples whose meta.split is that split have positions, counted by the index per shard).
2. There are S = world_size x num_workers slots (one per DataLoader worker of each rank). Slot
   s = rank * num_workers + worker reads positions [s*q, (s+1)*q), q = ceil(N / S) with
   `uneven="pad"` (positions >= N wrap to the start: a few samples repeat, marked `repeat=True`)
   or q = floor(N / S) with `uneven="drop"` (the last N mod S positions of the epoch's order are
   left out; the shard order changes each epoch, so different ones). When S divides N every
   sample is read exactly once. A slot reads only the shards its range touches.
3. A slot shuffles its raw samples with a buffer seeded from (seed, epoch, rank, worker) and
   decodes them; a bad or length-filtered sample is skipped and counted. Each slot yields exactly
   q samples: with `fill_skipped` it replaces skipped ones by reading on past its range (marked
   `repeat=True`), so every rank yields the same number of batches even when samples are bad,
   and a collective never waits on a rank that ran short.
4. Resume: the state (`ShardLoader.state_dict()`, JSON-able, a few hundred bytes per worker
   whatever the set's size) is the epoch, the samples consumed per worker, the number of
   DataLoader items received and, per worker, a cursor: the raw items its stream had read, the
   state of its caption-pick generator and its skip counts at that point. A resumed worker
   replays only its shuffle buffer's choices, on item numbers (no reading, about 1 s per
   million items), reads the items that were still in the buffer, and goes on from there; the
   DataLoader's worker rotation restarts at the worker that was due, so the rest is identical
   to an uninterrupted epoch. (A state without cursors, saved by an earlier trimo, replays and
   decodes the consumed samples again, which costs time proportional to the part of the epoch
   already done.) The cursors belong to the rank that saved them: restore each rank from its
   own state. Don't also call accelerate's `skip_first_batches`.
5. Skip counts: a bad sample is counted (by reason, see `ShardLoader.skipped`) once per epoch,
   by the slot whose range holds it; reads for refills and wrapped positions don't count again.
   Each worker stream ends with a marker item that ShardLoader swallows, so skips after a
   worker's last sample are counted too.

Ranks come from the `rank` / `world_size` arguments or, when those are None, from
torch.distributed (if initialized when the dataset is built or iterated in the main process).
Use `ShardLoader` for batches and the state; don't pass it through `accelerator.prepare`, which
would split the already split stream again.

Samples are dicts: key, motion float32 (T, 263) (cropped to the caption's span), joints float32
(Tj, 22, 3) if stored, video uint8 (l_v, 3, H, W) if stored and enabled (convert to float / 255 on the device), text
(among the non-empty captions whose span passes the length filter: a random one in training, the
first in evaluation; None for a localization sample without captions), events, moments, span
(first, stop) frames of the crop, meta, repeat. An untrimmed (localization) motion longer than
max_frames comes as a window of max_frames frames around one of its moments. `collate_samples`
pads them into a batch.
Video is decoded with PyAV by default (`video_backend="decord"` tries decord first; see
shards.video_io for why that is not the default).
"""
from __future__ import annotations

import gc
import glob
import io
import itertools
import json
import logging
import math
import mmap
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.gopen import gopen
from webdataset import shardlists, tariterators

from configs.schema import MAX_FRAMES, MIN_FRAMES
from shards.schema import (INDEX_NAME, ShardEntry, ShardError, ShardIndex, caption_frames, decode_sample, length_ok,
                           validate_sample)
from shards.tar_members import BLOCK, COMPRESSED_MAGIC, is_compressed, iter_tar_buffer, iter_tar_members
from shards.video_io import decode_mp4

log = logging.getLogger("trimo.shards")
LOCAL_SCHEMES = ("", "file", "pipe")  # opened by webdataset.gopen; http(s) by urllib, others by fsspec
HTTP_SCHEMES = ("http", "https")
HTTP_ATTEMPTS = 4  # opening an http shard is retried on connection errors and 5xx answers
HTTP_BUFFER = 1 << 20
# Skip-counter keys: one per reason a sample was left out; "ignored_member" counts unknown tar
# members that were dropped without decoding (their sample is still used).
IGNORED_MEMBER = "ignored_member"
_BASE_PLUS_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's key/extension split


# ----------------------------------------------------------------------------- URLs and raw tar

def expand_urls(spec: str | Sequence[str]) -> list[str]:
    """Brace lists (`shard-{000..009}.tar`), `::`-joined lists and globs -> a list of URLs.

    Globs match local files, or remote ones through fsspec for URLs with a scheme; `pipe:`
    commands are only brace-expanded.
    """
    out: list[str] = []
    for item in [spec] if isinstance(spec, str) else spec:
        for url in shardlists.expand_urls(item):
            if url.startswith("pipe:") or not any(c in url for c in "*?["):
                out.append(url)
                continue
            matches = _glob(url)
            if not matches:
                raise ShardError(f"{url}: the pattern matches no shard; check the path", "bad_url")
            out.extend(matches)
    return out


def _glob(pattern: str) -> list[str]:
    if urlparse(pattern).scheme in ("", "file"):
        return sorted(glob.glob(pattern.removeprefix("file://")))
    import fsspec

    fs, path = fsspec.core.url_to_fs(pattern)
    return sorted(fs.unstrip_protocol(p) for p in fs.glob(path))


def open_url(url: str):
    """A binary stream for a local path, `file:`, `pipe:cmd`, http(s) or any fsspec URL."""
    scheme = urlparse(url).scheme
    if scheme in HTTP_SCHEMES:
        return _open_http(url)
    if scheme in LOCAL_SCHEMES or url.startswith("pipe:"):
        return gopen(url, "rb")
    import fsspec

    return fsspec.open(url, "rb").open()


def _open_http(url: str, timeout: float = 60.0):
    """Stream an http(s) shard in-process through one GET (urllib), read through a 1 MiB buffer.

    In-process instead of webdataset's curl pipe: a pipe costs a process per shard, a copy per
    byte and a waitpid per read. Opening is retried with backoff on connection errors and 5xx
    (a failure mid-stream ends the shard as a read error; restarting a stream cannot resume it).
    """
    import time
    import urllib.error
    import urllib.request

    for attempt in range(HTTP_ATTEMPTS):
        try:
            return io.BufferedReader(urllib.request.urlopen(url, timeout=timeout), HTTP_BUFFER)
        except urllib.error.HTTPError as err:
            if err.code < 500 or attempt == HTTP_ATTEMPTS - 1:
                raise
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if attempt == HTTP_ATTEMPTS - 1:
                raise
        time.sleep(0.5 * 2 ** attempt)
    raise AssertionError("unreachable")


def iter_raw_shard(url: str, errors: list[str] | None = None, members: Sequence[str] | None = None) -> Iterator[dict]:
    """Raw samples ({__key__, __url__, member: bytes, bytearray or memoryview}) of one shard, in stored order.

    Read errors (unreadable URL, truncated or corrupt tar) end the shard; their messages are
    appended to `errors` instead of being raised. `members` limits which members are read into memory.
    Members are grouped into samples as webdataset does (key = name up to the first dot of the
    file name, lower-cased extension; a repeated member of one sample is reported and dropped).
    """
    errors = errors if errors is not None else []

    def note(exn: Exception) -> None:
        detail = exn.strerror if isinstance(exn, OSError) and exn.strerror else exn.args[0] if exn.args else exn
        errors.append(f"{url}: {type(exn).__name__}: {detail}")

    select = None if members is None else (lambda name: name.split(".", 1)[-1] in members)
    sample: dict | None = None
    with closing(_tar_pairs(url, select, note)) as pairs:
        for name, data in pairs:
            match = _BASE_PLUS_EXT.match(name)
            if not match:
                continue
            key, ext = match.group(1), match.group(2).lower()
            if sample is None or key != sample["__key__"]:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": url}
            if ext in sample:
                note(ValueError(f"{name}: duplicate file name in tar file"))
                continue
            sample[ext] = data
    if sample is not None:  # after a read error too, like webdataset: the decoder judges what is there
        yield sample


def _tar_pairs(url: str, select, note) -> Iterator[tuple[str, bytes | bytearray | memoryview]]:
    """(member name, data) until the end or the first error (reported through `note`): from
    the mapped file for a local plain tar, else streamed."""
    stream = None
    try:
        mapped = _map_local(url)
        if mapped is not None:
            yield from iter_tar_buffer(mapped, select)
            return
        stream = open_url(url)
        first = stream.read(BLOCK)
        if is_compressed(first):  # not trimo's format, but tarfile (webdataset's path) reads it
            files = tariterators.tar_file_expander([{"url": url, "stream": _Prepended(first, stream)}],
                                                   handler=lambda exn: note(exn) or False, select_files=select)
            yield from ((f["fname"], f["data"]) for f in files if f)
        else:
            yield from iter_tar_members(stream, select, first)
    except Exception as exn:  # unreadable URL, truncated or corrupt tar: the members so far were delivered
        note(exn)
    finally:
        try:
            if stream is not None:
                stream.close()
        except Exception:  # a pipe closed early exits with SIGPIPE; nothing left to report
            pass


def _map_local(url: str) -> mmap.mmap | bytearray | None:
    """A local plain tar shard mapped copy-on-write (read into memory when small); None for
    anything else (streamed instead).

    Mapped members need no read, allocation or copy: the arrays decoded from them view the page
    cache, and writing to one copies only that page (never the file). The mapping lives as long
    as any view of it. Don't rewrite shards in place under a running reader: a mapped file that
    shrinks makes its readers fail with SIGBUS instead of a read error.
    A mapping also holds a file descriptor for as long as it lives, so a shuffle buffer of
    samples from as many tiny shards held one descriptor each and ran into the open-file limit
    (1,024 by default on many systems; the reads that failed came back as skipped samples).
    Shards up to READ_WHOLE_BYTES are therefore read into a bytearray (one read; members are
    still views of it) and hold no descriptor.
    """
    scheme = urlparse(url).scheme
    if url.startswith("pipe:") or scheme not in ("", "file"):
        return None
    with open(url.removeprefix("file://"), "rb", buffering=0) as f:
        head = f.read(max(map(len, COMPRESSED_MAGIC)))
        if is_compressed(head):
            return None
        size = os.fstat(f.fileno()).st_size
        if size <= READ_WHOLE_BYTES:
            data = bytearray(size)
            data[:len(head)] = head
            view = memoryview(data)
            got = len(head)
            while got < size:
                n = f.readinto(view[got:])
                if not n:  # shrank while read: the tar reader reports the truncation
                    del view
                    del data[got:]
                    break
                got += n
            return data if size else None
        return mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)


READ_WHOLE_BYTES = 1 << 20  # local shards up to this size are read whole instead of mapped


class _Prepended:
    """A read-only stream: `first` bytes, then the rest of `stream`."""

    def __init__(self, first: bytes, stream):
        self.first, self.stream = first, stream

    def read(self, n: int = -1) -> bytes:
        if not self.first:
            return self.stream.read(n)
        head = self.first if n < 0 else self.first[:n]
        self.first = self.first[len(head):]
        rest = self.stream.read(-1 if n < 0 else n - len(head)) if n < 0 or len(head) < n else b""
        return head + rest


def iter_decoded(urls: Sequence[str], members: Sequence[str] | None = None) -> Iterator[dict]:
    """Decoded, validated samples of whole shards in order; raises ShardError on the first bad one."""
    for url in urls:
        errors: list[str] = []
        for raw in iter_raw_shard(url, errors, members):
            sample, _ = decode_sample(raw)
            if members is None:
                validate_sample(sample)
            yield sample
        if errors:
            raise ShardError(f"cannot read shard: {errors[0]}", "tar_error")


def load_index(spec: str | ShardIndex | dict) -> ShardIndex:
    """A ShardIndex from an object, a dict, a `shards.json` path/URL, or the folder holding one."""
    if isinstance(spec, ShardIndex):
        return spec
    if isinstance(spec, dict):
        return ShardIndex.from_json(spec)
    url = spec if spec.endswith(".json") else spec.rstrip("/") + "/" + INDEX_NAME
    with _gc_paused():
        try:
            with closing(open_url(url)) as f:
                data = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError) as err:
            raise ShardError(f"{url}: cannot read the shard index ({err}); write it with shards.writer "
                             "or tools/validate_shards.py --write-index", "bad_index") from None
        return ShardIndex.from_json(data, location=url)


@contextmanager
def _gc_paused():
    """No cyclic garbage collection inside: an index of many shards is millions of new, acyclic
    objects, and the collections they triggered took 60% of loading one of 1,000,000 shards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def resolve_urls(index: ShardIndex, urls: str | Sequence[str] | None = None) -> list[tuple[ShardEntry, str]]:
    """Pair index entries with URLs: beside the index by default, else matched by file name."""
    if urls is None:
        if index.location is None:
            raise ShardError("the shard index has no location; pass the shard urls explicitly", "bad_url")
        base = index.location.rsplit("/", 1)[0] if "/" in index.location else "."
        return [(entry, f"{base}/{entry.name}") for entry in index.shards]
    pairs = []
    by_name = {e.name: e for e in index.shards}  # names are unique (ShardIndex.from_json checks)
    for url in expand_urls(urls):
        tokens = set(re.split(r"[\s/:]", url))
        named = [by_name[t] for t in tokens if t in by_name]
        if len(named) != 1:
            raise ShardError(f"{url}: no single shard of the index is named in this URL; "
                             f"URLs must contain the index's file names (e.g. {index.shards[0].name})", "bad_url")
        pairs.append((named[0], url))
    return pairs


# ----------------------------------------------------------------------------- the dataset

class ShardDataset(IterableDataset):
    """An epoch of decoded samples for this rank and DataLoader worker (see the module docstring)."""

    def __init__(self, index: str | ShardIndex | dict, urls: str | Sequence[str] | None = None, *,
                 training: bool = True, seed: int = 0, rank: int | None = None, world_size: int | None = None,
                 shuffle_buffer: int = 1000, uneven: str = "pad", fill_skipped: bool = True,
                 min_frames: int | None = MIN_FRAMES, max_frames: int | None = MAX_FRAMES, load_video: bool = True,
                 num_video_frames: int = 8, video_size: int | tuple[int, int] | None = 224,
                 video_backend: str = "pyav", load_joints: bool = True, crop_to_caption: bool = True,
                 split: str | None = None):
        if uneven not in ("pad", "drop"):
            raise ValueError(f"uneven={uneven!r}: use 'pad' (repeat a few samples) or 'drop'")
        self.index = load_index(index)
        with _gc_paused():
            self.shards = resolve_urls(self.index, urls)
        # With a split, the plan runs over that split's samples only (the index's per-split counts),
        # so a set that mixes splits in its shards still gives every sample of the split once.
        self.split = split or None
        self.counts = self._plan_counts()
        self.total = sum(self.counts)
        if self.total == 0:
            what = f"no samples of split {self.split!r}" if self.split else "no samples"
            raise ShardError(f"{self.index.location or 'shard set'}: the shards hold {what}", "bad_index")
        self.training, self.seed, self.uneven, self.fill_skipped = training, seed, uneven, fill_skipped
        self.shuffle_buffer = shuffle_buffer if training else 0
        self.min_frames, self.max_frames = min_frames, max_frames
        self.load_video, self.num_video_frames, self.video_size = load_video, num_video_frames, video_size
        self.video_backend, self.load_joints = video_backend, load_joints
        # Retrieval crops each clip to its caption's span; localization needs the whole untrimmed
        # motion (its moments are times inside it), so those readers pass crop_to_caption=False.
        self.crop_to_caption = crop_to_caption
        self.rank, self.world_size = rank, world_size
        if rank is None or world_size is None:
            self.rank, self.world_size = rank_and_world(rank, world_size)
        self.epoch = 0
        self.resume: tuple[int, list[int]] | None = None  # (epoch, consumed per worker)
        self.end_marker = False  # set by ShardLoader: end each worker's stream with a marker item
        self.worker_offset = 0  # set by ShardLoader on resume: DataLoader worker i plays worker i + offset

    def _plan_counts(self) -> list[int]:
        """Samples per shard that take part: all, or those of the split."""
        if self.split is None:
            return [entry.count for entry, _ in self.shards]
        uncounted = sum(1 for entry, _ in self.shards if entry.count and not entry.splits)
        if uncounted:
            log.warning("%s: the index has no per-split counts, so the meta.json of %d shard(s) is read once to "
                        "count split %r; `trimo-validate-shards DIR --write-index` adds them",
                        self.index.location, uncounted, self.split)
        return [entry.splits.get(self.split, 0) if entry.splits or not entry.count else
                sum(_in_split(raw, self.split) for raw in iter_raw_shard(url, members=("meta.json",)))
                for entry, url in self.shards]

    # --- the plan --------------------------------------------------------------------------
    def quota(self, num_workers: int = 0) -> int:
        """Samples each worker yields per epoch (the same on every rank)."""
        slots = self.world_size * max(1, num_workers)
        q = math.ceil(self.total / slots) if self.uneven == "pad" else self.total // slots
        if q == 0:
            raise ShardError(f"{self.total} samples cannot feed {slots} rank x worker slots with uneven='drop'; "
                             "use uneven='pad' or fewer workers", "bad_index")
        return q

    def num_batches(self, batch_size: int, num_workers: int = 0, drop_last: bool = False) -> int:
        """Batches one rank gets per epoch from a DataLoader with these settings."""
        q = self.quota(num_workers)
        per_worker = q // batch_size if drop_last else math.ceil(q / batch_size)
        return per_worker * max(1, num_workers)

    def shard_order(self, epoch: int) -> list[int]:
        return self.epoch_plan(epoch).order.tolist()

    def epoch_plan(self, epoch: int) -> EpochPlan:
        """The shard order of `epoch` and the cumulative sample counts along it: O(shards), the
        same on every rank and worker (no per-sample lists)."""
        order = np.arange(len(self.shards))
        if self.training:
            np.random.default_rng([self.seed, epoch]).shuffle(order)
        cum = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(np.asarray(self.counts, dtype=np.int64)[order], out=cum[1:])
        return EpochPlan(order, cum)

    # --- iteration ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        if self.rank is None or self.world_size is None:
            self.rank, self.world_size = rank_and_world(self.rank, self.world_size)
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        worker = (worker + self.worker_offset) % num_workers
        skip, cursor = 0, None
        if self.resume is not None and self.resume[0] == self.epoch:
            consumed = self.resume[1]
            if len(consumed) != num_workers:
                raise ShardError(f"reader state was saved with {len(consumed)} workers, now {num_workers}; "
                                 "resume with the same num_workers", "bad_state")
            skip = consumed[worker]
            cursors = self.resume[2] if len(self.resume) > 2 else None
            cursor = cursors[worker] if cursors and skip else None
            if cursor is not None:
                cursor = {**cursor, "consumed": skip}
        counter: Counter = Counter(cursor["skips"]) if cursor is not None else Counter()
        slot = self.rank * num_workers + worker
        # with a cursor the slot starts right after the consumed samples; without one (a state
        # saved before cursors existed) it replays the slot and drops them
        first = skip if cursor is not None else 0
        for i, (sample, taken, pick) in enumerate(self._slot(self.epoch, slot, num_workers, counter, cursor), first):
            if i >= skip:
                sample["_pos"] = (worker, i, taken, pick)
                sample["_skips"] = dict(counter)
                yield sample
        if self.end_marker:  # carries the skips met after the last sample to ShardLoader
            yield {"_end": True, "_pos": (worker, -1, 0, None), "_skips": dict(counter)}

    def _slot(self, epoch: int, slot: int, num_workers: int, counter: Counter,
              cursor: dict | None = None) -> Iterator[tuple[dict, int, dict]]:
        """(sample, raw items taken, caption-pick generator state) of the slot's q samples; with a
        cursor (from ShardLoader's state), the ones after it."""
        q = self.quota(num_workers)
        plan = self.epoch_plan(epoch)
        start = slot * q
        pick = np.random.default_rng([self.seed, epoch, slot, 1])
        done = taken = 0
        if cursor is not None:
            done, taken = cursor["consumed"], cursor["taken"]
            state = pick.bit_generator.state  # the increment comes from the seed, the rest from the cursor
            state["state"]["state"], state["has_uint32"], state["uinteger"] = _pick_state(cursor["pick"])
            pick.bit_generator.state = state
        if done >= q:
            return
        idle = 0  # raw items read for refills since the last sample that was kept
        for pos, raw in self._slot_raws(plan, epoch, slot, start, q, taken):
            own = taken < q
            taken += 1
            # positions >= total repeat other slots' samples, and refills read other slots'
            # ranges: their skips are counted there
            sample = self._prepare(raw, pick, counter if own and pos < self.total else None)
            if sample is None:
                idle += not own
                if idle >= self.total:
                    raise ShardError(f"{self.index.location or 'shard set'}: no valid sample in the whole set "
                                     f"(skips: {dict(counter)})", "no_samples")
                continue
            sample["repeat"] = not own or pos >= self.total
            done += 1
            idle = 0
            yield sample, taken, pick.bit_generator.state
            if done == q:
                return

    def _slot_raws(self, plan: EpochPlan, epoch: int, slot: int, start: int, q: int,
                   skip: int) -> Iterator[tuple[int, dict]]:
        """The raw items a slot decodes, from item `skip` on: its q positions [start, start + q)
        through the shuffle buffer, then (with fill_skipped) the positions after them, which
        replace skipped samples.

        Skipping costs no reading: the buffer's choices depend only on its generator and the
        number of items, so they are replayed on item numbers, and only the items still in the
        buffer at that point are read (one pass per shard holding them) before the stream
        continues where the buffer had read to.
        """
        if skip < q:
            if self.shuffle_buffer > 1:
                feed = _Feed(q)
                shuffled = _buffered_shuffle(feed, self.shuffle_buffer,
                                             np.random.default_rng([self.seed, epoch, slot, 0]))
                if skip:
                    gone = np.zeros(q, dtype=bool)
                    gone[np.fromiter(itertools.islice(shuffled, skip), dtype=np.int64, count=skip)] = True
                    pending = np.flatnonzero(~gone[:feed.next])
                    fetched = self._fetch(plan, (start + pending).tolist())
                    feed.held = {pos - start: raw for pos, raw in fetched.items()}
                feed.source = self._positions(plan, start + feed.next, start + q)
                for i in shuffled:
                    yield start + i, feed.held.pop(i)
            else:
                yield from self._positions(plan, start + skip, start + q)
            skip = q
        if self.fill_skipped:
            yield from self._positions(plan, start + skip, math.inf)

    def _positions(self, plan: EpochPlan, start: int, stop: int | float) -> Iterator[tuple[int, dict]]:
        """(position, raw sample) for global positions start..stop-1 (modulo the total); a sample
        the shard failed to deliver (truncated / corrupt tar) comes as {"__lost__": message}."""
        cum = plan.cum
        pos = start
        while pos < stop:
            p = pos % self.total
            k = int(np.searchsorted(cum, p, side="right")) - 1
            url = self.shards[plan.order[k]][1]
            offset = p - int(cum[k])
            take = min(int(cum[k + 1]) - p, stop - pos)
            errors: list[str] = []
            got = 0
            with closing(iter_raw_shard(url, errors)) as raws:
                if self.split is not None:
                    raws = (raw for raw in raws if _in_split(raw, self.split))
                for i, raw in enumerate(raws):
                    if i >= offset:
                        yield pos + got, raw
                        got += 1
                        if got == take:
                            break
            if got < take:
                why = errors[0] if errors else f"{url}: fewer samples than the index says"
                for j in range(got, take):
                    yield pos + j, {"__lost__": f"sample {offset + j} of {url} lost to a tar read error ({why})"}
            pos += take

    def _fetch(self, plan: EpochPlan, positions: list[int]) -> dict[int, dict]:
        """{position: raw sample} for scattered positions (modulo the total), as _positions would
        give them; each shard holding some is read once, up to the last one wanted."""
        wanted: dict[int, dict[int, list[int]]] = {}
        ks = np.searchsorted(plan.cum, np.asarray(positions, dtype=np.int64) % self.total, side="right") - 1
        for pos, k in zip(positions, ks.tolist()):
            wanted.setdefault(k, {}).setdefault(pos % self.total - int(plan.cum[k]), []).append(pos)
        out: dict[int, dict] = {}
        for k, offsets in wanted.items():
            url = self.shards[plan.order[k]][1]
            errors: list[str] = []
            last = max(offsets)
            with closing(iter_raw_shard(url, errors)) as raws:
                if self.split is not None:
                    raws = (raw for raw in raws if _in_split(raw, self.split))
                for i, raw in enumerate(raws):
                    for pos in offsets.get(i, ()):
                        out[pos] = raw
                    if i >= last:
                        break
            for offset, where in offsets.items():
                for pos in where:
                    if pos not in out:
                        why = errors[0] if errors else f"{url}: fewer samples than the index says"
                        out[pos] = {"__lost__": f"sample {offset} of {url} lost to a tar read error ({why})"}
        return out

    def _prepare(self, raw: dict, pick: np.random.Generator, counter: Counter | None) -> dict | None:
        """Decode, check, pick a caption, crop and load video; None (counted) for a bad sample."""
        try:
            if "__lost__" in raw:
                raise ShardError(raw["__lost__"], "tar_error")
            sample, ignored = decode_sample(raw)
            if counter is not None and ignored:
                counter[IGNORED_MEMBER] += len(ignored)
            validate_sample(sample)
            return self._crop_and_load(sample, pick)
        except ShardError as err:
            if counter is not None:
                counter[err.reason] += 1
                log.warning("skipped (%s): %s", err.reason, err)
            return None

    def _crop_and_load(self, sample: dict, pick: np.random.Generator) -> dict:
        motion, meta = sample["motion"].astype(np.float32, copy=False), sample["meta"]
        fps, frames = float(meta["fps"]), len(motion)
        texts = [t for t in meta["texts"] if t["text"].strip()]
        if not texts:
            spans = [(None, *self._moment_window(meta, frames, pick))]
        elif self.crop_to_caption:
            spans = [(t, *caption_frames(t, frames, fps)) for t in texts]
        else:
            spans = [(t, 0, frames) for t in texts]
        spans = [s for s in spans if s[2] > s[1] and length_ok(s[2] - s[1], self.min_frames, self.max_frames)]
        if not spans:
            raise ShardError(f"sample {sample['key']!r}: no caption span of {self.min_frames}..{self.max_frames} "
                             f"frames (clip has {frames})", "filtered_length")
        text, first, stop = spans[int(pick.integers(len(spans)))] if self.training else spans[0]
        out = {"key": sample["key"], "motion": motion[first:stop], "text": text["text"] if text else None,
               "events": text.get("events") if text else None, "moments": meta.get("moments") or [],
               "span": (first, stop), "meta": meta}
        if self.load_joints and sample.get("joints") is not None:
            out["joints"] = sample["joints"].astype(np.float32, copy=False)[first:min(stop + 1, len(sample["joints"]))]
        if self.load_video and sample.get("video") is not None:
            whole = first == 0 and stop == frames
            video = decode_mp4(sample["video"], self.num_video_frames, self.video_size,
                               None if whole else first / fps, None if whole else stop / fps,
                               backend=self.video_backend, where=f"sample {sample['key']!r} video.mp4")
            out["video"] = np.ascontiguousarray(video.transpose(0, 3, 1, 2))
        return out

    def _moment_window(self, meta: dict, frames: int, pick: np.random.Generator) -> tuple[int, int]:
        """The frames of an untrimmed motion that a localization reader returns: all of them, or
        for a motion longer than max_frames a window of max_frames around one moment (a random
        moment and placement in training, otherwise the first moment in the earliest window), so
        that long takes are trained on rather than filtered out."""
        moments = [m for m in meta.get("moments") or [] if m["text"].strip()]
        if self.max_frames is None or frames <= self.max_frames or not moments:
            return 0, frames
        fps, size = float(meta["fps"]), self.max_frames
        moment = moments[int(pick.integers(len(moments)))] if self.training else moments[0]
        start = min(int(moment["start"] * fps), frames - 1)
        end = min(max(int(math.ceil(moment["end"] * fps)), start + 1), frames)
        low, high = max(0, end - size), max(0, min(start, frames - size))
        first = int(pick.integers(low, high + 1)) if self.training and high > low else min(low, high)
        return first, min(first + size, frames)


@dataclass
class EpochPlan:
    """One epoch's shard order (indices into ShardDataset.shards) and the cumulative sample
    counts along it (cum[k] = first global position of the k-th shard of the order; len + 1)."""

    order: np.ndarray
    cum: np.ndarray


class _Feed:
    """Item numbers 0..n-1 for _buffered_shuffle. Without a `source` it only counts (to replay
    the buffer's choices); with one, each number also reads the next raw sample into `held`."""

    def __init__(self, n: int):
        self.n, self.next = n, 0
        self.source: Iterator[tuple[int, dict]] | None = None
        self.held: dict[int, dict] = {}

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> int:
        i = self.next
        if i >= self.n:
            raise StopIteration
        self.next = i + 1
        if self.source is not None:
            self.held[i] = next(self.source)[1]
        return i


def _pick_state(saved: Sequence) -> tuple[int, int, int]:
    """(PCG64 state, has_uint32, uinteger) from a cursor's `pick` entry [hex state, has_uint32, uinteger]."""
    return int(saved[0], 16), int(saved[1]), int(saved[2])


def _in_split(raw: dict, split: str) -> bool:
    """Whether a raw sample's meta.split is `split`; a sample whose meta.json can't be read counts
    as in it, so that the decoder reports it."""
    try:
        return json.loads(bytes(raw["meta.json"]).decode("utf-8")).get("split", split) == split
    except (KeyError, UnicodeDecodeError, ValueError, AttributeError):
        return True


def _buffered_shuffle(items: Iterator, size: int, rng: np.random.Generator, initial: int = 100) -> Iterator:
    """Shuffle through a buffer of up to `size` items (webdataset's scheme): yielding starts once
    `initial` items are buffered and the buffer grows by one item per yield until it holds `size`.
    Waiting for a full buffer first delayed a worker's first batch by its whole buffer's reading."""
    buffer: list = []
    items = iter(items)
    uniform = iter(())
    initial = min(initial, size)
    for item in items:
        buffer.append(item)
        if len(buffer) < size:
            extra = next(items, _END)
            if extra is not _END:
                buffer.append(extra)
        if len(buffer) >= initial:
            u = next(uniform, None)
            if u is None:  # one numpy call per 256 draws
                uniform = iter(rng.random(256).tolist())
                u = next(uniform)
            j = int(u * len(buffer))
            buffer[j], buffer[-1] = buffer[-1], buffer[j]
            yield buffer.pop()
    for j in rng.permutation(len(buffer)):
        yield buffer[j]


_END = object()


def rank_and_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """This process's (rank, world size): the given ones, else torch.distributed's, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return (torch.distributed.get_rank() if rank is None else rank,
                torch.distributed.get_world_size() if world_size is None else world_size)
    if rank is not None or world_size is not None:
        raise ValueError("pass both rank and world_size, or neither (they then come from torch.distributed)")
    return 0, 1


# ----------------------------------------------------------------------------- batches

def collate_samples(samples: list[dict]) -> dict[str, Any]:
    """Pad motion (and joints) to the batch's longest clip; mask is True on real frames.

    Videos are stacked as uint8 (B, l_v, 3, H, W); samples without video get zeros and
    has_video False (same for joints / has_joints). In a DataLoader worker the padded arrays are
    allocated in shared memory, as torch's default_collate does, so a batch reaches the main
    process without another copy.
    """
    lengths = torch.tensor([len(s["motion"]) for s in samples])
    motion = _padded([s["motion"] for s in samples], int(lengths.max()), torch.float32)
    batch: dict[str, Any] = {
        "key": [s["key"] for s in samples], "motion": motion,
        "mask": torch.arange(motion.shape[1])[None] < lengths[:, None], "length": lengths,
        "text": [s["text"] for s in samples], "events": [s["events"] for s in samples],
        "moments": [s["moments"] for s in samples], "span": torch.tensor([s["span"] for s in samples]),
        "meta": [s["meta"] for s in samples], "repeat": torch.tensor([bool(s.get("repeat")) for s in samples]),
    }
    with_joints = [s for s in samples if "joints" in s]
    if with_joints:
        j_len = torch.tensor([len(s["joints"]) if "joints" in s else 0 for s in samples])
        joints = _padded([s.get("joints") for s in samples], int(j_len.max()), torch.float32,
                         with_joints[0]["joints"].shape[1:])
        batch.update(joints=joints, joints_mask=torch.arange(joints.shape[1])[None] < j_len[:, None],
                     has_joints=j_len > 0)
    with_video = [s for s in samples if "video" in s]
    if with_video:
        shape = with_video[0]["video"].shape
        video = _padded([s.get("video") for s in samples], shape[0], torch.uint8, shape[1:])
        batch.update(video=video, has_video=torch.tensor(["video" in s for s in samples]))
    return batch


def _padded(arrays: list[np.ndarray | None], length: int, dtype: torch.dtype,
            tail: tuple[int, ...] | None = None) -> torch.Tensor:
    """(B, length, *tail) tensor: each array copied in at the start of its row, zeros elsewhere."""
    tail = tuple(tail if tail is not None else next(a for a in arrays if a is not None).shape[1:])
    shape = (len(arrays), length, *tail)
    if get_worker_info() is not None:
        numel = math.prod(shape)
        storage = torch.UntypedStorage._new_shared(numel * torch.empty((), dtype=dtype).element_size())
        out = torch.empty(0, dtype=dtype).set_(storage).view(shape)
    else:
        out = torch.empty(shape, dtype=dtype)
    view = out.numpy()
    for i, a in enumerate(arrays):
        n = 0 if a is None else len(a)
        if n:
            view[i, :n] = a
        view[i, n:] = 0
    return out


SMALL_TENSOR_BYTES = 1 << 16


@dataclass
class _InlineTensor:
    array: np.ndarray


def pack_small_tensors(batch: Any) -> Any:
    """In a DataLoader worker: a dict batch's small tensors as numpy arrays, pickled inline.

    torch sends every tensor of a batch to the main process as a shared-memory file descriptor,
    each over its own socket connection to the worker; for masks, lengths and flags that round
    trip (which also needs the busy worker's GIL) cost more than the data. Big tensors still go
    through shared memory. `unpack_small_tensors` restores the batch in the main process.
    """
    if get_worker_info() is None or not isinstance(batch, dict):
        return batch
    return {k: _InlineTensor(v.numpy()) if isinstance(v, torch.Tensor) and v.nbytes <= SMALL_TENSOR_BYTES else v
            for k, v in batch.items()}


def unpack_small_tensors(batch: Any) -> Any:
    if not isinstance(batch, dict):
        return batch
    return {k: torch.from_numpy(v.array) if isinstance(v, _InlineTensor) else v for k, v in batch.items()}


class ShardLoader:
    """Batches of a ShardDataset through a torch DataLoader, with a resumable state.

    Iterating gives one epoch (`self.epoch`) and then moves to the next. `state_dict()` after k
    batches and `load_state_dict()` in a new process continue with batch k+1 of that epoch.
    `skipped` counts skipped samples by reason over all epochs (summed over this rank's workers).
    """

    def __init__(self, dataset: ShardDataset, batch_size: int, num_workers: int = 0, drop_last: bool = False,
                 collate_fn=collate_samples, **dataloader_kwargs):
        self.dataset, self.batch_size, self.num_workers, self.drop_last = dataset, batch_size, num_workers, drop_last
        self.collate_fn, self.dataloader_kwargs = collate_fn, dataloader_kwargs
        self.epoch = 0
        self.consumed = [0] * max(1, num_workers)
        # per worker, where its stream stands after its consumed samples (None: at the start):
        # {"taken": raw items read, "pick": caption-pick generator [hex state, has_uint32,
        # uinteger], "skips": skip counts so far}; a resumed worker starts there without rereading
        self.cursors: list[dict | None] = [None] * len(self.consumed)
        self.received = 0  # DataLoader items of this epoch (batches and end markers)
        self.skips_done: Counter = Counter()       # finished epochs
        self.skips_epoch = [Counter() for _ in self.consumed]  # latest cumulative count per worker

    def __len__(self) -> int:
        return self.dataset.num_batches(self.batch_size, self.num_workers, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed, self.received = epoch, [0] * len(self.consumed), 0
            self.cursors = [None] * len(self.consumed)

    @property
    def skipped(self) -> Counter:
        total = Counter(self.skips_done)
        for c in self.skips_epoch:
            total.update(c)
        return total

    def __iter__(self) -> Iterator[dict]:
        self.dataset.epoch = self.epoch
        self.dataset.resume = (self.epoch, list(self.consumed), list(self.cursors)) if any(self.consumed) else None
        self.dataset.end_marker = True
        # The DataLoader takes batches from its workers in strict rotation starting at worker 0,
        # and every worker has the same number of items; after `received` items the next one is
        # due from worker received % W, so a resumed run starts the rotation there.
        self.dataset.worker_offset = self.received % len(self.consumed)
        # drop_last is applied here, after the end markers are taken out, so that they never
        # change which batches are full
        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            collate_fn=self._collate, persistent_workers=False, **self.dataloader_kwargs)
        for batch, (worker, consumed, cursor, skips) in loader:
            self.received += 1
            self.skips_epoch[worker] = Counter(skips)
            if batch is None or (self.drop_last and len(batch["key"]) < self.batch_size):
                continue
            self.consumed[worker], self.cursors[worker] = consumed, cursor
            yield unpack_small_tensors(batch)
        self.dataset.resume = None
        self.skips_done = self.skipped
        self.skips_epoch = [Counter() for _ in self.consumed]
        self.epoch, self.consumed, self.received = self.epoch + 1, [0] * len(self.consumed), 0
        self.cursors = [None] * len(self.consumed)

    def _collate(self, items: list[dict]) -> tuple[dict | None, tuple[int, int, dict | None, dict]]:
        """(batch or None, (worker, samples consumed, cursor after them, cumulative skips)) from
        one worker's items."""
        samples = [s for s in items if not s.get("_end")]
        worker = items[-1]["_pos"][0]
        consumed, cursor = 0, None
        if samples:
            _, i, taken, pick = samples[-1]["_pos"]
            consumed = i + 1
            cursor = {"taken": taken, "pick": [f"{pick['state']['state']:x}", pick["has_uint32"], pick["uinteger"]],
                      "skips": samples[-1]["_skips"]}
        skips = items[-1]["_skips"]
        for s in samples:
            del s["_pos"], s["_skips"]
        return (pack_small_tensors(self.collate_fn(samples)) if samples else None), (worker, consumed, cursor, skips)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "consumed": list(self.consumed), "received": self.received,
                "cursors": [None if c is None else {**c, "skips": dict(c["skips"])} for c in self.cursors],
                "rank": self.dataset.rank, "seed": self.dataset.seed,
                "world_size": self.dataset.world_size, "skips_done": dict(self.skips_done),
                "skips_epoch": [dict(c) for c in self.skips_epoch]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["consumed"]) != len(self.consumed):
            raise ShardError(f"reader state has {len(state['consumed'])} workers, this loader {len(self.consumed)}; "
                             "resume with the same num_workers", "bad_state")
        if state["seed"] != self.dataset.seed or state["world_size"] != self.dataset.world_size:
            raise ShardError(f"reader state was saved with seed {state['seed']} and world size {state['world_size']}, "
                             f"this run has {self.dataset.seed} and {self.dataset.world_size}; an exact resume "
                             "needs the same ones", "bad_state")
        self.epoch, self.consumed = int(state["epoch"]), [int(c) for c in state["consumed"]]
        self.received = int(state["received"])
        # States saved before cursors existed resume by replaying each worker's stream, and so
        # does another rank's state (all ranks consume the same counts; the cursors are per rank).
        cursors = state.get("cursors") or [None] * len(self.consumed)
        if state.get("rank", self.dataset.rank) != self.dataset.rank:
            log.warning("reader state of rank %s loaded on rank %s: its workers replay the %d samples consumed "
                        "(restore each rank from its own state to skip them without reading)",
                        state["rank"], self.dataset.rank, sum(self.consumed))
            cursors = [None] * len(self.consumed)
        self.cursors = [None if c is None else {"taken": int(c["taken"]), "pick": list(c["pick"]),
                                                "skips": dict(c["skips"])} for c in cursors]
        self.skips_done = Counter(state["skips_done"])
        self.skips_epoch = [Counter(c) for c in state["skips_epoch"]]
