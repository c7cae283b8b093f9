"""The demo corpus's third modality: an mp4 of the body performing the motion.

Frames come from render (a capsule body drawn with moderngl on EGL, or its NumPy
rasterizer where EGL is missing; or the Pillow stick figure) and are encoded to H.264 by
shards.video_io.encode_mp4 with x264's "veryfast" preset and one thread per worker process (the
build's time budget). The reader samples only 8 frames per clip, so a low frame rate and a small
frame are enough (defaults 10 fps, 128 x 128).
"""
from __future__ import annotations

import numpy as np

from demo.body import FPS
from render import render_frames
from shards.video_io import encode_mp4


def render_video(joints: np.ndarray, fps: float = 10.0, size: int = 128, body: str = "capsule",
                 backend: str = "auto", source_fps: float = FPS) -> bytes:
    """H.264 mp4 bytes of joints (T, 22, 3) sampled at `fps` (a divisor of `source_fps`), size x size.

    `body` and `backend` are render's ("capsule" | "stick" | "avatar"; "auto" | "egl" | "numpy").
    """
    step = source_fps / fps if fps > 0 else 0.0
    if fps <= 0 or abs(step - round(step)) > 1e-9:
        raise ValueError(f"video fps {fps} must divide the motion's {source_fps} fps (e.g. 20, 10, 5)")
    if size % 2 or size < 16:
        raise ValueError(f"video size {size} must be even and >= 16 (H.264 yuv420p)")
    frames = render_frames(np.asarray(joints)[::int(round(step))], size=size, fps=fps, body=body, backend=backend)
    return encode_mp4(frames, fps, preset="veryfast", threads=1)
