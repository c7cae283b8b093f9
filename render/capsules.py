"""A body of capsules built from joint positions alone: a tapered cylinder per bone and a sphere
per joint, for sources that have joints but no body model (HumanML3D features, mocap).

Everything is vectorized over frames: one call builds the (T, V, 3) vertices of a whole clip
around fixed faces (F, 3). The left side is blue, the right red, the trunk grey, so a viewer (or a
video model) can tell left from right.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from motion.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS

# Radius at each joint in metres (for a body with default 0.82 m legs; scaled with the legs), by
# joint name without its side.
_RADIUS_BY_PART = {"pelvis": 0.11, "hip": 0.085, "spine1": 0.11, "knee": 0.06, "spine2": 0.11, "ankle": 0.045,
                   "spine3": 0.115, "foot": 0.04, "neck": 0.05, "collar": 0.06, "head": 0.10, "shoulder": 0.055,
                   "elbow": 0.045, "wrist": 0.035}
JOINT_RADII = np.array([_RADIUS_BY_PART[name.removeprefix("left_").removeprefix("right_")] for name in JOINT_NAMES])

LEFT_JOINTS = (1, 4, 7, 10, 13, 16, 18, 20)
RIGHT_JOINTS = (2, 5, 8, 11, 14, 17, 19, 21)
LEFT_COLOUR, RIGHT_COLOUR, TRUNK_COLOUR = (0.30, 0.50, 0.85), (0.85, 0.33, 0.30), (0.70, 0.70, 0.70)
BONES = np.array([(PARENTS[j], j) for j in range(1, NUM_JOINTS)])  # (21, 2) parent, child
DEFAULT_LEG_LENGTH = 0.82


def joint_colours() -> np.ndarray:
    colours = np.tile(np.array(TRUNK_COLOUR), (NUM_JOINTS, 1))
    colours[list(LEFT_JOINTS)] = LEFT_COLOUR
    colours[list(RIGHT_JOINTS)] = RIGHT_COLOUR
    return colours


@lru_cache(maxsize=4)
def _unit_sphere(rings: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """UV sphere: vertices (2 + (rings-1)*segments, 3) and outward-wound faces."""
    theta = np.pi * np.arange(1, rings) / rings
    phi = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([np.sin(theta)[:, None] * np.cos(phi), np.cos(theta)[:, None].repeat(segments, 1),
                     np.sin(theta)[:, None] * np.sin(phi)], -1).reshape(-1, 3)
    verts = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]])
    s = np.arange(segments)
    nxt = (s + 1) % segments
    faces = [np.stack([np.zeros(segments, int), 1 + nxt, 1 + s], -1)]
    for r in range(rings - 2):
        a, b = 1 + r * segments + s, 1 + r * segments + nxt
        c, d = a + segments, b + segments
        faces += [np.stack([a, b, d], -1), np.stack([a, d, c], -1)]
    last = len(verts) - 1
    base = 1 + (rings - 2) * segments
    faces.append(np.stack([np.full(segments, last), base + s, base + nxt], -1))
    return verts, np.concatenate(faces)


@lru_cache(maxsize=4)
def capsule_topology(segments: int = 10, rings: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces (F, 3) of the whole body, and per-vertex joint index and colour (V,), (V, 3).

    Vertex order: for every bone, a ring at the parent then a ring at the child (2 * segments);
    then a sphere per joint.
    """
    s = np.arange(segments)
    nxt = (s + 1) % segments
    tube = np.concatenate([np.stack([s, nxt, segments + nxt], -1), np.stack([s, segments + nxt, segments + s], -1)])
    sphere_verts, sphere_faces = _unit_sphere(rings, segments)
    tube_size, sphere_size = 2 * segments, len(sphere_verts)
    faces = [tube + b * tube_size for b in range(len(BONES))]
    offset = len(BONES) * tube_size
    faces += [sphere_faces + offset + j * sphere_size for j in range(NUM_JOINTS)]
    owner = np.concatenate([np.repeat(BONES[:, 1], tube_size), np.repeat(np.arange(NUM_JOINTS), sphere_size)])
    return np.concatenate(faces).astype(np.int32), owner, joint_colours()[owner].astype(np.float32)


def capsule_vertices(joints: np.ndarray, segments: int = 10, rings: int = 6,
                     radius_scale: float | None = None) -> np.ndarray:
    """Vertices (T, V, 3) float32 of the capsule body for joints (T, 22, 3); faces from
    `capsule_topology(segments, rings)`. `radius_scale` defaults to leg length / 0.82 m."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"joints have shape {joints.shape}, expected (T, 22, 3)")
    if radius_scale is None:
        legs = np.linalg.norm(joints[:, [2, 5]] - joints[:, [5, 8]], axis=-1).sum(-1)
        radius_scale = float(np.median(legs)) / DEFAULT_LEG_LENGTH
    radii = JOINT_RADII * radius_scale
    start, end = joints[:, BONES[:, 0]], joints[:, BONES[:, 1]]  # (T, 21, 3)
    axis = end - start
    axis /= np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)
    # any vector not parallel to the bone gives the ring's plane
    helper = np.where(np.abs(axis[..., 1:2]) < 0.9, np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]))
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    v = np.cross(axis, u)
    angle = 2 * np.pi * np.arange(segments) / segments
    circle = np.cos(angle)[:, None] * u[..., None, :] + np.sin(angle)[:, None] * v[..., None, :]  # (T, 21, S, 3)
    ring_start = start[..., None, :] + radii[BONES[:, 0]][:, None, None] * circle
    ring_end = end[..., None, :] + radii[BONES[:, 1]][:, None, None] * circle
    tubes = np.concatenate([ring_start, ring_end], axis=2).reshape(len(joints), -1, 3)
    unit, _ = _unit_sphere(rings, segments)
    spheres = joints[:, :, None, :] + radii[:, None, None] * unit  # (T, 22, Vs, 3)
    return np.concatenate([tubes, spheres.reshape(len(joints), -1, 3)], axis=1).astype(np.float32)
