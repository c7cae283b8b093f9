"""mp4 bytes in and out: encode frames with PyAV (libx264, yuv420p), decode l_v uniformly
sampled frames with PyAV or decord.

Backends for decoding (`backend=`):
- "pyav" (the reader's default): FFmpeg through PyAV; corrupt input raises an exception.
- "decord": decord first, PyAV when decord raises. decord 0.6.0 is not safe on untrusted bytes:
  in our fuzz run (bit flips and truncations of a 32x32 H.264 mp4) it crashed the interpreter
  with a segmentation fault, which no `except` can catch and which would kill a DataLoader
  worker. It also fails on widths that are not a multiple of 32. Use it only on trusted shards.
Frames come back as uint8 (l_v, H, W, 3) RGB.
"""
from __future__ import annotations

import io
import logging

import numpy as np
import torch
import torch.nn.functional as F

from shards.schema import ShardError

BACKENDS = ("pyav", "decord")
logging.getLogger("libav").setLevel(logging.CRITICAL)  # FFmpeg prints every corrupt macroblock


def encode_mp4(frames: np.ndarray, fps: float = 20.0, crf: int = 23, preset: str = "medium",
               threads: int = 0) -> bytes:
    """H.264 mp4 bytes of uint8 RGB frames (N, H, W, 3); H and W must be even (yuv420p).

    `threads=1` makes the bytes independent of the machine (bulk builds run one encoder per
    worker process anyway); 0 lets x264 choose. "veryfast" encodes about 2x faster than
    "medium" at a similar size for rendered scenes."""
    import av
    from fractions import Fraction

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ShardError(f"encode_mp4: frames have shape {frames.shape} dtype {frames.dtype}, expected uint8 (N, H, W, 3)")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ShardError(f"encode_mp4: frame size {width}x{height} must be even for yuv420p; pad or resize the render")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        if threads:
            stream.thread_count = threads
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buf.getvalue()


def uniform_indices(num_available: int, num_frames: int, first: int = 0) -> np.ndarray:
    """Centres of `num_frames` equal segments of [first, first + num_available) (repeats when short)."""
    if num_available <= 0:
        raise ValueError("uniform_indices: no frames to sample from")
    return first + ((np.arange(num_frames) + 0.5) * num_available / num_frames).astype(np.int64)


def decode_mp4(data: bytes, num_frames: int = 8, size: int | tuple[int, int] | None = 224,
               start: float | None = None, end: float | None = None, backend: str = "pyav",
               where: str = "video.mp4") -> np.ndarray:
    """Decode `num_frames` frames sampled uniformly in [start, end) seconds (whole video if None).

    `size` (H, W) or one int for square output resizes with antialiased bilinear interpolation;
    None keeps the stored size. Raises ShardError(reason="bad_video") when the bytes don't decode.
    """
    if backend not in BACKENDS:
        raise ValueError(f"video backend {backend!r} is not one of {BACKENDS}")
    frames = None
    if backend == "decord":
        try:
            frames = _decode_decord(data, num_frames, start, end)
        except Exception:  # decord raises DECORDError / RuntimeError; PyAV gets a second try
            frames = None
    if frames is None:
        try:
            frames = _decode_pyav(data, num_frames, start, end)
        except ShardError:
            raise
        except Exception as err:  # PyAV raises many FFmpeg error types (InvalidDataError, EOFError, ...)
            raise ShardError(f"{where}: cannot decode mp4 ({type(err).__name__}: {err})", "bad_video") from None
    return resize_frames(frames, size) if size is not None else frames


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize uint8 (N, H, W, 3) frames to `size` (H, W) with antialiased bilinear interpolation."""
    height, width = (size, size) if isinstance(size, int) else size
    if frames.shape[1:3] == (height, width):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _frame_range(count: int, fps: float, start: float | None, end: float | None) -> tuple[int, int]:
    if start is None or end is None or end <= 0:
        return 0, count
    first = min(max(int(round(start * fps)), 0), count - 1)
    stop = min(max(int(round(end * fps)), first + 1), count)
    return first, stop


def _decode_pyav(data: bytes, num_frames: int, start: float | None, end: float | None) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.video:
            raise ShardError("mp4 has no video stream", "bad_video")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 20)
        # Frame counts in mp4 headers can be missing or wrong on damaged files: decode all, then
        # pick. Only the picked frames are converted to RGB (the conversion costs more than decoding).
        decoded = list(container.decode(stream))
        if not decoded:
            raise ShardError("mp4 has no decodable frames", "bad_video")
        if len({(f.width, f.height) for f in decoded}) != 1:
            raise ShardError("mp4 frames change size mid-stream", "bad_video")
        first, stop = _frame_range(len(decoded), fps, start, end)
        picked = uniform_indices(stop - first, num_frames, first)
        # threads=1: by default every conversion starts and stops its own swscale thread pool,
        # which made decoding 1.8x slower (tools/bench_loader); loader workers are parallel anyway
        return np.stack([decoded[i].to_ndarray(format="rgb24", threads=1) for i in picked])


def _decode_decord(data: bytes, num_frames: int, start: float | None, end: float | None) -> np.ndarray:
    import decord

    reader = decord.VideoReader(io.BytesIO(data), num_threads=1)
    first, stop = _frame_range(len(reader), float(reader.get_avg_fps()), start, end)
    return reader.get_batch(list(uniform_indices(stop - first, num_frames, first))).asnumpy()
