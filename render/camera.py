"""A perspective camera that follows the body's root smoothly, shared by every backend.

The view direction is fixed in the world (azimuth about +Y from +Z, elevation above the floor);
only the look-at point moves: the root's ground track, Gaussian-smoothed over time so steps and
sway don't shake the image, pulled back towards the root when the smoothing lags by more than
`max_lag` metres (fast runs and turns keep the body in frame).
Matrices follow OpenGL conventions (column vectors, right-handed view, clip z in [-1, 1]).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d


@dataclass(frozen=True)
class CameraConfig:
    azimuth_deg: float = 30.0     # 0 looks at the body's rest front (+Z); positive turns towards +X
    elevation_deg: float = 15.0
    fov_deg: float = 40.0         # vertical field of view
    view_height: float = 2.5      # metres of world the image height spans at the look-at point
    target_height: float = 0.9    # look-at point above the floor, metres
    smooth_seconds: float = 0.5   # Gaussian sigma of the root track
    max_lag: float = 0.5          # metres the look-at point may trail the root on the floor
    near: float = 0.05
    far: float = 100.0


@dataclass(frozen=True)
class CameraTrack:
    """Per-frame matrices: view_proj (T, 4, 4) maps world to clip space; eye (T, 3)."""
    view_proj: np.ndarray
    eye: np.ndarray
    target: np.ndarray


def smooth_ground_track(root: np.ndarray, fps: float, config: CameraConfig) -> np.ndarray:
    """Smoothed (T, 2) x/z track of the root, never more than `config.max_lag` from it."""
    xz = np.asarray(root, dtype=np.float64)[:, [0, 2]]
    sigma = config.smooth_seconds * fps
    smooth = gaussian_filter1d(xz, sigma, axis=0, mode="nearest") if sigma > 0 and len(xz) > 1 else xz.copy()
    lag = smooth - xz
    dist = np.linalg.norm(lag, axis=-1, keepdims=True)
    return xz + lag * np.minimum(1.0, config.max_lag / np.maximum(dist, 1e-9))


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """World -> camera matrices (T, 4, 4) for eyes/targets (T, 3); the camera looks down -Z."""
    forward = target - eye
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, np.asarray(up))
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    true_up = np.cross(right, forward)
    view = np.zeros(eye.shape[:-1] + (4, 4))
    view[..., 0, :3], view[..., 1, :3], view[..., 2, :3] = right, true_up, -forward
    view[..., 0, 3] = -np.einsum("...i,...i", right, eye)
    view[..., 1, 3] = -np.einsum("...i,...i", true_up, eye)
    view[..., 2, 3] = np.einsum("...i,...i", forward, eye)
    view[..., 3, 3] = 1.0
    return view


def perspective(fov_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    """OpenGL projection matrix (4, 4); aspect = width / height."""
    f = 1.0 / np.tan(np.radians(fov_deg) / 2)
    return np.array([
        [f / aspect, 0, 0, 0],
        [0, f, 0, 0],
        [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
        [0, 0, -1, 0],
    ])


def follow_camera(root: np.ndarray, floor_y: float, fps: float, size: tuple[int, int],
                  config: CameraConfig = CameraConfig()) -> CameraTrack:
    """Camera matrices for every frame of a clip whose root (pelvis) moves along `root` (T, 3)."""
    height, width = size
    track = smooth_ground_track(root, fps, config)
    target = np.stack([track[:, 0], np.full(len(track), floor_y + config.target_height), track[:, 1]], -1)
    a, e = np.radians(config.azimuth_deg), np.radians(config.elevation_deg)
    direction = np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])
    distance = config.view_height / 2 / np.tan(np.radians(config.fov_deg) / 2)
    eye = target + distance * direction
    proj = perspective(config.fov_deg, width / height, config.near, config.far)
    return CameraTrack(view_proj=proj @ look_at(eye, target), eye=eye, target=target)
