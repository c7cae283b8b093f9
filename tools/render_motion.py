"""Render a motion file to an mp4 (and optionally a PNG strip of frames).

    trimo-render INPUT --out clip.mp4 [--body capsule|stick|avatar]
        [--backend auto|egl|numpy] [--size 128] [--fps 20] [--strip 4]

INPUT: joints .npy (T, 22, 3) metres Y up (at --source-fps, default 20), HumanML3D features .npy
(T, 263), or mocap (.bvh, .amc with its .asf, AMASS .npz with --model-dir). With --body avatar an
AMASS .npz is posed from its own SMPL-H parameters; any other input through IK of its joints.
--model-dir: a SMPL-family folder (.npz models) for the avatar, default the open avatar
(trimo-build-avatar).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from motion.features import features_to_joints, resample
from render import BACKENDS, BODIES, render_frames, render_mesh
from render.body_model import load_body_model
from shards.video_io import encode_mp4


def load_joints(path: Path, fps: float, source_fps: float | None, model_dir: str | None) -> np.ndarray:
    """Joints (T, 22, 3) at `fps` from any supported input."""
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim == 2 and array.shape[1] == 263:
            return np.asarray(features_to_joints(array.astype(np.float32), source=str(path)), np.float64)
        if array.ndim != 3 or array.shape[1:] != (22, 3):
            raise SystemExit(f"{path}: shape {array.shape}; expected joints (T, 22, 3) or features (T, 263)")
        return resample(array.astype(np.float64), source_fps or 20.0, fps, source=str(path))
    from motion.importers import load_motion

    motion = load_motion(path, body_model_dir=model_dir, fps=source_fps)
    return resample(motion.joints, motion.fps, fps, source=str(path))


def render_amass(path: Path, fps: float, size: int, backend: str, model_dir: str, model_type: str) -> np.ndarray:
    """Frames of an AMASS SMPL-H sequence posed from its own parameters (nearest source frames)."""
    with np.load(path, allow_pickle=False) as data:
        poses, trans = data["poses"], data["trans"]
        betas = data["betas"] if "betas" in data.files else None
        source_fps = float(np.asarray(data["mocap_framerate"]).reshape(-1)[0])
    pick = np.round(np.arange(0, len(poses) / source_fps, 1 / fps) * source_fps).astype(int)
    pick = pick[pick < len(poses)]
    body = load_body_model(model_dir, model_type)
    clip = body.clip_from_params(poses[pick, :3], poses[pick, 3:66], trans[pick], betas, z_up=True)
    return render_mesh(clip, size, fps, backend)


def save_strip(frames: np.ndarray, count: int, path: Path) -> Path:
    """`count` evenly spaced frames side by side as one PNG."""
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    Image.fromarray(np.concatenate(list(frames[picks]), axis=1)).save(path, optimize=True)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="output .mp4")
    parser.add_argument("--body", choices=BODIES, default="capsule")
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--size", type=int, default=128, help="square frame size in pixels (even)")
    parser.add_argument("--fps", type=float, default=20.0, help="video frame rate; the motion is resampled to it")
    parser.add_argument("--source-fps", type=float, default=None,
                        help="frame rate of a joints .npy (default 20) or .amc (default 120) input")
    parser.add_argument("--model-dir", default=None, help="SMPL-family model folder (avatar body, AMASS input)")
    parser.add_argument("--model-type", choices=("smpl", "smplh", "smplx"), default=None,
                        help="body model type (default: smplh for AMASS input, else smpl)")
    parser.add_argument("--start", type=float, default=0.0, help="first second to render")
    parser.add_argument("--duration", type=float, default=None, help="seconds to render (default: all)")
    parser.add_argument("--strip", type=int, default=0, help="also write N evenly spaced frames as one PNG")
    parser.add_argument("--strip-path", type=Path, default=None, help="where the PNG strip goes (default <out>.png)")
    args = parser.parse_args(argv)
    if not args.input.is_file():
        raise SystemExit(f"{args.input}: file not found")

    begin = time.time()
    first = int(round(args.start * args.fps))
    stop = None if args.duration is None else first + int(round(args.duration * args.fps))
    if args.input.suffix == ".npz" and args.body == "avatar":
        if args.model_dir is None:
            raise SystemExit(f"{args.input}: an AMASS clip needs its SMPL-H model; pass --model-dir")
        frames = render_amass(args.input, args.fps, args.size, args.backend, args.model_dir, args.model_type or "smplh")
        frames = frames[first:stop]
    else:
        joints = load_joints(args.input, args.fps, args.source_fps, args.model_dir)[first:stop]
        model_dir = args.model_dir if args.input.suffix != ".npz" else None  # the AMASS model only gave joints
        frames = render_frames(joints, args.size, args.fps, args.body, args.backend, model_dir=model_dir,
                               model_type=args.model_type or "smpl")
    if len(frames) == 0:
        raise SystemExit(f"{args.input}: no frames in the requested range")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(encode_mp4(frames, fps=args.fps))
    took = time.time() - begin
    print(f"wrote {args.out}: {len(frames)} frames {frames.shape[2]}x{frames.shape[1]} at {args.fps:g} fps "
          f"({took:.1f} s, {len(frames) / took:.0f} frames/s including loading)")
    if args.strip:
        strip_path = args.strip_path or args.out.with_suffix(".png")
        strip_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"wrote {save_strip(frames, args.strip, strip_path)}")


if __name__ == "__main__":
    main()
