"""Rendering motion to video: capsule, stick-figure and SMPL-family avatar bodies, drawn headless
with OpenGL (moderngl on EGL) or a NumPy rasterizer, encoded as H.264 mp4."""
from render.camera import CameraConfig
from render.scene import MeshClip
from render.video import (BACKENDS, BODIES, RenderError, capsule_clip, render_frames, render_joints,
                                 render_mesh, resolve_backend)

__all__ = ["BACKENDS", "BODIES", "CameraConfig", "MeshClip", "RenderError", "capsule_clip", "render_frames",
           "render_joints", "render_mesh", "resolve_backend"]
