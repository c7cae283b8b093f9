"""Quaternion and rotation helpers shared by the skeleton, the 263-d features and the model.

Quaternions are (w, x, y, z), Hamilton product, rotating column vectors: qrot(q, v) = q v q*.
Every function works on NumPy arrays and torch tensors alike (same type out as in) and
broadcasts over leading dimensions, so the data path (NumPy float64) and the model (torch) use
one implementation. The continuous 6D form is the first two COLUMNS of the rotation matrix,
[R00, R10, R20, R01, R11, R21], as in Zhou et al. (CVPR 2019) and HumanML3D's `cont6d`.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def _stack(parts, x):
    return torch.stack(parts, dim=-1) if _is_torch(x) else np.stack(parts, axis=-1)


def _cross(a, b):
    return torch.linalg.cross(a, b, dim=-1) if _is_torch(a) else np.cross(a, b, axis=-1)


def _norm(x, keepdim: bool = True):
    if _is_torch(x):
        return torch.linalg.vector_norm(x, dim=-1, keepdim=keepdim)
    return np.linalg.norm(x, axis=-1, keepdims=keepdim)


def _dot(a, b):
    return (a * b).sum(-1, keepdim=True) if _is_torch(a) else (a * b).sum(-1, keepdims=True)


def _where(cond, a, b):
    return torch.where(cond, a, b) if _is_torch(cond) else np.where(cond, a, b)


def _like(values, x):
    """A constant array/tensor with x's type, dtype and device."""
    if _is_torch(x):
        return torch.as_tensor(values, dtype=x.dtype, device=x.device)
    return np.asarray(values, dtype=x.dtype)


def qnormalize(q: Array) -> Array:
    return q / _norm(q)


def qmul(a: Array, b: Array) -> Array:
    """Hamilton product a * b (apply b first, then a)."""
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return _stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], a)


def qinv(q: Array) -> Array:
    """Inverse of a unit quaternion (its conjugate)."""
    return q * _like([1.0, -1.0, -1.0, -1.0], q)


def qrot(q: Array, v: Array) -> Array:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4); leading dims broadcast."""
    qv = q[..., 1:]
    t = 2.0 * _cross(qv, v)
    return v + q[..., :1] * t + _cross(qv, t)


def qbetween(u: Array, v: Array) -> Array:
    """Shortest-arc unit quaternion rotating direction u onto direction v (any lengths).

    For opposite directions the arc is not unique; we turn by 180 degrees about an axis
    perpendicular to u (the reference code returns NaN there).
    """
    u = u / _norm(u)
    v = v / _norm(v)
    w = 1.0 + _dot(u, v)
    xyz = _cross(u, v)
    opposite = w[..., 0] < 1e-9
    if bool(opposite.any()):
        # any axis perpendicular to u: cross with X unless u is nearly parallel to X
        ex = _like([1.0, 0.0, 0.0], u) + 0 * u
        ey = _like([0.0, 1.0, 0.0], u) + 0 * u
        use_y = (abs(u[..., 0]) > 0.9)[..., None]
        axis = _cross(u, _where(use_y, ey, ex))
        axis = axis / _norm(axis)
        w = _where(opposite[..., None], 0 * w, w)
        xyz = _where(opposite[..., None], axis, xyz)
    if _is_torch(u):
        q = torch.cat([w, xyz], dim=-1)
    else:
        q = np.concatenate([w, xyz], axis=-1)
    return qnormalize(q)


def yaw_quat(angle: Array) -> Array:
    """Rotation by `angle` radians about +Y (maps +Z towards +X for positive angles)."""
    half = 0.5 * angle
    zero = 0 * half
    if _is_torch(angle):
        return torch.stack([torch.cos(half), zero, torch.sin(half), zero], dim=-1)
    return np.stack([np.cos(half), zero, np.sin(half), zero], axis=-1)


def quat_to_matrix(q: Array) -> Array:
    """Unit quaternions (..., 4) -> rotation matrices (..., 3, 3)."""
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    m = _stack(rows, q)
    return m.reshape(*m.shape[:-1], 3, 3)


def matrix_to_cont6d(m: Array) -> Array:
    """Rotation matrices (..., 3, 3) -> first two columns, (..., 6)."""
    if _is_torch(m):
        return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def quat_to_cont6d(q: Array) -> Array:
    return matrix_to_cont6d(quat_to_matrix(q))


def cont6d_to_matrix(d6: Array) -> Array:
    """(..., 6) -> rotation matrices by Gram-Schmidt on the two columns (Zhou et al.)."""
    a, b = d6[..., :3], d6[..., 3:]
    c0 = a / _norm(a)
    c2 = _cross(c0, b)
    c2 = c2 / _norm(c2)
    c1 = _cross(c2, c0)
    if _is_torch(d6):
        return torch.stack([c0, c1, c2], dim=-1)
    return np.stack([c0, c1, c2], axis=-1)


def slerp(q0: Array, q1: Array, t: Array | float) -> Array:
    """Spherical linear interpolation from q0 (t=0) to q1 (t=1) along the shorter arc."""
    dot = (q0 * q1).sum(-1)
    q1 = _where((dot < 0)[..., None], -q1, q1)
    dot = abs(dot)
    if _is_torch(q0):
        t = torch.as_tensor(t, dtype=q0.dtype, device=q0.device)
        theta = torch.acos(torch.clamp(dot, max=1.0))
        sin_theta = torch.sin(theta)
        near = sin_theta < 1e-6
        safe = torch.where(near, torch.ones_like(sin_theta), sin_theta)
        w0 = torch.where(near, 1 - t + 0 * theta, torch.sin((1 - t) * theta) / safe)
        w1 = torch.where(near, t + 0 * theta, torch.sin(t * theta) / safe)
    else:
        t = np.asarray(t, dtype=q0.dtype)
        theta = np.arccos(np.minimum(dot, 1.0))
        sin_theta = np.sin(theta)
        near = sin_theta < 1e-6
        safe = np.where(near, 1.0, sin_theta)
        w0 = np.where(near, 1 - t + 0 * theta, np.sin((1 - t) * theta) / safe)
        w1 = np.where(near, t + 0 * theta, np.sin(t * theta) / safe)
    return qnormalize(w0[..., None] * q0 + w1[..., None] * q1)
