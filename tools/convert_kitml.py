"""Convert KIT-ML (HumanML3D's release layout) to trimo shards with 22-joint, 263-d features at 20 fps.

    trimo-convert-kitml KIT_ML_DIR -o OUT [--splits train,val,test] [--with-joints]

KIT_ML_DIR holds new_joints/ (T, 21, 3) MMM joints at 12.5 fps, texts/ and the split files.
KIT's own 251-d features are not used: the MMM joints are mapped onto SMPL's 22 joints (collars
and spine2 interpolated; see shards/converters/kitml.py), resampled to 20 fps and re-featurized,
so results on these shards are not comparable with published KIT-ML numbers.
"""
from __future__ import annotations

import argparse
import sys

from shards.converters.common import add_write_args, run_converter, write_dataset, write_options
from shards.converters.kitml import DATASET, KIT_FPS, kitml_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="KIT-ML folder")
    parser.add_argument("--splits", default="train,val,test", help="split files to convert")
    parser.add_argument("--source-fps", type=float, default=KIT_FPS, help="frame rate of new_joints (12.5)")
    parser.add_argument("--no-events", action="store_true", help="do not decompose captions into events")
    add_write_args(parser)
    args = parser.parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    return run_converter("convert_kitml", lambda: write_dataset(
        {s: kitml_samples(args.root, s, with_joints=args.with_joints, events=not args.no_events,
                          source_fps=args.source_fps, num_workers=args.workers, dry_run=args.dry_run,
                          definition=args.features) for s in splits},
        args.out, dataset=DATASET, extra={"skeleton_source": "kit-mmm-21 mapped to smpl-22"},
        motion_features=args.features, **write_options(args)),
        args.out, args.dry_run)

if __name__ == "__main__":
    sys.exit(main())
