"""263-d features, pre-processing, resampling and feature statistics (motion.features)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from motion import features as M
from motion.rotations import qinv, qmul, quat_to_cont6d, yaw_quat
from motion.skeleton import DEFAULT_BONE_LENGTHS, DEFAULT_SKELETON, bone_lengths, facing_angles
from fixtures.synthetic_motion import random_skeleton, synthetic_clip

SHARED = Path(__file__).resolve().parents[3] / "shared"
MOCAP = SHARED / "data" / "mocap"
SIGMAS = (0.0, M.HUMANML3D_FACING_SIGMA)


def prepared(num_frames=200, seed=0, sigma=M.HUMANML3D_FACING_SIGMA, **kw):
    return M.canonicalize(M.retarget_to_uniform(synthetic_clip(num_frames, seed=seed, **kw)), facing_sigma=sigma)


def y_rotation(angle):
    return Rotation.from_euler("y", angle).as_matrix()


# ----------------------------------------------------------------------------- pre-processing

def test_retarget_gives_the_target_bone_lengths_and_scales_the_root_by_leg_ratio():
    source = random_skeleton(np.random.default_rng(1), spread=0.3)
    joints = synthetic_clip(80, seed=1, skeleton=source)
    out = M.retarget_to_uniform(joints)
    np.testing.assert_allclose(bone_lengths(out), np.broadcast_to(DEFAULT_BONE_LENGTHS, (80, 22)), atol=1e-12)
    ratio = (DEFAULT_BONE_LENGTHS[5] + DEFAULT_BONE_LENGTHS[8]) / (source.lengths[5] + source.lengths[8])
    np.testing.assert_allclose(out[:, 0], joints[:, 0] * ratio, atol=1e-12)
    # bone directions are the source's
    for j, p in ((4, 1), (18, 16), (15, 12)):
        a, b = joints[:, j] - joints[:, p], out[:, j] - out[:, p]
        np.testing.assert_allclose(a / np.linalg.norm(a, axis=-1, keepdims=True),
                                   b / np.linalg.norm(b, axis=-1, keepdims=True), atol=1e-12)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_canonicalize_puts_the_clip_on_the_floor_at_the_origin_facing_plus_z(sigma):
    joints = synthetic_clip(150, seed=2)
    assert abs(facing_angles(joints)[0]) > 0.2  # the generator does not start facing +Z
    out = M.canonicalize(joints, facing_sigma=sigma)
    assert out[..., 1].min() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(out[0, 0, [0, 2]], 0.0, atol=1e-12)
    assert facing_angles(out, sigma)[0] == pytest.approx(0.0, abs=1e-9)
    # facing +Z means the left hip is on +X (the body's left side) in the first frame
    assert out[0, 1, 0] - out[0, 2, 0] > 0.1
    # a rigid motion: distances between joints are unchanged
    np.testing.assert_allclose(np.linalg.norm(out[:, 3] - out[:, 20], axis=-1),
                               np.linalg.norm(joints[:, 3] - joints[:, 20], axis=-1), atol=1e-12)


# ----------------------------------------------------------------------------- features

def test_feature_shape_dtype_and_blocks_match_direct_computation():
    joints = prepared(120, seed=3, sigma=0.0)
    f = M.joints_to_features(joints, facing_sigma=0.0)
    assert f.shape == (119, 263) and f.dtype == np.float32
    heading = facing_angles(joints)
    facing = np.stack([y_rotation(-a) for a in heading])  # world -> facing frame
    disp = joints[1:] - joints[:-1]
    # root: HumanML3D stores half the per-frame heading change, negated (world->facing sign)
    np.testing.assert_allclose(f[:, 0], -0.5 * np.diff(np.unwrap(heading)), atol=1e-6)
    root_step = np.einsum("tij,tj->ti", facing[1:], disp[:, 0])
    np.testing.assert_allclose(f[:, 1:3], root_step[:, [0, 2]], atol=1e-6)
    np.testing.assert_allclose(f[:, 3], joints[:-1, 0, 1], atol=1e-6)
    rel = joints - joints[:, :1] * np.array([1, 0, 1])
    ric = np.einsum("tij,tkj->tki", facing, rel)[:-1, 1:]
    np.testing.assert_allclose(f[:, 4:67], ric.reshape(119, 63), atol=1e-6)
    local = DEFAULT_SKELETON.inverse_kinematics(joints)
    np.testing.assert_allclose(f[:, 67:193], quat_to_cont6d(local[:-1, 1:]).reshape(119, 126), atol=1e-6)
    vel = np.einsum("tij,tkj->tki", facing[:-1], disp)
    np.testing.assert_allclose(f[:, 193:259], vel.reshape(119, 66), atol=1e-6)
    feet = (disp[:, [7, 10, 8, 11]] ** 2).sum(-1) < 0.002
    np.testing.assert_array_equal(f[:, 259:], feet.astype(np.float32))
    assert 0 < feet.mean() < 1


def test_contact_threshold_and_optional_height_test():
    joints = prepared(150, seed=4)
    disp2 = ((joints[1:, [7, 10, 8, 11]] - joints[:-1, [7, 10, 8, 11]]) ** 2).sum(-1)
    loose = M.joints_to_features(joints, feet_threshold=0.01)[:, 259:]
    np.testing.assert_array_equal(loose, (disp2 < 0.01).astype(np.float32))
    height = np.median(joints[:-1, [7, 10, 8, 11], 1])
    both = M.joints_to_features(joints, feet_threshold=0.01, contact_height=height)[:, 259:]
    expected = (disp2 < 0.01) & (joints[:-1, [7, 10, 8, 11], 1] < height)
    np.testing.assert_array_equal(both, expected.astype(np.float32))
    assert both.sum() < loose.sum()


@pytest.mark.parametrize("sigma", SIGMAS)
def test_features_ignore_global_heading_and_position(sigma):
    joints = prepared(160, seed=5, sigma=sigma)
    moved = rot_y(joints, 2.2) + np.array([3.0, 0.0, -1.0])
    np.testing.assert_allclose(M.joints_to_features(moved, facing_sigma=sigma),
                               M.joints_to_features(joints, facing_sigma=sigma), atol=1e-6)


def rot_y(joints, angle):
    return joints @ y_rotation(angle).T


def test_root_turn_rate_is_right_where_the_reference_arcsin_formula_breaks():
    """HumanML3D takes arcsin(y) of r_rot[t+1] * r_rot[t]^-1, whose w turns negative when the
    heading crosses 180 degrees; there its sign is wrong. Ours agrees everywhere else."""
    joints = prepared(600, seed=6, sigma=0.0, turn_rate=1.5)
    heading = facing_angles(joints)
    f = M.joints_to_features(joints, facing_sigma=0.0)
    r_rot = qinv(yaw_quat(heading))
    rel = qmul(r_rot[1:], qinv(r_rot[:-1]))
    reference = np.arcsin(rel[:, 2])
    wraps = rel[:, 0] < 0
    assert wraps.any() and (~wraps).sum() > 500
    np.testing.assert_allclose(f[~wraps, 0], reference[~wraps], atol=1e-6)
    assert np.abs(f[wraps, 0] - reference[wraps]).min() > 1e-3
    np.testing.assert_allclose(f[:, 0], -0.5 * np.angle(np.exp(1j * np.diff(heading))), atol=1e-6)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_round_trips_on_a_long_turning_clip(sigma):
    joints = prepared(2400, seed=7, sigma=sigma)
    heading = np.unwrap(facing_angles(joints))
    assert heading.max() - heading.min() > 4 * np.pi  # turns through +-180 degrees several times
    f = M.joints_to_features(joints, facing_sigma=sigma)
    assert np.abs(f[:, 0]).max() > 0.01
    back = M.features_to_joints(f)
    assert back.shape == (2399, 22, 3) and back.dtype == np.float32
    assert np.abs(back - joints[:-1]).max() <= 1e-4
    again = M.joints_to_features(M.features_to_joints(f.astype(np.float64)), facing_sigma=sigma)
    # smoothing looks 4 sigma ahead, so the last frames see the missing final frame
    keep = len(again) - int(4 * sigma + 1)
    assert np.abs(again[:keep] - f[:keep]).max() <= 1e-4


def test_features_to_joints_recovers_the_frame_of_the_feature_facing():
    """With smoothed facing, a clip canonicalized on the raw facing comes back turned by the
    difference (as HumanML3D's released new_joints are)."""
    joints = prepared(300, seed=8, sigma=0.0)
    back = M.features_to_joints(M.joints_to_features(joints).astype(np.float64))
    offset = facing_angles(joints, M.HUMANML3D_FACING_SIGMA)[0]
    assert abs(offset) > 1e-3
    np.testing.assert_allclose(back, rot_y(joints, -offset)[:-1], atol=1e-4)


def test_features_to_joints_numpy_torch_and_batches_agree():
    feats = np.stack([M.joints_to_features(prepared(90, seed=s)) for s in (9, 10)])
    single = np.stack([M.features_to_joints(x) for x in feats])
    batched = M.features_to_joints(feats)
    np.testing.assert_allclose(batched, single, atol=1e-6)
    as_torch = M.features_to_joints(torch.from_numpy(feats))
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.float32 and as_torch.shape == (2, 89, 22, 3)
    np.testing.assert_allclose(as_torch.numpy(), batched, atol=2e-5)
    half = M.features_to_joints(torch.from_numpy(feats).to(torch.bfloat16))
    assert half.dtype == torch.bfloat16


def test_features_to_joint12_matches_a_direct_computation():
    sigma = M.HUMANML3D_FACING_SIGMA
    joints = prepared(100, seed=11, sigma=sigma)
    f = M.joints_to_features(joints, facing_sigma=sigma)
    j12 = M.features_to_joint12(f.astype(np.float64))
    assert j12.shape == (99, 22, 12)
    heading = facing_angles(joints, sigma)
    facing = np.stack([y_rotation(-a) for a in heading])
    local = DEFAULT_SKELETON.inverse_kinematics(joints, sigma)
    # rotation: root = world->facing rotation (first two columns), others = local rotations
    np.testing.assert_allclose(j12[:, 0, :3], facing[:-1, :, 0], atol=1e-5)
    np.testing.assert_allclose(j12[:, 0, 3:6], facing[:-1, :, 1], atol=1e-5)
    np.testing.assert_allclose(j12[:, 1:, :6], quat_to_cont6d(local[:-1, 1:]), atol=1e-5)
    # position: root global, others root-relative in the facing frame
    np.testing.assert_allclose(j12[:, 0, 6:9], joints[:-1, 0], atol=1e-5)
    rel = joints - joints[:, :1] * np.array([1, 0, 1])
    np.testing.assert_allclose(j12[:, 1:, 6:9], np.einsum("tij,tkj->tki", facing, rel)[:-1, 1:], atol=1e-5)
    # velocity: displacement to the next frame in the facing frame
    vel = np.einsum("tij,tkj->tki", facing[:-1], joints[1:] - joints[:-1])
    np.testing.assert_allclose(j12[..., 9:12], vel, atol=1e-5)
    as_torch = M.features_to_joint12(torch.from_numpy(f)[None].repeat(2, 1, 1))
    assert isinstance(as_torch, torch.Tensor) and as_torch.shape == (2, 99, 22, 12)
    np.testing.assert_allclose(as_torch[1].numpy(), j12, atol=2e-5)


# ----------------------------------------------------------------------------- resampling

def test_resample_strides_integer_ratios_and_interpolates_others():
    x = np.random.default_rng(0).normal(size=(61, 22, 3))
    np.testing.assert_array_equal(M.resample(x, 60, 20), x[::3])
    np.testing.assert_array_equal(M.resample(x, 20, 20), x)
    out = M.resample(x, 30, 20)  # ratio 1.5: linear interpolation at t = k / 20 s
    times = np.arange(0, 60 / 30 + 1e-9, 1 / 20)
    assert out.shape == (len(times), 22, 3)
    src_t = np.arange(61) / 30
    np.testing.assert_allclose(out[:, 5, 1], np.interp(times, src_t, x[:, 5, 1]), atol=1e-12)
    up = M.resample(x[:5], 10, 20)  # upsampling interpolates too
    np.testing.assert_allclose(up[1], 0.5 * (x[0] + x[1]))


@pytest.mark.parametrize("src, dst, frames", [(0, 20, 10), (-30, 20, 10), (30, 0, 10), (float("nan"), 20, 10), (30, 20, 1)])
def test_resample_rejects_bad_rates_and_short_clips(src, dst, frames):
    with pytest.raises(M.MotionError, match="clip_x"):
        M.resample(np.zeros((frames, 22, 3)), src, dst, source="clip_x")


# ----------------------------------------------------------------------------- statistics

def feature_chunks():
    rng = np.random.default_rng(3)
    return [(rng.normal(size=(n, 263)) * rng.uniform(0.1, 5, 263) + rng.normal(size=263) * 100).astype(np.float32)
            for n in (5, 40, 1, 17)]


def test_per_dim_stats_equal_numpy_on_the_concatenation():
    chunks = feature_chunks()
    stats = M.FeatureStats.compute(iter(chunks), "per_dim", name="demo")
    allx = np.concatenate(chunks).astype(np.float64)
    np.testing.assert_allclose(stats.mean, allx.mean(0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats.std, allx.std(0), rtol=1e-9)
    assert stats.count == 63 and stats.convention == "per_dim"


def test_group_stats_use_the_group_mean_std_over_divisors():
    chunks = feature_chunks()
    per_dim = M.FeatureStats.compute(chunks, "per_dim")
    divisors = {"root_rot_vel": 5.0, "root_lin_vel": 5.0, "root_y": 5.0, "foot_contact": 5.0}
    grouped = M.FeatureStats.compute(chunks, "humanml3d_group", name="t2m", group_divisors=divisors)
    np.testing.assert_allclose(grouped.mean, per_dim.mean)
    for name, sl in M.FEATURE_GROUPS.items():
        block = grouped.std[sl]
        assert np.ptp(block) == 0.0
        np.testing.assert_allclose(block[0], per_dim.std[sl].mean() / divisors.get(name, 1.0), rtol=1e-12)
    assert grouped.group_divisors == (5.0, 5.0, 5.0, 1.0, 1.0, 1.0, 5.0)


def test_stats_save_load_and_normalize(tmp_path):
    stats = M.FeatureStats.compute(feature_chunks(), "humanml3d_group", name="my set")
    path = tmp_path / "stats.npz"
    stats.save(path)
    with np.load(path, allow_pickle=False) as data:  # readable without pickle
        assert str(data["convention"]) == "humanml3d_group"
    loaded = M.FeatureStats.load(path)
    assert (loaded.name, loaded.convention, loaded.count) == ("my set", "humanml3d_group", stats.count)
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.std, stats.std)
    x = feature_chunks()[1].astype(np.float64)
    z = loaded.normalize(x)
    np.testing.assert_allclose(z, (x - stats.mean) / (stats.std + 1e-12))
    np.testing.assert_allclose(loaded.denormalize(z), x, rtol=1e-12, atol=1e-9)
    zt = loaded.normalize(torch.from_numpy(x))
    assert isinstance(zt, torch.Tensor)
    np.testing.assert_allclose(zt.numpy(), z)
    np.testing.assert_allclose(loaded.denormalize(zt).numpy(), x, rtol=1e-12, atol=1e-9)


def test_stats_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, name=np.array("x"), convention=np.array("per_dim"), mean=np.zeros(251), std=np.ones(251),
             count=np.array(3), group_divisors=np.ones(7))
    with pytest.raises(M.MotionError, match=r"bad\.npz.*251"):
        M.FeatureStats.load(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, mean=np.zeros(263))
    with pytest.raises(M.MotionError, match="partial.npz"):
        M.FeatureStats.load(partial)
    with pytest.raises(M.MotionError, match="convention"):
        M.FeatureStats.compute(feature_chunks(), "zscore")


