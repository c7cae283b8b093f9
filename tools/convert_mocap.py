"""Convert mocap files (BVH, ASF/AMC, AMASS npz, joint npy) to canonical joints and 263-d features.

    trimo-convert INPUT [INPUT ...] -o OUT_DIR [--mapping lafan1|cmu|mixamo|FILE.json|FILE.yaml]
                  [--units auto|cm|m|mm|inch] [--body-model-dir DIR] [--gender G] [--fps F]
                  [--features trimo|humanml3d] [--start S] [--end S]

INPUT is a file or a folder (searched recursively for .bvh, .amc, .npz, .npy). For each input
`<name>` it writes `<name>.joints.npy` (T, 22, 3) float32 (uniform skeleton, floor at 0, first
frame facing +Z, 20 fps) and `<name>.features.npy` (T-1, 263) float32, keeping the folder layout;
--features humanml3d computes HumanML3D's released definition instead of trimo's (for models
trained on the released files); --start/--end (seconds) convert a piece of each take.
A bad file is skipped with a one-line reason; the rest are converted.

Exit status: 0 = every file converted; 1 = at least one file failed (the others were written);
2 = nothing to convert (no input files found, or bad arguments).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from motion.importers import SUPPORTED_SUFFIXES, load_motion

EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING = 0, 1, 2
OUTPUT_SUFFIXES = (".joints.npy", ".features.npy")


def find_inputs(inputs: list[Path], out_dir: Path) -> list[tuple[Path, Path]]:
    """(file, output stem relative to out_dir) for every convertible file; our own outputs are skipped."""
    found = []
    out_dir = out_dir.resolve()
    for item in inputs:
        if item.is_file():
            found.append((item, Path(item.stem)))
            continue
        for path in sorted(item.rglob("*")):
            if (path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES
                    and not path.name.endswith(OUTPUT_SUFFIXES) and out_dir not in path.resolve().parents):
                found.append((path, path.relative_to(item).with_suffix("")))
    return found


def convert_file(path: Path, out_stem: Path, definition: str = "trimo", start: float | None = None,
                 end: float | None = None, **load_kw) -> tuple[Path, Path]:
    """Import one file (its [start, end) seconds) and write its canonical joints and features;
    returns the two paths."""
    from motion.features import joints_to_features

    motion = load_motion(path, **load_kw)
    if start is not None or end is not None:
        motion = motion.piece(start, end)
    joints = motion.to_canonical()
    features = joints_to_features(joints, definition=definition)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    joints_path = out_stem.parent / f"{out_stem.name}.joints.npy"
    features_path = out_stem.parent / f"{out_stem.name}.features.npy"
    np.save(joints_path, joints.astype(np.float32))
    np.save(features_path, features.astype(np.float32))
    return joints_path, features_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trimo-convert", description=__doc__.split("\n\n")[0],
        epilog="exit status: 0 all converted, 1 some files failed (the rest were written), 2 nothing to convert",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path, help="mocap files or folders (searched recursively)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--mapping", default=None,
                        help="joint mapping: preset lafan1 | mixamo | cmu, or a JSON/YAML file "
                             "(default: lafan1 for .bvh, cmu for .amc)")
    parser.add_argument("--units", default="auto", help="BVH length unit: auto, m, cm, mm, inch")
    parser.add_argument("--body-model-dir", type=Path, default=None, help="SMPL-H body models for AMASS .npz")
    parser.add_argument("--gender", default=None, help="AMASS body model gender (default: the file's)")
    parser.add_argument("--fps", type=float, default=None,
                        help="source frame rate where the file does not say it (.amc: 120, .npy: 20)")
    parser.add_argument("--asf", type=Path, default=None, help="ASF skeleton for .amc inputs (default: beside it)")
    parser.add_argument("--features", choices=("trimo", "humanml3d"), default="trimo",
                        help="263-d definition: trimo's or HumanML3D's released one")
    parser.add_argument("--start", type=float, default=None, help="first second of each take converted")
    parser.add_argument("--end", type=float, default=None, help="end (seconds) of the piece converted")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        print(f"trimo-convert: input(s) not found: {', '.join(missing)}", file=sys.stderr)
        return EXIT_NOTHING
    jobs = find_inputs(args.inputs, args.out)
    if not jobs:
        print(f"trimo-convert: no {', '.join(SUPPORTED_SUFFIXES)} files under {', '.join(map(str, args.inputs))}",
              file=sys.stderr)
        return EXIT_NOTHING
    load_kw = dict(mapping=args.mapping, units=args.units, body_model_dir=args.body_model_dir,
                   gender=args.gender, fps=args.fps, asf=args.asf)
    failed = []
    for path, rel in tqdm(jobs, desc="converting", unit="file", disable=len(jobs) < 2):
        try:
            convert_file(path, args.out / rel, args.features, args.start, args.end, **load_kw)
        except Exception as err:  # one bad file must not stop a folder conversion
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            if not isinstance(err, (ValueError, OSError)):
                reason = f"{type(err).__name__}: {reason}"
            line = reason if reason.startswith(str(path)) else f"{path}: {reason}"
            tqdm.write(f"FAILED {line}", file=sys.stderr)
            failed.append(path)
    print(f"trimo-convert: converted {len(jobs) - len(failed)} of {len(jobs)} file(s) into {args.out}"
          + (f"; {len(failed)} failed" if failed else ""))
    return EXIT_SOME_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
