"""AMASS importer against a direct smplx computation on a synthetic SMPL-H model (no licensed files)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.mocap_builders import write_amass_npz, write_smplh_model
from motion.importers import MotionImportError, load_motion
from motion.importers.amass import Z_UP_TO_Y_UP, load_amass_npz, z_up_to_y_up


@pytest.fixture(scope="module")
def body_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("smplh")
    write_smplh_model(root / "SMPLH_NEUTRAL.npz", seed=0)
    (root / "female").mkdir()
    write_smplh_model(root / "female" / "model.npz", seed=3)  # AMASS layout
    return root


def direct_joints(model_file, npz_file, frames):
    """smplx's own loader (ext='npz') and forward pass, first 22 joints, Z up."""
    import smplx

    torch.set_num_threads(1)
    data = np.load(npz_file)
    model = smplx.SMPLH(str(model_file), ext="npz", use_pca=False, flat_hand_mean=True, num_betas=10)
    p = torch.tensor(data["poses"][frames], dtype=torch.float32)
    out = model(betas=torch.tensor(data["betas"][:10], dtype=torch.float32)[None].expand(len(p), -1),
                global_orient=p[:, :3], body_pose=p[:, 3:66], left_hand_pose=p[:, 66:111],
                right_hand_pose=p[:, 111:], transl=torch.tensor(data["trans"][frames], dtype=torch.float32))
    return out.joints[:, :22].double().numpy()


def test_z_up_to_y_up_on_known_vectors():
    np.testing.assert_allclose(z_up_to_y_up(np.array([1.0, 2.0, 3.0])), [-1.0, 3.0, 2.0])
    np.testing.assert_allclose(z_up_to_y_up(np.array([0.0, 0.0, 1.0])), [0.0, 1.0, 0.0])  # up stays up
    assert np.isclose(np.linalg.det(Z_UP_TO_Y_UP), 1.0)  # a rotation, no mirroring


def test_amass_joints_equal_direct_smplx_and_stride_to_20fps(tmp_path, body_models):
    seq = write_amass_npz(tmp_path / "seq_poses.npz", n_frames=31, fps=60.0, gender="neutral")
    motion = load_amass_npz(seq, body_models, chunk=4)  # several chunks
    assert motion.fps == 20.0 and motion.joints.shape == (11, 22, 3)  # frames 0, 3, ..., 30
    expected = direct_joints(body_models / "SMPLH_NEUTRAL.npz", seq, slice(0, None, 3))
    ey = np.stack([-expected[..., 0], expected[..., 2], expected[..., 1]], axis=-1)
    np.testing.assert_allclose(motion.joints, ey, atol=1e-5)
    # through the extension dispatcher too
    np.testing.assert_allclose(load_motion(seq, body_model_dir=body_models).joints, motion.joints, atol=1e-6)


def test_gender_from_file_bytes_and_non_multiple_rate(tmp_path, body_models):
    seq = write_amass_npz(tmp_path / "f.npz", n_frames=26, fps=50.0, gender=b"female")
    motion = load_amass_npz(seq, body_models)  # bytes gender -> female/model.npz
    # 50 -> 20 fps is no integer stride: interpolated at k/20 s over the 0.5 s clip -> 11 frames
    assert motion.joints.shape == (11, 22, 3)
    full = direct_joints(body_models / "female" / "model.npz", seq, slice(None))
    full = np.stack([-full[..., 0], full[..., 2], full[..., 1]], axis=-1)
    np.testing.assert_allclose(motion.joints[2], full[5], atol=1e-5)  # 0.1 s = source frame 5
    np.testing.assert_allclose(motion.joints[1], 0.5 * (full[2] + full[3]), atol=1e-5)  # 0.05 s = frame 2.5
    with pytest.raises(MotionImportError, match="no SMPL-H male body model"):
        load_amass_npz(seq, body_models, gender="male")


def test_amass_bad_inputs(tmp_path, body_models):
    bad = tmp_path / "bad.npz"
    np.savez(bad, poses=np.zeros((10, 72)), trans=np.zeros((10, 3)), mocap_framerate=np.array(60.0))
    with pytest.raises(MotionImportError, match=r"bad\.npz: poses have shape \(10, 72\), expected \(T, 156\)"):
        load_amass_npz(bad, body_models)
    one = write_amass_npz(tmp_path / "one.npz", n_frames=2, fps=60.0)
    with pytest.raises(MotionImportError, match=r"one\.npz: clip has 1 frame"):
        load_amass_npz(one, body_models)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, poses=np.array([{"x": 1}], dtype=object), trans=np.zeros((1, 3)))
    with pytest.raises(MotionImportError, match=r"pickled\.npz: cannot read npz"):
        load_amass_npz(pickled, body_models)
