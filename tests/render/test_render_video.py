"""Rendering joints to frames and mp4: sizes, frame counts, body in frame, motion, backends agree,
the NumPy fallback engages when EGL cannot start."""
import io
import logging
import threading

import numpy as np
import pytest

import render.video as video
from render import MeshClip, RenderError, capsule_clip, render_frames, render_joints, render_mesh
from fixtures.synthetic_motion import synthetic_clip

FIXTURE_AMC = "tests/fixtures/cmu_walk_60fps.amc"


def egl_available() -> bool:
    try:
        video.gl_renderer()
        return True
    except RenderError:
        return False


def body_mask(frames: np.ndarray, clip: MeshClip, backend: str = "numpy") -> np.ndarray:
    """Pixels where the body changes the image: the frames against the same scene without a body."""
    empty = MeshClip(clip.vertices[:, :0], clip.faces[:0], clip.colours[:0], clip.root, clip.floor_y)
    scene = render_mesh(empty, frames.shape[1:3], backend=backend)
    return np.abs(frames.astype(int) - scene.astype(int)).max(-1) > 12


@pytest.fixture(scope="module")
def cmu_walk(request) -> np.ndarray:
    from motion.importers import load_motion
    from motion.features import resample

    motion = load_motion(request.config.rootpath / FIXTURE_AMC, fps=60.0)
    return resample(motion.joints, 60.0, 20.0)[:40]


