"""tools/render_motion.py and tools/build_avatar.py end to end on small inputs."""
import importlib.util
import io

import numpy as np
import pytest
from PIL import Image

from motion.features import canonicalize, joints_to_features
from fixtures.synthetic_motion import synthetic_clip
from test_render_body_model import write_tiny_smpl
from tools import render_motion


def decoded_frames(path) -> np.ndarray:

    data = path.read_bytes()
    import av

    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_joints_npy_to_mp4_and_strip(tmp_path):
    joints = synthetic_clip(40, fps=40.0, seed=10)
    np.save(tmp_path / "clip.npy", joints.astype(np.float32))
    out = tmp_path / "clip.mp4"
    render_motion.main([str(tmp_path / "clip.npy"), "--out", str(out), "--size", "64", "--source-fps", "40",
                        "--backend", "numpy", "--strip", "3"])
    frames = decoded_frames(out)
    assert frames.shape == (20, 64, 64, 3)  # 1 s at 40 fps resampled to 20 fps
    strip = np.asarray(Image.open(out.with_suffix(".png")))
    assert strip.shape == (64, 3 * 64, 3)


def test_features_npy_and_time_range(tmp_path):
    joints = canonicalize(synthetic_clip(31, seed=11))
    np.save(tmp_path / "motion.npy", joints_to_features(joints))
    out = tmp_path / "motion.mp4"
    render_motion.main([str(tmp_path / "motion.npy"), "--out", str(out), "--size", "32", "--backend", "numpy",
                        "--start", "0.5", "--duration", "0.5"])
    assert decoded_frames(out).shape == (10, 32, 32, 3)


def test_cmu_mocap_file(tmp_path, request):
    amc = request.config.rootpath / "tests/fixtures/cmu_walk_60fps.amc"
    out = tmp_path / "walk.mp4"
    render_motion.main([str(amc), "--source-fps", "60", "--out", str(out), "--size", "32", "--backend", "numpy"])
    assert decoded_frames(out).shape == (80, 32, 32, 3)  # 240 frames at 60 fps = 4 s


def test_amass_parameters_route(tmp_path):
    write_tiny_smpl(tmp_path / "models")
    rng = np.random.default_rng(0)
    poses = np.zeros((30, 156))
    poses[:, 3:66] = rng.normal(scale=0.2, size=(30, 63))
    trans = np.stack([np.linspace(0, 1, 30), np.zeros(30), np.full(30, 0.95)], -1)  # Z up
    np.savez(tmp_path / "seq.npz", poses=poses, trans=trans, betas=np.zeros(16), mocap_framerate=np.array(60.0))
    out = tmp_path / "seq.mp4"
    render_motion.main([str(tmp_path / "seq.npz"), "--out", str(out), "--body", "avatar", "--model-dir",
                        str(tmp_path / "models"), "--model-type", "smpl", "--size", "32", "--backend", "numpy"])
    frames = decoded_frames(out)
    assert frames.shape == (10, 32, 32, 3)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 30  # the body moved


def test_missing_input_and_missing_model_dir(tmp_path):
    with pytest.raises(SystemExit, match="not found"):
        render_motion.main([str(tmp_path / "nope.npy"), "--out", str(tmp_path / "x.mp4")])
    np.savez(tmp_path / "seq.npz", poses=np.zeros((4, 156)))
    with pytest.raises(SystemExit, match="--model-dir"):
        render_motion.main([str(tmp_path / "seq.npz"), "--out", str(tmp_path / "x.mp4"), "--body", "avatar"])


def test_build_avatar_exports_a_loadable_smpl_model(tmp_path):
    if importlib.util.find_spec("anny") is None:
        pytest.skip("the optional package anny is not installed (pip install --no-deps anny roma trimesh)")
    from anny.paths import get_anny_cache_path

    if not any(get_anny_cache_path().glob("*")):
        pytest.skip(f"anny's first run takes minutes and fills {get_anny_cache_path()} (~700 MB); "
                    "run trimo-build-avatar once to enable this test")
    from render.body_model import BodyModel
    from tools import build_avatar

    build_avatar.main(["--out", str(tmp_path)])
    model = BodyModel(tmp_path)
    assert model.faces.shape[1] == 3 and model.model.v_template.shape[0] > 10000
    # standing in SMPL axes: feet ~1 m below the pelvis, head above, facing +Z (toes ahead of ankles)
    joints = model.rest_joints
    assert joints[0, 1] - joints[[10, 11], 1].min() > 0.8 and joints[15, 1] > joints[12, 1] > joints[0, 1]
    assert (joints[[10, 11], 2] > joints[[7, 8], 2]).all() and joints[1, 0] > 0 > joints[2, 0]
    posed = model.forward(**model.pose_from_joints(synthetic_clip(4, seed=12)))
    assert np.isfinite(posed.vertices).all()