# ----------------------------------------------------------------------------- bad input

def nan_clip():
    joints = synthetic_clip(10, seed=1)
    joints[3, 5, 1] = np.nan
    joints[6, 0, 0] = np.inf
    return joints


@pytest.mark.parametrize("fn", [M.joints_to_features, M.canonicalize, M.retarget_to_uniform])
@pytest.mark.parametrize("joints, problem", [
    (nan_clip(), r"NaN/inf.*frames 3, 6"),
    (np.zeros((10, 21, 3)), r"\(10, 21, 3\)"),
    (np.zeros((0, 22, 3)), "0 frame"),
    (np.zeros((1, 22, 3)), "1 frame"),
])
def test_bad_joints_raise_motion_error_naming_the_source(fn, joints, problem):
    with pytest.raises(M.MotionError, match=r"^walk_042\.bvh: .*" + problem) as err:
        fn(joints, source="walk_042.bvh")
    assert "\n" not in str(err.value) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("fn", [M.features_to_joints, M.features_to_joint12])
def test_bad_features_raise_motion_error_naming_the_source(fn):
    with pytest.raises(M.MotionError, match=r"^s1: .*\(5, 251\)"):
        fn(np.zeros((5, 251)), source="s1")
    with pytest.raises(M.MotionError, match=r"^s2: .*NaN"):
        fn(torch.full((2, 5, 263), float("nan")), source="s2")
    with pytest.raises(M.MotionError, match=r"^s3: 0 feature frame"):
        fn(np.zeros((0, 263)), source="s3")


