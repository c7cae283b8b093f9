"""The zero-dependency backend: a NumPy z-buffer rasterizer with the same camera, light and floor
as the OpenGL one (`gl.py`), so both give the same image up to edge pixels.

Triangles of a chunk of frames are rasterized together: every triangle's bounding box is expanded
into candidate pixel centres, the ones inside the triangle keep an interpolated NDC depth (affine
in screen space, as in OpenGL), and per pixel the nearest candidate wins against the floor's depth.
"""
from __future__ import annotations

import numpy as np

from render.camera import CameraTrack
from render.scene import BACKGROUND, FLOOR_EXTENT, MeshClip, floor_colour, lambert, to_uint8

CHUNK_FRAMES = 16  # bounds memory: candidates are ~a few x H*W per frame


def _floor_layer(track: CameraTrack, frames: slice, floor_y: float, height: int, width: int):
    """Colour (n, H, W, 3) and NDC depth (n, H, W) of floor and background for each frame."""
    px = (np.arange(width) + 0.5) / width * 2 - 1
    py = 1 - (np.arange(height) + 0.5) / height * 2
    ndc = np.stack(np.broadcast_arrays(px[None, :], py[:, None], 1.0, 1.0), -1).reshape(-1, 4)
    indices = range(*frames.indices(len(track.eye)))
    colour = np.empty((len(indices), height * width, 3))
    depth = np.empty((len(indices), height * width))
    for i, t in enumerate(indices):  # per frame: 2-D matmuls are much faster than batched ones here
        far = ndc @ np.linalg.inv(track.view_proj[t]).T
        direction = far[:, :3] / far[:, 3:] - track.eye[t]
        with np.errstate(divide="ignore", invalid="ignore"):
            along = (floor_y - track.eye[t, 1]) / direction[:, 1]
        point = track.eye[t] + along[:, None] * direction
        offset = np.abs(point[:, [0, 2]] - track.target[t, [0, 2]])
        hit = (along > 0) & (along <= 1) & (offset.max(-1) <= FLOOR_EXTENT)
        clip = point @ track.view_proj[t, :, :3].T + track.view_proj[t, :, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            depth[i] = np.where(hit, clip[:, 2] / clip[:, 3], np.inf)
        colour[i] = BACKGROUND
        distance = np.linalg.norm(point[hit] - track.eye[t], axis=-1)
        colour[i, hit] = floor_colour(point[hit, 0], point[hit, 2], distance)
    return colour.reshape(-1, height, width, 3), depth.reshape(-1, height, width)


def _face_shades(verts: np.ndarray, faces: np.ndarray, colours: np.ndarray, eye: np.ndarray) -> np.ndarray:
    """Flat Lambert colour (n, F, 3) per face; normals turned towards the eye like gl.py's."""
    world = verts[:, faces]  # (n, F, 3, 3)
    normal = np.cross(world[:, :, 1] - world[:, :, 0], world[:, :, 2] - world[:, :, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    towards_eye = eye[:, None, :] - world[:, :, 0]
    normal *= np.where(np.einsum("nfi,nfi->nf", normal, towards_eye) < 0, -1.0, 1.0)[..., None]
    return colours[faces].mean(1)[None] * lambert(normal)[..., None]


def _covered_pixels(x: np.ndarray, y: np.ndarray, z: np.ndarray, usable: np.ndarray, height: int, width: int):
    """Pixel centres inside each triangle: flat (frame, face) ids, pixel ids (frame-major) and
    NDC depths. x, y: screen coordinates (n, F, 3) with y down; z: NDC depth (n, F, 3)."""
    area = (x[..., 1] - x[..., 0]) * (y[..., 2] - y[..., 0]) - (x[..., 2] - x[..., 0]) * (y[..., 1] - y[..., 0])
    x0 = np.clip(np.ceil(x.min(-1) - 0.5), 0, width).astype(np.int64)
    x1 = np.clip(np.floor(x.max(-1) - 0.5), -1, width - 1).astype(np.int64)
    y0 = np.clip(np.ceil(y.min(-1) - 0.5), 0, height).astype(np.int64)
    y1 = np.clip(np.floor(y.max(-1) - 0.5), -1, height - 1).astype(np.int64)
    box_w = np.where(usable & (np.abs(area) > 1e-12), np.maximum(x1 - x0 + 1, 0), 0).ravel()
    count = box_w * np.maximum(y1 - y0 + 1, 0).ravel()
    owner = np.repeat(np.arange(count.size), count)  # one entry per pixel of every bounding box
    local = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
    px = x0.ravel()[owner] + local % np.maximum(box_w[owner], 1)
    py = y0.ravel()[owner] + local // np.maximum(box_w[owner], 1)
    cx, cy = px + 0.5, py + 0.5
    X, Y, Z = x.reshape(-1, 3)[owner], y.reshape(-1, 3)[owner], z.reshape(-1, 3)[owner]

    def edge(i: int, j: int) -> np.ndarray:
        return (X[:, j] - X[:, i]) * (cy - Y[:, i]) - (Y[:, j] - Y[:, i]) * (cx - X[:, i])

    a = area.ravel()[owner]
    l0, l1, l2 = edge(1, 2) / a, edge(2, 0) / a, edge(0, 1) / a  # barycentric, either winding
    depth = l0 * Z[:, 0] + l1 * Z[:, 1] + l2 * Z[:, 2]
    inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0) & (depth >= -1) & (depth <= 1)
    pixel = (owner // x.shape[1] * height + py) * width + px
    return owner[inside], pixel[inside], depth[inside]


def _rasterize_chunk(clip: MeshClip, track: CameraTrack, frames: slice, height: int, width: int) -> np.ndarray:
    verts = clip.vertices[frames].astype(np.float64)  # (n, V, 3)
    colour, zbuf = _floor_layer(track, frames, clip.floor_y, height, width)
    homo = np.concatenate([verts, np.ones(verts.shape[:-1] + (1,))], -1) @ track.view_proj[frames].transpose(0, 2, 1)
    w = homo[..., 3]
    ndc = homo[..., :3] / np.where(w > 1e-6, w, 1.0)[..., None]
    screen_x, screen_y = (ndc[..., 0] + 1) * (width / 2), (1 - ndc[..., 1]) * (height / 2)
    faces = clip.faces
    # triangles reaching behind the eye are dropped, not clipped: the camera never comes that close
    usable = np.all(w[:, faces] > 1e-6, -1)
    owner, pixel, depth = _covered_pixels(screen_x[:, faces], screen_y[:, faces], ndc[..., 2][:, faces], usable,
                                          height, width)
    in_front = depth < zbuf.ravel()[pixel]
    owner, pixel, depth = owner[in_front], pixel[in_front], depth[in_front]
    order = np.lexsort((depth, pixel))  # per pixel, nearest first
    pixel, owner = pixel[order], owner[order]
    nearest = np.ones(len(pixel), bool)
    nearest[1:] = pixel[1:] != pixel[:-1]
    shades = _face_shades(verts, faces, clip.colours, track.eye[frames])
    out = colour.reshape(-1, 3)
    out[pixel[nearest]] = shades.reshape(-1, 3)[owner[nearest]]
    return out.reshape(len(verts), height, width, 3)


def render_numpy(clip: MeshClip, track: CameraTrack, size: tuple[int, int]) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of the clip seen through the camera track."""
    height, width = size
    total = len(clip.vertices)
    frames = np.empty((total, height, width, 3), np.uint8)
    for start in range(0, total, CHUNK_FRAMES):
        chunk = slice(start, min(start + CHUNK_FRAMES, total))
        frames[chunk] = to_uint8(_rasterize_chunk(clip, track, chunk, height, width))
    return frames
