"""Make one shard set from your own mocap library and a table of captions.

    trimo-make-shards --captions CAPTIONS.csv|.jsonl --root MOCAP_DIR -o OUT [--dataset NAME]
        [--val 0.1 --test 0.1] [--seed 0] [--mapping PRESET|FILE] [--units auto] [--body-model-dir DIR]
        [--features trimo|humanml3d] [--mirror] [--video] [--localization] [--workers N] [--dry-run]

The table has a row per caption: path (relative to --root: .bvh, .amc with its .asf, AMASS .npz,
joint .npy), text, and optionally start, end (seconds inside the take), split, id, events
(shards/converters/own.py). Writes OUT/shard-*.tar and OUT/shards.json: one set holding every
split (takes without a split are drawn into val/test/train by take), the feature statistics of
its train samples, the command. Bad rows and files are skipped with a line each and counted; the
command fails only when nothing is written. --video renders every sample (capsule body, 10 fps,
128 px) for the video encoder. --localization also writes OUT/localization/shards.json: every take
that two or more rows cut into spans, untrimmed, with the spans as moments (the localization
head's data; same splits).
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from itertools import chain
from pathlib import Path

from shards.converters.common import Skipped, write_one_set
from shards.converters.own import assign_splits, group_takes, localization_sample, own_samples, read_table
from shards.reader import iter_decoded, load_index

VIDEO_FPS, VIDEO_SIZE = 10.0, 128


def with_video(sample: dict, size: int, keep_joints: bool) -> dict:
    """The sample with an mp4 of its canonical joints (20 fps, rendered at 10)."""
    from render import render_joints

    out = dict(sample, video=render_joints(sample["joints"][::2], size=size, fps=VIDEO_FPS))
    if not keep_joints:
        out.pop("joints")
    return out


def write_localization_set(retrieval_set: Path, out: Path, *, dataset: str, motion_features: str) -> int:
    """OUT/localization from the written set's takes that have two or more spans; samples written."""
    index = load_index(str(retrieval_set))
    takes = iter_decoded([str(retrieval_set / e.name) for e in index.shards], members=("motion.npy", "joints.npy",
                                                                                        "meta.json"))
    samples = (loc for take in takes if (loc := localization_sample(take)) is not None)
    return write_one_set(samples, str(out), dataset=dataset, motion_features=motion_features).converted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", required=True, type=Path, help="captions table (.csv with a header, or .jsonl)")
    parser.add_argument("--root", required=True, type=Path, help="folder the table's paths are relative to")
    parser.add_argument("-o", "--out", required=True, help="output folder (one shard set)")
    parser.add_argument("--dataset", default="own", help="dataset name in every sample and key (default: own)")
    parser.add_argument("--val", type=float, default=0.1, help="share of takes (without a split) for val")
    parser.add_argument("--test", type=float, default=0.1, help="share of takes (without a split) for test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split draw")
    parser.add_argument("--mapping", default=None, help="joint mapping preset (lafan1, cmu, mixamo) or JSON/YAML file")
    parser.add_argument("--units", default="auto", help="BVH length unit: auto, m, cm, mm, inch")
    parser.add_argument("--body-model-dir", default=None, help="SMPL-H body models, for AMASS .npz takes")
    parser.add_argument("--features", choices=("trimo", "humanml3d"), default="trimo",
                        help="263-d definition to compute (recorded in the index)")
    parser.add_argument("--mirror", action="store_true", help="add a left/right mirrored copy of every take")
    parser.add_argument("--video", action="store_true", help="render a video of every sample")
    parser.add_argument("--localization", action="store_true",
                        help="also write OUT/localization: takes with two or more spans, untrimmed, as moments")
    parser.add_argument("--no-joints", action="store_true", help="do not store joints.npy")
    parser.add_argument("--workers", type=int, default=0, help="processes for importing and rendering")
    parser.add_argument("--dry-run", action="store_true", help="read everything, report, write nothing")
    args = parser.parse_args(argv)
    try:
        takes, skipped = group_takes(read_table(args.captions), args.root, args.captions.name)
    except ValueError as err:
        print(f"make_shards: {err}", file=sys.stderr)
        return 1
    assign_splits(takes, args.val, args.test, args.seed)
    samples = own_samples(takes, args.root, dataset=args.dataset, table=args.captions.name, mapping=args.mapping,
                          units=args.units, body_model_dir=args.body_model_dir, definition=args.features,
                          mirror=args.mirror, with_joints=not args.no_joints or args.video,
                          num_workers=args.workers)
    localizable = 0

    def counted(stream):  # takes that would become localization samples (for --dry-run's report)
        nonlocal localizable
        for sample in stream:
            localizable += not isinstance(sample, Skipped) and localization_sample(sample) is not None
            yield sample

    render = partial(with_video, size=VIDEO_SIZE, keep_joints=not args.no_joints) if args.video else None
    report = write_one_set(counted(chain(skipped, samples)), args.out, dataset=args.dataset,
                           motion_features=args.features, convert=render, num_workers=args.workers,
                           dry_run=args.dry_run)
    verb = "would write" if args.dry_run else "wrote"
    print(f"make_shards: {verb} {report.converted} samples from {len(takes)} takes"
          + ("" if args.dry_run or not report.converted else f" -> {Path(args.out) / 'shards.json'}")
          + (f"; skipped {dict(report.skipped)}" if report.skipped else ""))
    if not report.converted:
        print("make_shards: nothing to write; see the skip reasons above", file=sys.stderr)
        return 1
    if args.localization:
        out = Path(args.out) / "localization"
        written = localizable if args.dry_run else write_localization_set(
            Path(args.out), out, dataset=args.dataset, motion_features=args.features)
        print(f"make_shards: {verb} {written} localization samples (takes with two or more spans)"
              + ("" if args.dry_run or not written else f" -> {out / 'shards.json'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
