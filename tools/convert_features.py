"""Rewrite converted shard sets in the other 263-d feature definition (trimo <-> humanml3d).

    trimo-convert-features IN_DIR -o OUT_DIR --to trimo|humanml3d [--check 20]

IN_DIR is a converter's output (IN_DIR/<split>/shards.json; OUT_DIR/<split>/ is written) or one
shard set (written to OUT_DIR/all/). Each sample's features are recomputed from its stored joints
when it has them (exact), else from the joints `features_to_joints` reconstructs (one frame
shorter). The feature statistics come from the
train split, as the converters do. `--check N` converts the first N samples back and prints the
largest round-trip difference, so the error of a set without joints is stated, not assumed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from shards.converters.common import refeature_sample, run_converter, write_dataset
from shards.reader import iter_decoded, load_index
from shards.schema import INDEX_NAME


def split_sets(root: Path) -> dict[str, Path]:
    """{split: folder} of a converter's output, or {"": root} for a single shard set."""
    if (root / INDEX_NAME).is_file():
        return {"": root}
    return {d.name: d for d in sorted(root.iterdir()) if (d / INDEX_NAME).is_file()}


def round_trip_error(folder: Path, definition: str, count: int) -> float:
    """Largest |features - back(to(features))| over the first `count` samples of a set."""
    index = load_index(str(folder))
    worst = 0.0
    for i, sample in enumerate(iter_decoded([str(folder / e.name) for e in index.shards])):
        if i == count:
            break
        there = refeature_sample(sample, definition)
        back = refeature_sample(dict(there, joints=None), index.motion_features)["motion"]
        n = min(len(back), len(sample["motion"]))
        worst = max(worst, float(np.abs(back[:n] - sample["motion"][:n]).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="converted shard sets (ROOT/<split>/) or one shard set")
    parser.add_argument("-o", "--out", required=True, help="output folder (same layout)")
    parser.add_argument("--to", required=True, choices=("trimo", "humanml3d"), help="the definition to write")
    parser.add_argument("--check", type=int, default=20, help="samples whose round trip is measured (0 = none)")
    args = parser.parse_args(argv)
    sets = split_sets(args.root)
    if not sets:
        print(f"convert_features: no shards.json in {args.root} or its sub-folders", file=sys.stderr)
        return 1

    def samples(folder: Path):
        index = load_index(str(folder))
        for sample in iter_decoded([str(folder / e.name) for e in index.shards]):
            yield refeature_sample(sample, args.to)

    code = run_converter("convert_features", lambda: write_dataset(
        {split or "all": samples(folder) for split, folder in sets.items()}, args.out,
        dataset=f"{args.root.name} as {args.to} features", stats_split="train" if "train" in sets else "all",
        motion_features=args.to), args.out)
    if code == 0 and args.check:
        folder = next(iter(sets.values()))
        print(f"round trip {load_index(str(folder)).motion_features} -> {args.to} -> back over {args.check} samples "
              f"of {folder}: largest difference {round_trip_error(folder, args.to, args.check):.2e}")
    return code


if __name__ == "__main__":
    sys.exit(main())
