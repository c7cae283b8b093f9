"""The smplx route: a tiny SMPL-layout model made here (no licensed files), posing from parameters
and from joints, rendering the avatar body, and the anny -> SMPL layout export."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from render import MeshClip, render_frames, render_mesh
from render.avatar import BONE_JOINTS, JOINT_BONES, SMPL_PARENTS, joint_regressor, smpl_layout_from_rig
from render.body_model import DEFAULT_AVATAR_DIR, FIT_CHILDREN, BodyModel, BodyModelError, model_file
from render.capsules import capsule_topology, capsule_vertices
from motion.skeleton import DEFAULT_BONE_LENGTHS, PARENTS, REST_DIRECTIONS
from fixtures.synthetic_motion import synthetic_clip

ARM_BONES = (16, 17, 18, 19, 20, 21)  # shoulder, elbow, wrist: horizontal in a T-pose


def t_pose_joints() -> np.ndarray:
    """24 SMPL joints in a T-pose (arms along +-X, left side +X), pelvis at 0.95 m."""
    directions = REST_DIRECTIONS.copy()
    for j in ARM_BONES:
        directions[j] = (1.0, 0.0, 0.0) if j % 2 == 0 else (-1.0, 0.0, 0.0)
    joints = np.zeros((24, 3))
    joints[0] = (0.0, 0.95, 0.0)
    for j in range(1, 22):
        joints[j] = joints[PARENTS[j]] + directions[j] * DEFAULT_BONE_LENGTHS[j]
    joints[22], joints[23] = joints[20] + (0.08, 0, 0), joints[21] - (0.08, 0, 0)
    return joints


def write_tiny_smpl(folder) -> tuple:
    """A capsule body in a T-pose saved as <folder>/smpl/SMPL_NEUTRAL.npz; rigid skinning (a bone's
    tube follows its parent joint, a joint's sphere follows the joint); one shape direction (scale)."""
    joints = t_pose_joints()
    vertices = capsule_vertices(joints[None, :22], segments=6, rings=4, radius_scale=1.0)[0].astype(np.float64)
    faces, owner, _ = capsule_topology(6, 4)
    tube = np.arange(len(vertices)) < 21 * 2 * 6
    weights = np.zeros((len(vertices), 24))
    weights[np.arange(len(vertices)), np.where(tube, np.array(PARENTS)[owner], owner)] = 1.0
    shapedirs = np.zeros((len(vertices), 3, 2))
    shapedirs[..., 0] = 0.1 * (vertices - joints[0])
    arrays = dict(v_template=vertices, f=faces.astype(np.uint32), J_regressor=joint_regressor(vertices, joints, 64),
                  weights=weights, shapedirs=shapedirs, posedirs=np.zeros((len(vertices), 3, 207)),
                  kintree_table=np.array([[2**32 - 1] + list(SMPL_PARENTS[1:]), list(range(24))], np.uint32))
    path = folder / "smpl" / "SMPL_NEUTRAL.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, **arrays)
    return path, arrays, joints


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bodymodel")
    path, arrays, joints = write_tiny_smpl(folder)
    return folder, arrays, joints, BodyModel(folder, "smpl")


def test_zero_pose_is_the_template_and_shape_scales(tiny):
    folder, arrays, joints, model = tiny
    assert model_file(folder) == folder / "smpl" / "SMPL_NEUTRAL.npz"
    np.testing.assert_allclose(model.rest_joints, joints, atol=1e-6)  # smplx keeps float32
    transl = np.array([[0.5, 0.0, -1.0], [0.0, 0.2, 0.0]])
    posed = model.forward(np.zeros((2, 3)), np.zeros((2, 69)), transl)
    np.testing.assert_allclose(posed.vertices, arrays["v_template"][None] + transl[:, None], atol=1e-5)
    grown = model.forward(np.zeros((1, 3)), np.zeros((1, 69)), betas=np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(grown.vertices[0] - joints[0], 1.1 * (arrays["v_template"] - joints[0]), atol=1e-5)


def test_global_orient_turns_the_body_about_the_pelvis(tiny):
    _, arrays, joints, model = tiny
    rotvec = np.array([[0.0, np.pi / 2, 0.0]])
    posed = model.forward(rotvec, np.zeros((1, 69)))
    expected = (arrays["v_template"] - joints[0]) @ Rotation.from_rotvec(rotvec[0]).as_matrix().T + joints[0]
    np.testing.assert_allclose(posed.vertices[0], expected, atol=1e-5)


def test_pose_from_joints_puts_bones_along_the_clip(tiny):
    _, _, _, model = tiny
    clip = synthetic_clip(30, seed=7)
    posed = model.forward(**model.pose_from_joints(clip))
    np.testing.assert_allclose(posed.joints[:, 0], clip[:, 0], atol=1e-4)  # the pelvis follows the root
    single = [j for j in range(1, 22) if PARENTS[j] not in FIT_CHILDREN]
    parents = [PARENTS[j] for j in single]
    want = clip[:, single] - clip[:, parents]
    got = posed.joints[:, single] - posed.joints[:, parents]
    cosine = np.sum(want * got, -1) / np.linalg.norm(want, axis=-1) / np.linalg.norm(got, axis=-1)
    assert cosine.min() > 0.999, f"bones off by up to {np.degrees(np.arccos(cosine.min())):.1f} degrees"
    # the T-pose arms are turned down to the clip's arms: without the rest alignment they'd be ~90 degrees off
    assert any(j in single for j in ARM_BONES)


def test_avatar_body_renders_and_differs_from_empty_scene(tiny):
    folder, _, _, _ = tiny
    joints = synthetic_clip(12, seed=8)
    frames = render_frames(joints, size=64, body="avatar", backend="numpy", model_dir=folder)
    clip = BodyModel(folder).clip_from_joints(joints)
    empty = render_mesh(MeshClip(clip.vertices[:, :0], clip.faces[:0], clip.colours[:0], clip.root, clip.floor_y),
                        64, backend="numpy")
    body = np.abs(frames.astype(int) - empty.astype(int)).max(-1) > 12
    assert body.sum((1, 2)).min() > 60
    rows, cols = np.nonzero(body.any(0))
    assert rows.min() > 0 and rows.max() < 63 and cols.min() > 0 and cols.max() < 63


def test_pickled_or_missing_models_are_refused(tmp_path):
    bad = tmp_path / "smpl" / "SMPL_NEUTRAL.npz"
    bad.parent.mkdir()
    np.savez(bad, v_template=np.zeros((3, 3)), f=np.array([{"not": "an array"}], dtype=object))
    with pytest.raises(BodyModelError, match="pickled"):
        BodyModel(tmp_path)
    with pytest.raises(BodyModelError, match="no smplx body model"):
        BodyModel(tmp_path, "smplx")
    with pytest.raises(BodyModelError, match="unknown body model type"):
        model_file(tmp_path, "mano")


def test_rig_export_maps_bones_to_smpl_joints_and_loads_in_smplx(tmp_path):
    rng = np.random.default_rng(0)
    joints = t_pose_joints()
    labels = sorted(set(BONE_JOINTS) | set(JOINT_BONES.values()))
    lift = np.array([0.0, 0.02, 0.0])  # bones that place no joint sit a little off every joint
    heads = np.array([joints[BONE_JOINTS[label]] + lift * (label not in JOINT_BONES.values()) for label in labels])
    per_bone = 40
    vertices = np.repeat(heads, per_bone, 0) + rng.normal(scale=0.03, size=(len(labels) * per_bone, 3))
    bone_weights = np.repeat(np.eye(len(labels)), per_bone, 0)
    faces = np.arange(len(vertices) - len(vertices) % 3).reshape(-1, 3)
    arrays = smpl_layout_from_rig(vertices, faces, labels, heads, bone_weights)

    expected = joints.copy()
    for joint, fraction in {3: 0.22, 6: 0.49, 9: 0.59}.items():
        expected[joint] = (1 - fraction) * joints[0] + fraction * joints[12]
    np.testing.assert_allclose(arrays["J_regressor"] @ vertices, expected, atol=1e-9)
    np.testing.assert_allclose(arrays["J_regressor"].sum(1), 1.0)
    owner = np.argmax(arrays["weights"], 1)
    for label in ("LThumb", "Spine", "RightToeBase", "Neck1"):
        assert set(owner[np.repeat(np.array(labels) == label, per_bone)]) == {BONE_JOINTS[label]}

    path = tmp_path / "smpl" / "SMPL_NEUTRAL.npz"
    path.parent.mkdir()
    np.savez_compressed(path, **arrays)
    model = BodyModel(tmp_path)
    posed = model.forward(np.zeros((1, 3)), np.zeros((1, 69)))
    np.testing.assert_allclose(posed.vertices[0], vertices, atol=1e-5)
    with pytest.raises(ValueError, match="cmu_mb"):
        smpl_layout_from_rig(vertices, faces, labels[1:], heads[1:], bone_weights[:, 1:])


def test_open_avatar_when_built():
    path = DEFAULT_AVATAR_DIR / "smpl" / "SMPL_NEUTRAL.npz"
    if not path.is_file():
        pytest.skip(f"open avatar not built ({path} absent; run trimo-build-avatar)")
    joints = synthetic_clip(8, seed=9)
    frames = render_frames(joints, size=64, body="avatar", backend="numpy")
    capsules = render_frames(joints, size=64, body="capsule", backend="numpy")
    assert frames.shape == (8, 64, 64, 3)
    assert np.mean(np.abs(frames.astype(int) - capsules.astype(int)).max(-1) > 12) > 0.005  # a different body
