"""Convert BABEL + AMASS to trimo localization shards (MLP's TSLM benchmark).

    trimo-convert-babel BABEL_DIR --amass-root AMASS --body-model-dir SMPLH -o OUT
        [--val-fraction 0.1] [--no-extra] [--mirror] [--workers N]

BABEL_DIR holds train.json, val.json (and extra_train.json / extra_val.json, used unless
--no-extra). Frame-level raw_label moments, "transition" dropped; BABEL val becomes the test
split and --val-fraction of BABEL train (by sequence) the val split. No length filter by default
(localization motions are untrimmed); the motion is the whole AMASS sequence at 20 fps.
"""
from __future__ import annotations

import argparse
import sys

from shards.converters.babel import DATASET, babel_items, babel_samples
from shards.converters.common import add_write_args, run_converter, write_dataset, write_options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("babel_dir", help="BABEL release folder (train.json, val.json, ...)")
    parser.add_argument("--amass-root", required=True, help="folder of the extracted AMASS subsets")
    parser.add_argument("--body-model-dir", required=True,
                        help="SMPL-H models (SMPLH_<GENDER>.npz or <gender>/model.npz)")
    parser.add_argument("--gender", default=None, help="body model gender (default: each sequence's own)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of BABEL train sequences held out as val")
    parser.add_argument("--seed", type=int, default=0, help="seed of the val draw")
    parser.add_argument("--no-extra", action="store_true", help="ignore extra_train.json / extra_val.json")
    parser.add_argument("--mirror", action="store_true", help="add left/right mirrored copies (MLP does not for BABEL)")
    add_write_args(parser, min_frames=None, max_frames=None)
    args = parser.parse_args(argv)

    def write():
        items = babel_items(args.babel_dir, args.val_fraction, args.seed, extra=not args.no_extra)
        return write_dataset(
            {split: babel_samples(split_items, args.amass_root, args.body_model_dir, gender=args.gender,
                                  with_joints=args.with_joints, mirror=args.mirror, num_workers=args.workers,
                                  dry_run=args.dry_run, definition=args.features)
             for split, split_items in items.items()},
            args.out, dataset=DATASET, motion_features=args.features, **write_options(args))
    return run_converter("convert_babel", write, args.out, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
