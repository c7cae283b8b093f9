"""Convert HumanML3D's released folder to trimo shards, one shard set per split.

    trimo-convert-humanml3d HUMANML3D_DIR -o OUT [--features released|trimo|humanml3d] [--splits train,val,test]
        [--with-joints]
        [--min-frames 40] [--max-frames 199] [--filter-splits train,val] [--stats-convention per_dim]

HUMANML3D_DIR holds new_joint_vecs/, texts/, train.txt, val.txt, test.txt (new_joints/ for
--with-joints and --features trimo). --features released (default) keeps HumanML3D's features, to
compare with or start from models trained on the released files; --features trimo recomputes them
from new_joints/ like every other trimo source (heading-invariant, exactly mirrorable), so the set
can be mixed with KIT-ML, BABEL, your own mocap and the demo corpus; --features humanml3d
recomputes the released definition from new_joints/ with trimo's implementation. The index
records which definition the set holds. Mirrored `M` ids are converted as listed in the split files. Writes
OUT/<split>/shard-*.tar + shards.json; feature statistics come from the train split.
"""
from __future__ import annotations

import argparse
import sys

from shards.converters.common import add_write_args, run_converter, write_dataset, write_options
from shards.converters.humanml3d import DATASET, MOTION_FEATURES_OF, humanml3d_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="HumanML3D folder")
    parser.add_argument("--splits", default="train,val,test", help="split files to convert")
    parser.add_argument("--no-events", action="store_true", help="do not decompose captions into events")
    parser.add_argument("--dataset", default=DATASET, help=f"dataset name in every sample and key (default: {DATASET})")
    parser.add_argument("--features", choices=tuple(MOTION_FEATURES_OF), default="released",
                        help="released: new_joint_vecs as shipped; trimo / humanml3d: that definition recomputed "
                             "from new_joints/ (see above)")
    add_write_args(parser, features=False)
    args = parser.parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    return run_converter("convert_humanml3d", lambda: write_dataset(
        {s: humanml3d_samples(args.root, s, with_joints=args.with_joints, events=not args.no_events,
                              num_workers=args.workers, features=args.features, dataset=args.dataset) for s in splits},
        args.out, dataset=args.dataset, motion_features=MOTION_FEATURES_OF[args.features],
        extra={"mirrored_ids": "an M prefix marks HumanML3D's mirrored copies (the released layout's rule)"},
        **write_options(args)),
        args.out, args.dry_run)

if __name__ == "__main__":
    sys.exit(main())