def test_zero_length_bone_is_reported():
    joints = synthetic_clip(10, seed=2)
    joints[4, 18] = joints[4, 16]
    with pytest.raises(M.MotionError, match=r"clip: bone left_shoulder->left_elbow has zero length at frame 4"):
        M.retarget_to_uniform(joints, source="clip")


# ----------------------------------------------------------------------------- real mocap

def real_clips():
    if not SHARED.is_dir():
        pytest.skip(f"real mocap needs the workspace's shared folder ({SHARED} is absent on plain clones)")
    importers = pytest.importorskip("motion.importers", reason="mocap importers (motion.importers) not installed")
    from motion.importers.asf_amc import load_asf_amc
    from motion.importers.bvh import load_bvh

    return [load_asf_amc(MOCAP / "cmu" / "cmu_clip_a.asf", MOCAP / "cmu" / "cmu_clip_a.amc", mapping="cmu"),
            load_bvh(MOCAP / "lafan1" / "lafan1_clip_a.bvh", mapping="lafan1")], importers


@pytest.fixture(scope="module")
def real_motion():
    clips, _ = real_clips()
    return [(clip.source, M.resample(clip.joints, clip.fps, 20.0)) for clip in clips]


@pytest.mark.parametrize("sigma", SIGMAS)
def test_real_clips_round_trip(real_motion, sigma):
    for name, joints in real_motion:
        uniform = M.retarget_to_uniform(joints, source=name)
        np.testing.assert_allclose(bone_lengths(uniform), np.broadcast_to(DEFAULT_BONE_LENGTHS, uniform.shape[:2]),
                                   atol=1e-9)
        canon = M.canonicalize(uniform, facing_sigma=sigma, source=name)
        assert canon[..., 1].min() == pytest.approx(0.0, abs=1e-12)
        np.testing.assert_allclose(canon[0, 0, [0, 2]], 0.0, atol=1e-12)
        assert facing_angles(canon, sigma)[0] == pytest.approx(0.0, abs=1e-9)
        f = M.joints_to_features(canon, facing_sigma=sigma, source=name)
        assert np.abs(f[:, 0]).max() > 0.005, name  # real clips turn
        err = np.abs(M.features_to_joints(f) - canon[:-1]).max()
        assert err <= 1e-4, (name, err)
        again = M.joints_to_features(M.features_to_joints(f.astype(np.float64)), facing_sigma=sigma)
        keep = len(again) - int(4 * sigma + 1)
        err = np.abs(again[:keep] - f[:keep]).max()
        assert err <= 1e-4, (name, err)
        # standing/walking adults: the pelvis is mostly 0.8-1.05 m above the floor
        assert 0.75 < np.median(canon[:, 0, 1]) < 1.05, name
