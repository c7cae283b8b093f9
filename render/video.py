"""Motion in, video out: `render_frames` (uint8 frames) and `render_joints` (mp4 bytes).

Bodies: "capsule" (built from the joints), "stick" (Pillow lines, for fast tests and previews),
"avatar" (a skinned SMPL-layout mesh posed through `smplx`: the open default avatar that
`tools/build_avatar.py` builds, or a user's SMPL/SMPL+H/SMPL-X folder via `model_dir`).
Backends: "egl" (moderngl, fast), "numpy" (no system dependencies), "auto" (EGL, else NumPy with
one logged warning per process).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path

import numpy as np

from render.camera import CameraConfig, follow_camera
from render.capsules import capsule_topology, capsule_vertices
from render.raster import render_numpy
from render.scene import MeshClip

BODIES = ("capsule", "stick", "avatar")
BACKENDS = ("auto", "egl", "numpy")
log = logging.getLogger(__name__)
# This thread's renderer and the process that made it (an EGL context is current in one thread;
# thread-local storage, unlike a dict keyed by thread id, does not hand a dead thread's context to
# a new thread that gets the same id).
_gl_local = threading.local()
_gl_error: Exception | None = None
_gl_pid: int | None = None
_gl_made = False                     # whether this process made a context
EGL_HINT = ("install the system GL libraries (Debian/Ubuntu: apt-get install -y --no-install-recommends "
            "libegl1 libgl1) and `pip install moderngl`, or pass backend='numpy'")


class RenderError(RuntimeError):
    """Bad input or an unusable backend; the message names the cause and the fix."""


class ForkedContextError(RuntimeError):
    """EGL refused in a child forked from a process that holds a context."""


def _create_gl_renderer():
    # Triton bundles its own LLVM; importing it after Mesa's llvmpipe (libLLVM-15) is loaded
    # segfaults the process (triton 3.9, Mesa 22.3), and torch._dynamo imports it on demand.
    # Loaded first, both work: so load it before the EGL context when it is installed.
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401

    from render.gl import GLRenderer

    return GLRenderer()


def gl_renderer():
    """This thread's OpenGL renderer, created on first use; raises RenderError if EGL can't start.

    Each process needs its own context, and each thread: a context is current in the thread that
    made it (a web server renders in its worker threads). A process forked from one that already
    made a context can't make another (Mesa's inherited locks hang it), so it gets a RenderError
    instead: render only in the workers, or start them with 'spawn' / 'forkserver'.
    """
    global _gl_error, _gl_pid, _gl_made
    pid = os.getpid()
    if _gl_pid != pid:
        inherited = _gl_made
        _gl_error, _gl_pid, _gl_made = None, pid, False
        if inherited:
            _gl_error = ForkedContextError("this process was forked after its parent created an OpenGL context; "
                                           "render only in worker processes or start them with 'spawn'")
    if getattr(_gl_local, "pid", None) == pid:
        return _gl_local.renderer
    if _gl_error is None:
        try:
            _gl_local.renderer, _gl_local.pid = _create_gl_renderer(), pid
            _gl_made = True
            return _gl_local.renderer
        except Exception as err:  # moderngl/glcontext raise plain Exceptions for missing EGL
            _gl_error = err
    hint = "" if isinstance(_gl_error, ForkedContextError) else f"; {EGL_HINT}"
    raise RenderError(f"OpenGL (EGL) cannot start: {type(_gl_error).__name__}: {_gl_error}{hint}")


def resolve_backend(backend: str) -> str:
    """"egl" or "numpy": what `backend` ("auto" | "egl" | "numpy") means on this machine."""
    if backend not in BACKENDS:
        raise RenderError(f"unknown render backend {backend!r}; choose one of {BACKENDS}")
    if backend == "numpy":
        return "numpy"
    try:
        gl_renderer()
        return "egl"
    except RenderError as err:
        if backend == "egl":
            raise
        if not getattr(resolve_backend, "warned", False):
            log.warning("%s; rendering with the NumPy rasterizer instead (slower)", err)
            resolve_backend.warned = True
        return "numpy"


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 8 or width < 8:
        raise RenderError(f"render size {width}x{height} is too small; use at least 8x8 pixels")
    return int(height), int(width)


def check_joints(joints: np.ndarray, where: str = "joints") -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3) or len(joints) == 0:
        raise RenderError(f"{where}: shape {joints.shape}, expected (T, 22, 3) joint positions in metres, Y up")
    if not np.isfinite(joints).all():
        raise RenderError(f"{where}: contains NaN or infinite positions; clean or drop the clip")
    return joints


def render_mesh(clip: MeshClip, size: int | tuple[int, int] = 128, fps: float = 20.0, backend: str = "auto",
                camera: CameraConfig = CameraConfig()) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of a mesh clip, the camera following `clip.root`."""
    size = _size(size)
    track = follow_camera(clip.root, clip.floor_y, fps, size, camera)
    if resolve_backend(backend) == "egl":
        return gl_renderer().render(clip, track, size)
    return render_numpy(clip, track, size)


def capsule_clip(joints: np.ndarray) -> MeshClip:
    """The capsule body of joints (T, 22, 3), standing on the floor at its lowest point."""
    vertices = capsule_vertices(joints)
    faces, _, colours = capsule_topology()
    return MeshClip(vertices, faces, colours, root=joints[:, 0], floor_y=float(vertices[..., 1].min()))


def render_frames(joints: np.ndarray, size: int | tuple[int, int] = 128, fps: float = 20.0,
                  body: str = "capsule", backend: str = "auto", camera: CameraConfig = CameraConfig(),
                  model_dir: str | Path | None = None, model_type: str = "smpl") -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of joints (T, 22, 3) (metres, Y up, SMPL joint order).

    `size` is one int (square) or (H, W). For body="avatar", `model_dir` is a folder with a
    SMPL-family model for `smplx.create` (default: the open avatar from tools/build_avatar.py).
    """
    joints = check_joints(joints)
    if body not in BODIES:
        raise RenderError(f"unknown body {body!r}; choose one of {BODIES}")
    if body == "stick":
        from render.stick import render_stick_figure

        height, width = _size(size)
        return render_stick_figure(joints, size=(height, width), line_width=max(1, height // 64))
    if body == "capsule":
        clip = capsule_clip(joints)
    else:
        from render.body_model import load_body_model

        clip = load_body_model(model_dir, model_type).clip_from_joints(joints)
    return render_mesh(clip, size, fps, backend, camera)


def render_joints(joints: np.ndarray, size: int | tuple[int, int] = 128, fps: float = 20.0,
                  body: str = "capsule", backend: str = "auto", camera: CameraConfig = CameraConfig(),
                  model_dir: str | Path | None = None, model_type: str = "smpl", crf: int = 23) -> bytes:
    """H.264 mp4 bytes of `render_frames(...)` at `fps`; H and W must be even (yuv420p)."""
    from shards.video_io import encode_mp4

    height, width = _size(size)
    if height % 2 or width % 2:
        raise RenderError(f"video size {width}x{height} must be even for H.264 (yuv420p); "
                          f"use e.g. {width + width % 2}x{height + height % 2}")
    frames = render_frames(joints, (height, width), fps, body, backend, camera, model_dir, model_type)
    return encode_mp4(frames, fps=fps, crf=crf)
