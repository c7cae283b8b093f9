"""The demo corpus's third modality: an mp4 of the body performing the motion.

Frames come from shards.render (a capsule body drawn with moderngl on EGL, or its NumPy
rasterizer where EGL is missing; or the Pillow stick figure) and are encoded to H.264 with PyAV.
The reader samples only 8 frames per clip, so a low frame rate and a small frame are enough
(defaults 10 fps, 128 x 128).

We encode here rather than through shards.video_io.encode_mp4 because the build's time budget
needs x264's "veryfast" preset (about 2x faster than its "medium", same size at CRF 23 on these
flat frames) and one encoder thread per worker process; encode_mp4 fixes "medium" and lets x264
pick its thread count. The output is the same kind of stream (H.264, yuv420p, mp4) and decodes
with shards.video_io.decode_mp4.
"""
from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

from shards.demo.body import FPS
from shards.render import render_frames


def encode_h264(frames: np.ndarray, fps: float, crf: int = 23, preset: str = "veryfast") -> bytes:
    """mp4 bytes of uint8 RGB frames (N, H, W, 3), H and W even; single-threaded, so deterministic."""
    import av

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames have shape {frames.shape} dtype {frames.dtype}, expected uint8 (N, H, W, 3)")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        stream.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buf.getvalue()


def render_video(joints: np.ndarray, fps: float = 10.0, size: int = 128, body: str = "capsule",
                 backend: str = "auto", source_fps: float = FPS) -> bytes:
    """H.264 mp4 bytes of joints (T, 22, 3) sampled at `fps` (a divisor of `source_fps`), size x size.

    `body` and `backend` are shards.render's ("capsule" | "stick" | "avatar"; "auto" | "egl" | "numpy").
    """
    step = source_fps / fps if fps > 0 else 0.0
    if fps <= 0 or abs(step - round(step)) > 1e-9:
        raise ValueError(f"video fps {fps} must divide the motion's {source_fps} fps (e.g. 20, 10, 5)")
    if size % 2 or size < 16:
        raise ValueError(f"video size {size} must be even and >= 16 (H.264 yuv420p)")
    frames = render_frames(np.asarray(joints)[::int(round(step))], size=size, fps=fps, body=body, backend=backend)
    return encode_h264(frames, fps)
