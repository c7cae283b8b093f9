"""Convert HumanML3D's released folder to trimo shards, one shard set per split.

    trimo-convert-humanml3d HUMANML3D_DIR -o OUT [--splits train,val,test] [--with-joints]
        [--min-frames 40] [--max-frames 199] [--filter-splits train,val] [--stats-convention per_dim]

HUMANML3D_DIR holds new_joint_vecs/, texts/, train.txt, val.txt, test.txt (new_joints/ for
--with-joints). Mirrored `M` ids are converted as listed in the split files. Writes
OUT/<split>/shard-*.tar + shards.json; feature statistics come from the train split.
"""
from __future__ import annotations

import argparse
import sys

from shards.converters.common import add_write_args, run_converter, write_dataset, write_options
from shards.converters.humanml3d import DATASET, humanml3d_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="HumanML3D folder")
    parser.add_argument("--splits", default="train,val,test", help="split files to convert")
    parser.add_argument("--no-events", action="store_true", help="do not decompose captions into events")
    add_write_args(parser)
    args = parser.parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    return run_converter("convert_humanml3d", lambda: write_dataset(
        {s: humanml3d_samples(args.root, s, with_joints=args.with_joints, events=not args.no_events,
                              num_workers=args.workers) for s in splits},
        args.out, dataset=DATASET, **write_options(args)), args.out, args.dry_run)

if __name__ == "__main__":
    sys.exit(main())
