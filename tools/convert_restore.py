"""Build HumanML3D (Restore) localization shards: HumanML3D segments put back into their AMASS sources.

    trimo-convert-restore HUMANML3D_DIR --amass-root AMASS --body-model-dir SMPLH -o OUT
        [--index-csv HUMANML3D_DIR/index.csv] [--no-mirror] [--workers N]

HUMANML3D_DIR holds texts/, train.txt, val.txt, test.txt and index.csv (from HumanML3D's
repository). AMASS is the amass_data folder HumanML3D's pipeline read. Each source split is the
most held-out split of its segments (test > val > train), so no source is in two splits; moments
longer than 80% of their source are dropped; mirrored copies are added (MLP).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

from shards.converters.common import add_write_args, run_converter, write_dataset, write_options
from shards.converters.restore import DATASET, SPLIT_PRIORITY, group_sources, read_split_files, restore_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="HumanML3D folder (texts/, split files, index.csv)")
    parser.add_argument("--index-csv", default=None, help="HumanML3D's index.csv (default ROOT/index.csv)")
    parser.add_argument("--amass-root", required=True, help="AMASS folder (HumanML3D's amass_data)")
    parser.add_argument("--body-model-dir", required=True,
                        help="SMPL-H models (SMPLH_<GENDER>.npz or <gender>/model.npz)")
    parser.add_argument("--gender", default=None, help="body model gender (default: each sequence's own)")
    parser.add_argument("--no-mirror", action="store_true", help="leave out the mirrored copies")
    parser.add_argument("--split-files", default=None,
                        help="folder with train.txt, val.txt, test.txt listing source paths (e.g. the MLP authors' "
                             "lists) instead of trimo's split by source")
    add_write_args(parser, min_frames=None, max_frames=None)
    args = parser.parse_args(argv)

    def write():
        counter: Counter = Counter()
        split_files = read_split_files(args.split_files) if args.split_files else None
        sources = group_sources(args.root, args.index_csv, counter=counter, split_files=split_files)
        print(f"{len(sources)} sources; left out: {dict(counter)}")
        by_split = {s: [src for src in sources if src.split == s] for s in SPLIT_PRIORITY}
        return write_dataset(
            {split: restore_samples(items, args.amass_root, args.body_model_dir, gender=args.gender,
                                    with_joints=args.with_joints, mirror=not args.no_mirror, num_workers=args.workers,
                                    dry_run=args.dry_run, definition=args.features)
             for split, items in by_split.items() if items},
            args.out, dataset=DATASET, extra={"segments_left_out": dict(counter)}, motion_features=args.features,
            **write_options(args))
    return run_converter("convert_restore", write, args.out, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
