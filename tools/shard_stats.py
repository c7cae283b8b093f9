"""Compute the 263-d feature statistics of a shard set.

    trimo-shard-stats DATA/shards.json [--split train] [--convention per_dim]
                                [--out DATA/stats.npz] [--update-index]

Streams motion.npy of every sample (optionally only those whose meta.split is --split) into
motion.features.FeatureStats: `per_dim` (TMR: plain per-dimension mean/std over all frames) or
`humanml3d_group` (HumanML3D: std averaged within each feature group). --out saves the stats as a
pickle-free .npz (FeatureStats.save); --update-index stores them inline in the local shards.json,
where the reader and trainer find them (ShardIndex.stats()). Prints a short JSON summary.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys

import numpy as np

from motion.features import CONVENTIONS
from shards.reader import load_index, resolve_urls
from shards.schema import ShardError, stats_to_json
from shards.writer import compute_feature_stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shards", help="shards.json, or the folder/URL prefix holding it")
    ap.add_argument("--urls", help="shard URLs instead of those beside the index")
    ap.add_argument("--split", help="only samples with this meta.split (e.g. train)")
    ap.add_argument("--convention", choices=CONVENTIONS, default="per_dim")
    ap.add_argument("--name", default="", help="a name stored with the stats (default: the split)")
    ap.add_argument("--out", help="write the stats to this .npz")
    ap.add_argument("--update-index", action="store_true", help="store the stats inline in shards.json")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    try:
        index = load_index(args.shards)
        urls = [url for _, url in resolve_urls(index, args.urls)]
        stats = compute_feature_stats(urls, convention=args.convention, name=args.name or args.split or "all",
                                      split=args.split)
    except (ShardError, ValueError) as err:  # MotionError (no frames) is a ValueError too
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out:
        stats.save(args.out)
    if args.update_index:
        if index.location is None or "://" in index.location:
            print("error: --update-index needs a local shards.json", file=sys.stderr)
            return 2
        index.feature_stats = stats_to_json(stats)
        index.extra["stats_command"] = " ".join(shlex.quote(a) for a in ["python", "-m", "tools.shard_stats", *argv])
        index.save(index.location)
    print(json.dumps({"name": stats.name, "convention": stats.convention, "frames": stats.count,
                      "mean_abs_mean": float(np.abs(stats.mean).mean()), "min_std": float(stats.std.min()),
                      "max_std": float(stats.std.max())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