def test_mp4_decodes_to_expected_frames_and_matches_render():
    decord = pytest.importorskip("decord")
    joints = synthetic_clip(30, seed=0)
    data = render_joints(joints, size=64, fps=20, backend="numpy")
    reader = decord.VideoReader(io.BytesIO(data))
    assert len(reader) == 30
    decoded = reader.get_batch(list(range(30))).asnumpy()
    assert decoded.shape == (30, 64, 64, 3)
    assert reader.get_avg_fps() == pytest.approx(20.0)
    rendered = render_frames(joints, size=64, backend="numpy")
    mse = np.mean((decoded.astype(float) - rendered.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 28  # H.264 at CRF 23 keeps flat-shaded scenes near 39 dB


def test_non_square_size_and_stick_body():
    joints = synthetic_clip(6, seed=1)
    frames = render_frames(joints, size=(48, 64), backend="numpy")
    assert frames.shape == (6, 48, 64, 3) and frames.dtype == np.uint8
    sticks = render_frames(joints, size=64, body="stick")
    assert sticks.shape == (6, 64, 64, 3)
    assert (sticks < 100).any(axis=-1).sum() > 20  # dark limb lines on a white background


@pytest.mark.parametrize("source", ["synthetic", "cmu"])
def test_walking_body_stays_in_frame_and_moves(source, cmu_walk):
    joints = synthetic_clip(40, seed=2, speed=1.5) if source == "synthetic" else cmu_walk
    frames = render_frames(joints, size=64, backend="numpy")
    mask = body_mask(frames, capsule_clip(joints))
    for t, m in enumerate(mask):
        rows, cols = np.nonzero(m)
        assert len(rows) > 60, f"frame {t}: body covers only {len(rows)} pixels"
        assert rows.min() > 0 and cols.min() > 0 and rows.max() < 63 and cols.max() < 63, f"frame {t} touches a border"
    # the pose changes: body pixels differ between frames, not just the scrolling floor
    changed = [np.mean(mask[t] != mask[t + 5]) for t in range(0, len(mask) - 5, 5)]
    assert min(changed) > 0.005


def test_camera_follows_a_body_walking_far():
    joints = synthetic_clip(100, seed=3, speed=2.5, turn_rate=0.0)  # ~12 m in 5 s
    assert np.linalg.norm(joints[-1, 0, [0, 2]] - joints[0, 0, [0, 2]]) > 8
    frames = render_frames(joints, size=64, backend="numpy")
    mask = body_mask(frames, capsule_clip(joints))
    centre_cols = [np.nonzero(m)[1].mean() for m in mask]
    assert 16 < min(centre_cols) and max(centre_cols) < 48


def test_backends_agree_on_most_pixels():
    if not egl_available():
        pytest.skip("OpenGL via EGL cannot start here (needs libegl1 libgl1 and moderngl)")
    joints = synthetic_clip(20, seed=4)
    gl = render_frames(joints, size=96, backend="egl")
    cpu = render_frames(joints, size=96, backend="numpy")
    differ = np.abs(gl.astype(int) - cpu.astype(int)).max(-1) > 8
    assert differ.mean() < 0.02, f"{differ.mean():.3%} of pixels differ by more than 8 levels"
    assert np.abs(gl.astype(int) - cpu.astype(int)).mean() < 1.0


def test_numpy_fallback_when_egl_cannot_start(monkeypatch, caplog):
    def broken():
        raise RuntimeError("libEGL.so.1: cannot open shared object file")

    monkeypatch.setattr(video, "_create_gl_renderer", broken)
    monkeypatch.setattr(video, "_gl_local", threading.local())
    monkeypatch.setattr(video, "_gl_error", None)
    monkeypatch.setattr(video.resolve_backend, "warned", False, raising=False)
    joints = synthetic_clip(4, seed=5)
    with caplog.at_level(logging.WARNING, logger="render.video"):
        frames = render_frames(joints, size=32, backend="auto")
    assert "NumPy rasterizer" in caplog.text and "libEGL" in caplog.text
    np.testing.assert_array_equal(frames, render_frames(joints, size=32, backend="numpy"))
    with pytest.raises(RenderError, match="apt-get install"):
        render_frames(joints, size=32, backend="egl")


def test_another_thread_renders_with_its_own_context():
    """A context is current in the thread that made it: another thread (a web server's worker)
    gets its own and renders the same frames, also when it reuses a finished thread's id."""
    pytest.importorskip("moderngl")
    joints = synthetic_clip(6, seed=7)
    try:
        here = render_frames(joints, size=48, backend="egl")
    except RenderError as err:
        pytest.skip(f"EGL is not available here: {err}")
    def render_in_a_thread() -> dict:
        there = {}
        thread = threading.Thread(target=lambda: there.update(frames=render_frames(joints, size=48, backend="egl"),
                                                              renderer=video.gl_renderer()))
        thread.start()
        thread.join()
        return there

    first, second = render_in_a_thread(), render_in_a_thread()   # the second may reuse the first's thread id
    for there in (first, second):
        np.testing.assert_array_equal(there["frames"], here)
        assert there["renderer"] is not video.gl_renderer()
    assert second["renderer"] is not first["renderer"]


def test_bad_input_names_the_problem():
    joints = synthetic_clip(4, seed=6)
    with pytest.raises(RenderError, match=r"expected \(T, 22, 3\)"):
        render_frames(joints[:, :20])
    bad = joints.copy()
    bad[2, 3, 1] = np.nan
    with pytest.raises(RenderError, match="NaN"):
        render_frames(bad)
    with pytest.raises(RenderError, match="even"):
        render_joints(joints, size=63)
    with pytest.raises(RenderError, match="unknown render backend"):
        render_frames(joints, backend="vulkan")
    with pytest.raises(RenderError, match="unknown body"):
        render_frames(joints, body="robot")


def test_triton_import_after_egl_does_not_crash():
    """Triton's LLVM clashes with Mesa's when imported after an EGL context: the renderer loads it first."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed, so its LLVM cannot clash with Mesa's")
    if not egl_available():
        pytest.skip("OpenGL via EGL cannot start here (needs libegl1 libgl1 and moderngl)")
    code = ("import numpy as np; from render import render_frames; "
            "render_frames(np.zeros((2, 22, 3)) + np.linspace(0, 1.7, 22)[:, None], size=16, backend='egl'); "
            "import triton; print('survived')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "survived" in result.stdout, result.stderr[-500:]


def test_forked_child_of_a_gl_process_falls_back_instead_of_hanging():
    if not egl_available():
        pytest.skip("OpenGL via EGL cannot start here (needs libegl1 libgl1 and moderngl)")
    import multiprocessing

    joints = synthetic_clip(3, seed=13)
    with multiprocessing.get_context("fork").Pool(1) as pool:  # this process already holds a context
        auto = pool.apply_async(render_frames, (joints,), dict(size=32, backend="auto")).get(timeout=60)
        with pytest.raises(RenderError, match="forked"):
            pool.apply_async(render_frames, (joints,), dict(size=32, backend="egl")).get(timeout=60)
    np.testing.assert_array_equal(auto, render_frames(joints, size=32, backend="numpy"))
