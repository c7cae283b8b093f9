"""Check a shard set against the schema and summarize it.

    trimo-validate-shards DATA/shards.json [--decode-video] [--report report.json]
    trimo-validate-shards DATA/ --urls 'DATA/shard-*.tar' --write-index

Reads every sample of every shard (local paths, globs, brace lists, pipe: or fsspec URLs), decodes
the schema's members (never unpickling), validates them, and compares the counts with the index.
Prints a JSON summary: counts per shard (index vs found), durations, caption statistics, splits,
optional members, and the errors by reason with the first messages. Exit status 1 when anything
is wrong. --write-index (re)writes `shards.json` for shards made elsewhere or indexed by an older
trimo (counts in all and per split, bytes and frames; an existing index's feature statistics are
kept; for a new one run tools/shard_stats.py --update-index to add them).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections import Counter
from typing import Any

import numpy as np

from shards.reader import expand_urls, iter_raw_shard, load_index, resolve_urls
from shards.schema import INDEX_NAME, ShardEntry, ShardError, ShardIndex, decode_sample, validate_sample
from shards.video_io import decode_mp4


def validate_shard_set(pairs: list[tuple[ShardEntry | None, str]], decode_video: bool = False,
                       max_messages: int = 20) -> dict[str, Any]:
    """Scan (index entry or None, url) pairs; returns the summary dict (see the module doc)."""
    errors: Counter = Counter()
    messages: list[str] = []
    shards, durations, words, captions_per_sample = [], [], [], []
    keys: set[str] = set()
    tally: Counter = Counter()

    def fail(reason: str, message: str) -> None:
        errors[reason] += 1
        if len(messages) < max_messages:
            messages.append(message)

    for entry, url in pairs:
        read_errors: list[str] = []
        found = frames = 0
        splits: Counter = Counter()
        for raw in iter_raw_shard(url, read_errors):
            found += 1
            try:
                sample, ignored = decode_sample(raw)
                validate_sample(sample)
                if decode_video and "video" in sample:
                    decode_mp4(sample["video"], size=None, where=f"sample {sample['key']!r} in {url}")
            except ShardError as err:
                fail(err.reason, str(err))
                continue
            if sample["key"] in keys:
                fail("duplicate_key", f"sample {sample['key']!r} in {url}: key seen before in this set")
            keys.add(sample["key"])
            meta, n = sample["meta"], len(sample["motion"])
            frames += n
            splits[meta["split"]] += 1
            durations.append(n / float(meta["fps"]))
            texts = [t for t in meta["texts"] if t["text"].strip()]
            captions_per_sample.append(len(texts))
            words.extend(len(t["text"].split()) for t in texts)
            tally.update({"split:" + meta["split"]: 1, "dataset:" + meta["dataset"]: 1,
                          "with_joints": "joints" in sample, "with_video": "video" in sample,
                          "with_events": any(t.get("events") for t in texts),
                          "with_spans": any(t.get("start") is not None for t in texts),
                          "moments": len(meta.get("moments") or []), "ignored_members": len(ignored)})
        for message in read_errors:
            fail("tar_error", message)
        expected = entry.count if entry is not None else None
        if expected is not None and expected != found:
            fail("count_mismatch", f"{url}: the index says {expected} samples, the shard holds {found}")
        if entry is not None and entry.splits and sum(splits.values()) == found and entry.splits != dict(splits):
            fail("count_mismatch", f"{url}: the index says {entry.splits} samples per split, the shard holds "
                                   f"{dict(splits)}; rewrite the index with --write-index")
        shards.append({"url": url, "index_count": expected, "found": found, "frames": frames,
                       "splits": dict(sorted(splits.items()))})

    return {
        "shards": shards,
        "samples": {"index": sum(s["index_count"] or 0 for s in shards), "found": sum(s["found"] for s in shards),
                    "valid": len(durations)},
        "durations_s": _describe(durations) | {"total_hours": float(np.sum(durations)) / 3600 if durations else 0.0},
        "captions": {"per_sample": _describe(captions_per_sample), "words": _describe(words),
                     "total": int(np.sum(captions_per_sample)) if captions_per_sample else 0},
        "tally": {k: int(v) for k, v in sorted(tally.items())},
        "errors": dict(errors),
        "messages": messages,
        "ok": not errors,
    }


def _describe(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    arr = np.asarray(values, dtype=np.float64)
    return {"count": len(arr), "min": float(arr.min()), "median": float(np.median(arr)), "mean": float(arr.mean()),
            "max": float(arr.max())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shards", help="shards.json, or the folder/URL prefix holding it")
    ap.add_argument("--urls", help="shard URLs (glob, brace list, pipe:, fsspec) instead of those beside the index")
    ap.add_argument("--decode-video", action="store_true", help="also decode every video.mp4 (slower)")
    ap.add_argument("--report", help="write the JSON summary to this file too")
    ap.add_argument("--write-index", action="store_true",
                    help="scan --urls (default: the folder's *.tar) and write shards.json beside them")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    try:
        if args.write_index:
            command = " ".join(shlex.quote(a) for a in ["python", "-m", "tools.validate_shards", *argv])
            report = _write_index(args.shards, args.urls, args.decode_video, command)
        else:
            index = load_index(args.shards)
            report = validate_shard_set(resolve_urls(index, args.urls), args.decode_video)
    except ShardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=1)
    print(text)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0 if report["ok"] else 1


def _write_index(folder: str, urls: str | None, decode_video: bool, command: str) -> dict[str, Any]:
    if folder.endswith(".json"):
        folder = os.path.dirname(folder)
    urls_list = expand_urls(urls or os.path.join(folder, "*.tar"))
    report = validate_shard_set([(None, url) for url in urls_list], decode_video)
    if not report["ok"]:
        raise ShardError(f"not writing an index for {folder}: {report['errors']}; first: {report['messages'][0]}")
    entries = [ShardEntry(name=os.path.basename(s["url"]), count=s["found"], frames=s["frames"], splits=s["splits"],
                          bytes=os.path.getsize(s["url"]) if os.path.exists(s["url"]) else 0)
               for s in report["shards"]]
    index = ShardIndex(shards=entries, command=command)
    path = os.path.join(folder, INDEX_NAME)
    try:  # rewriting a readable index: keep what the scan does not recompute
        old = load_index(path) if os.path.isfile(path) else None
    except ShardError:
        old = None
    if old is not None:
        index.feature_stats, index.extra = old.feature_stats, old.extra
    index.save(path)
    return report


if __name__ == "__main__":
    sys.exit(main())
