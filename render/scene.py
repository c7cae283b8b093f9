"""What every backend draws, in one place so their images agree: flat Lambert shading under one
directional light, a checkered floor, a plain background."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LIGHT_DIRECTION = np.array([0.35, 0.85, 0.40]) / np.linalg.norm([0.35, 0.85, 0.40])  # towards the light
AMBIENT, DIFFUSE = 0.35, 0.65
BACKGROUND = np.array([0.93, 0.94, 0.96])
FLOOR_LIGHT, FLOOR_DARK = np.array([0.80, 0.80, 0.78]), np.array([0.62, 0.62, 0.60])
CHECKER_SIZE = 0.5   # metres per floor tile
FLOOR_EXTENT = 30.0  # the floor is a square of +-30 m around the camera's look-at point
# far tiles shrink below a pixel and alias (and cost bits in the video): fade them to their mean
FADE_NEAR, FADE_FAR = 5.0, 12.0  # metres from the eye


@dataclass
class MeshClip:
    """A body to draw: vertices (T, V, 3) world metres, faces (F, 3), colours (V, 3) in [0, 1],
    the root track (T, 3) the camera follows, and the floor height."""
    vertices: np.ndarray
    faces: np.ndarray
    colours: np.ndarray
    root: np.ndarray
    floor_y: float


def lambert(normals: np.ndarray) -> np.ndarray:
    """Brightness factor for unit normals (..., 3) facing the viewer."""
    return AMBIENT + DIFFUSE * np.clip(normals @ LIGHT_DIRECTION, 0.0, None)


def floor_colour(x: np.ndarray, z: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Shaded colour (..., 3) of floor points `distance` metres from the eye; the normal is +Y."""
    dark = (np.floor(x / CHECKER_SIZE) + np.floor(z / CHECKER_SIZE)) % 2 == 1
    base = np.where(dark[..., None], FLOOR_DARK, FLOOR_LIGHT)
    fade = np.clip((distance - FADE_NEAR) / (FADE_FAR - FADE_NEAR), 0.0, 1.0)[..., None]
    base = base * (1 - fade) + (FLOOR_DARK + FLOOR_LIGHT) / 2 * fade
    return base * lambert(np.array([0.0, 1.0, 0.0]))


def to_uint8(colours: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(colours * 255.0), 0, 255).astype(np.uint8)
