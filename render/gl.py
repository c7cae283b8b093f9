"""The fast backend: OpenGL 3.3 through moderngl on a headless EGL context (Mesa llvmpipe on CPU
machines, the vendor's EGL through glvnd on GPU machines).

One context, two programs and one framebuffer per size live for the whole process (creating an
EGL context costs ~100 ms), so rendering thousands of clips pays for them once. Flat shading:
the fragment shader takes each triangle's normal from the screen-space derivatives of the world
position, turned towards the eye, the same rule `raster.py` applies per face.
"""
from __future__ import annotations

import numpy as np

from render.camera import CameraTrack
from render.scene import (AMBIENT, BACKGROUND, CHECKER_SIZE, DIFFUSE, FADE_FAR, FADE_NEAR, FLOOR_DARK,
                                 FLOOR_EXTENT, FLOOR_LIGHT, LIGHT_DIRECTION, MeshClip)

_VERTEX = """
#version 330
uniform mat4 view_proj;
in vec3 in_pos;
in vec3 in_colour;
out vec3 world;
out vec3 colour;
void main() {
    world = in_pos;
    colour = in_colour;
    gl_Position = view_proj * vec4(in_pos, 1.0);
}
"""
_BODY_FRAGMENT = """
#version 330
uniform vec3 eye;
uniform vec3 light;
uniform float ambient;
uniform float diffuse;
in vec3 world;
in vec3 colour;
out vec4 frag;
void main() {
    vec3 n = normalize(cross(dFdx(world), dFdy(world)));
    if (dot(n, eye - world) < 0.0) n = -n;
    frag = vec4(colour * (ambient + diffuse * max(dot(n, light), 0.0)), 1.0);
}
"""
_FLOOR_FRAGMENT = """
#version 330
uniform vec3 light_colour;
uniform vec3 dark_colour;
uniform float tile;
uniform vec3 eye;
uniform vec2 fade;
in vec3 world;
out vec4 frag;
void main() {
    bool dark = mod(floor(world.x / tile) + floor(world.z / tile), 2.0) == 1.0;
    float far = clamp((distance(world, eye) - fade.x) / (fade.y - fade.x), 0.0, 1.0);
    vec3 colour = mix(dark ? dark_colour : light_colour, (dark_colour + light_colour) * 0.5, far);
    frag = vec4(colour, 1.0);
}
"""


class GLRenderer:
    """A headless OpenGL renderer; raises whatever moderngl raises when EGL cannot start."""

    def __init__(self):
        import moderngl

        self.ctx = moderngl.create_standalone_context(backend="egl")
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.body = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_BODY_FRAGMENT)
        # the floor reuses the body's vertex shader; its unbound in_colour is never read
        self.floor = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FLOOR_FRAGMENT)
        shade = AMBIENT + DIFFUSE * max(float(LIGHT_DIRECTION[1]), 0.0)  # the floor's normal is +Y
        self.floor["light_colour"].value = tuple(FLOOR_LIGHT * shade)
        self.floor["dark_colour"].value = tuple(FLOOR_DARK * shade)
        self.floor["tile"].value = CHECKER_SIZE
        self.floor["fade"].value = (FADE_NEAR, FADE_FAR)
        self.body["light"].value = tuple(LIGHT_DIRECTION)
        self.body["ambient"].value, self.body["diffuse"].value = AMBIENT, DIFFUSE
        self.floor_vbo = self.ctx.buffer(reserve=4 * 3 * 4)
        self.floor_vao = self.ctx.vertex_array(self.floor, [(self.floor_vbo, "3f", "in_pos")],
                                               self.ctx.buffer(np.array([0, 1, 2, 0, 2, 3], "i4").tobytes()))
        self._framebuffers: dict[tuple[int, int], object] = {}
        self.renderer_name = self.ctx.info.get("GL_RENDERER", "unknown")

    def _framebuffer(self, height: int, width: int):
        if (height, width) not in self._framebuffers:
            self._framebuffers[(height, width)] = self.ctx.framebuffer(
                color_attachments=[self.ctx.renderbuffer((width, height), 4)],
                depth_attachment=self.ctx.depth_renderbuffer((width, height)))
        return self._framebuffers[(height, width)]

    def render(self, clip: MeshClip, track: CameraTrack, size: tuple[int, int]) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 of the clip seen through the camera track."""
        height, width = size
        fbo = self._framebuffer(height, width)
        fbo.use()
        vertices = np.ascontiguousarray(clip.vertices, dtype=np.float32)
        empty = len(clip.faces) == 0 or vertices.shape[1] == 0  # moderngl has no zero-size buffers
        vbo = self.ctx.buffer(reserve=max(vertices[0].nbytes, 12))
        cbo = self.ctx.buffer(np.ascontiguousarray(clip.colours, dtype=np.float32).tobytes() or bytes(12))
        ibo = self.ctx.buffer(np.ascontiguousarray(clip.faces, dtype=np.int32).tobytes() or bytes(12))
        vao = self.ctx.vertex_array(self.body, [(vbo, "3f", "in_pos"), (cbo, "3f", "in_colour")], ibo)
        corners = np.array([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1]], np.float64) * FLOOR_EXTENT
        frames = np.empty((len(vertices), height, width, 3), np.uint8)
        try:
            for t in range(len(vertices)):
                view_proj = np.ascontiguousarray(track.view_proj[t].T, dtype=np.float32).tobytes()  # column-major
                floor = corners + np.array([track.target[t, 0], clip.floor_y, track.target[t, 2]])
                self.floor_vbo.write(floor.astype(np.float32).tobytes())
                self.floor["view_proj"].write(view_proj)
                self.floor["eye"].value = tuple(track.eye[t])
                fbo.clear(*BACKGROUND, 1.0, depth=1.0)
                self.floor_vao.render()
                if not empty:
                    vbo.write(vertices[t].tobytes())
                    self.body["view_proj"].write(view_proj)
                    self.body["eye"].value = tuple(track.eye[t])
                    vao.render()
                image = np.frombuffer(fbo.read(components=3, alignment=1), np.uint8)
                frames[t] = image.reshape(height, width, 3)[::-1]  # GL rows run bottom to top
        finally:
            for obj in (vao, vbo, cbo, ibo):
                obj.release()
        return frames
