"""Render a stick-figure preview (MP4 or GIF) of joints, features or any mocap file.

    trimo-preview INPUT -o OUT.mp4|OUT.gif [--fps F] [--size 256] [--start S] [--end S] [--fixed-camera]
        [--mapping ...] [--body-model-dir DIR]

INPUT: a `.npy` of joints (T, 22, 3) or of HumanML3D features (T, 263) (told apart by shape;
features are 20 fps and decoded with motion.features.features_to_joints), or any file
`trimo-convert` reads (.bvh, .amc, AMASS .npz), shown after canonicalization at 20 fps.
--start/--end (seconds) show a piece of a long take; --fixed-camera keeps the view still so that
travel and turns show (by default it follows the body). The legend names the sides' colours.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from motion.importers import MotionImportError, load_motion
from motion.importers.common import frame_range
from render.stick import render_stick_figure, write_video

FEATURE_FPS = 20.0


def load_for_preview(path: Path, fps: float | None = None, **load_kw) -> tuple[np.ndarray, float]:
    """Joints (T, 22, 3) and their frame rate for any supported input."""
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise MotionImportError(f"{path}: cannot read .npy ({err})") from None
        if arr.ndim == 2 and arr.shape[1] == 263:
            from motion.features import features_to_joints

            if not np.isfinite(arr).all() or len(arr) < 1:
                raise MotionImportError(f"{path}: features contain NaN/inf or no frames")
            return features_to_joints(arr), fps or FEATURE_FPS
        if arr.ndim == 3 and arr.shape[1:] == (22, 3):
            motion = load_motion(path, fps=fps or FEATURE_FPS)
            return motion.joints, motion.fps
        raise MotionImportError(
            f"{path}: array of shape {arr.shape} is neither joints (T, 22, 3) nor features (T, 263)")
    motion = load_motion(path, fps=fps, **load_kw)
    return motion.to_canonical(), FEATURE_FPS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trimo-preview", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True, help="output .mp4 or .gif")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of a joints .npy (default 20)")
    parser.add_argument("--size", type=int, default=256, help="frame height and width in pixels")
    parser.add_argument("--mapping", default=None, help="joint mapping preset or file for .bvh/.amc")
    parser.add_argument("--units", default="auto", help="BVH length unit")
    parser.add_argument("--body-model-dir", type=Path, default=None, help="SMPL-H models for AMASS .npz")
    parser.add_argument("--start", type=float, default=None, help="first second shown (default: the start)")
    parser.add_argument("--end", type=float, default=None, help="last second shown (default: the end)")
    parser.add_argument("--fixed-camera", action="store_true", help="keep the camera still over the whole path")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() not in (".mp4", ".gif"):
        print(f"trimo-preview: {args.out}: output must end in .mp4 or .gif", file=sys.stderr)
        return 2
    try:
        joints, fps = load_for_preview(args.input, args.fps, mapping=args.mapping, units=args.units,
                                       body_model_dir=args.body_model_dir)
    except (ValueError, OSError) as err:
        print(f"trimo-preview: {err}", file=sys.stderr)
        return 1
    joints = joints[frame_range(len(joints), fps, args.start, args.end)]
    if len(joints) == 0:
        print(f"trimo-preview: --start/--end leave no frame of {args.input}", file=sys.stderr)
        return 1
    frames = render_stick_figure(joints, size=(args.size, args.size), follow=not args.fixed_camera)
    write_video(frames, args.out, fps)
    print(f"trimo-preview: wrote {len(frames)} frames at {fps:g} fps to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
