"""Stick-figure rendering of a (T, 22, 3) joint sequence, and video writing (MP4 or GIF).

The view is orthographic from the front-side and slightly above. By default the camera follows
the root on the floor plane, so walking shows as the floor grid sliding under the figure;
`follow=False` keeps it still over the clip's whole path (framed to fit), so travel and turns
show. The left side is drawn blue and the right red, with a legend in the corner. Drawing is
Pillow lines: fast enough for previews of whole datasets.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from shards.video_io import encode_mp4

# SMPL kinematic chains (spec): right leg, left leg, spine, right arm, left arm
CHAINS = ([0, 2, 5, 8, 11], [0, 1, 4, 7, 10], [0, 3, 6, 9, 12, 15], [9, 14, 17, 19, 21], [9, 13, 16, 18, 20])
CHAIN_COLOURS = ((214, 39, 40), (31, 119, 180), (40, 40, 40), (214, 39, 40), (31, 119, 180))
BACKGROUND = (255, 255, 255)
FLOOR = (200, 200, 200)


def _view_matrix(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """World -> camera rotation; camera x = image right, camera y = image up."""
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    turn = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    tilt = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return tilt @ turn


def render_stick_figure(joints: np.ndarray, size: tuple[int, int] = (256, 256), azimuth_deg: float = 30.0,
                        elevation_deg: float = 15.0, metres_tall: float = 2.4, line_width: int = 3,
                        follow: bool = True) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of the skeleton; `metres_tall` of world fit the image height
    (with `follow=False`, at least the whole path of the root does)."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3):
        raise ValueError(f"joints have shape {joints.shape}, expected (T, 22, 3)")
    height, width = size
    view = _view_matrix(azimuth_deg, elevation_deg)
    centre = np.array([width / 2, height * 0.8])
    fixed_xz = None
    if not follow:   # one camera for the clip: centred on the path's middle, wide enough for all of it
        lo, hi = joints[:, 0, [0, 2]].min(0), joints[:, 0, [0, 2]].max(0)
        fixed_xz = (lo + hi) / 2
        metres_tall = max(metres_tall, 1.5 * float(np.linalg.norm(hi - lo)) + 1.0)
        centre = np.array([width / 2, height * 0.65])
    scale = height / metres_tall

    def to_pixels(points: np.ndarray, root_xz: np.ndarray) -> np.ndarray:
        rel = points - np.array([root_xz[0], 0.0, root_xz[1]])
        cam = rel @ view.T
        return np.stack([centre[0] + scale * cam[:, 0], centre[1] - scale * cam[:, 1]], axis=1)

    grid = np.arange(-3.0, 3.01, 0.5)
    frames = np.empty((len(joints), height, width, 3), np.uint8)
    for t, pose in enumerate(joints):
        root_xz = pose[0, [0, 2]] if fixed_xz is None else fixed_xz
        image = Image.new("RGB", (width, height), BACKGROUND)
        draw = ImageDraw.Draw(image)
        base = np.round(root_xz / 0.5) * 0.5  # grid lines stay fixed in the world
        for g in grid:
            for a, b in (((base[0] + g, base[1] - 3), (base[0] + g, base[1] + 3)),
                         ((base[0] - 3, base[1] + g), (base[0] + 3, base[1] + g))):
                ends = to_pixels(np.array([[a[0], 0.0, a[1]], [b[0], 0.0, b[1]]]), root_xz)
                draw.line([tuple(ends[0]), tuple(ends[1])], fill=FLOOR, width=1)
        pix = to_pixels(pose, root_xz)
        for chain, colour in zip(CHAINS, CHAIN_COLOURS):
            draw.line([tuple(pix[j]) for j in chain], fill=colour, width=line_width, joint="curve")
        head = pix[15]
        r = max(2, line_width * 2)
        draw.ellipse([head[0] - r, head[1] - r, head[0] + r, head[1] + r], outline=CHAIN_COLOURS[2], width=2)
        draw.text((4, 2), "left", fill=CHAIN_COLOURS[1])
        draw.text((4, 14), "right", fill=CHAIN_COLOURS[0])
        frames[t] = np.asarray(image)
    return frames


def write_video(frames: np.ndarray, path: str | Path, fps: float = 20.0) -> Path:
    """Write (T, H, W, 3) uint8 frames as H.264 MP4 (shards.video_io.encode_mp4; odd sizes padded
    to even) or GIF."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty uint8 (T, H, W, 3) array, got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
        return path
    if suffix != ".mp4":
        raise ValueError(f"{path}: unsupported video extension {suffix!r}; use .mp4 or .gif")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2  # yuv420p needs even sizes
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path.write_bytes(encode_mp4(frames, fps=fps))
    return path
