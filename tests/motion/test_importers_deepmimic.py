"""DeepMimic humanoid clips (the ones pybullet ships): our forward kinematics against pybullet's
own, on every clip whose stored quaternions are unit length, and the 22-joint import."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from motion.importers import MotionImportError, load_motion
from motion.importers.deepmimic import FRAME_SIZE, _JOINTS, deepmimic_points

pybullet = pytest.importorskip("pybullet", reason="pybullet (which ships the DeepMimic clips) is not installed")
pybullet_data = pytest.importorskip("pybullet_data")
MOTIONS = Path(pybullet_data.getDataPath()) / "data" / "motions"
CLIPS = sorted(p for p in MOTIONS.rglob("*.txt") if "laikago" not in p.name)


def test_forward_kinematics_matches_pybullets():
    client = pybullet.connect(pybullet.DIRECT)
    try:
        pybullet.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
        body = pybullet.loadURDF("humanoid/humanoid.urdf", [0, 0, 0], globalScaling=0.25,
                                 flags=pybullet.URDF_MAINTAIN_LINK_ORDER, physicsClientId=client)
        link = {pybullet.getJointInfo(body, j, physicsClientId=client)[12].decode(): j
                for j in range(pybullet.getNumJoints(body, physicsClientId=client))}
        checked = 0
        for clip in CLIPS:
            frames = np.asarray(json.loads(clip.read_text())["Frames"])
            quats = np.concatenate([frames[:, 4:8]] + [frames[:, i:i + 4] for i in _quaternion_columns()], 1)
            if np.abs(np.linalg.norm(quats.reshape(len(frames), -1, 4), axis=-1) - 1).max() > 1e-3:
                continue   # pybullet uses a non-unit quaternion as stored; we normalize (module docstring)
            for f in frames[:: max(1, len(frames) // 5)]:
                pybullet.resetBasePositionAndOrientation(body, f[1:4], [*f[5:8], f[4]], physicsClientId=client)
                i = 8
                for name, _, _, dof in _JOINTS:
                    if dof == 4:
                        pybullet.resetJointStateMultiDof(body, link[name], [*f[i + 1:i + 4], f[i]],
                                                         physicsClientId=client)
                    else:
                        pybullet.resetJointState(body, link[name], f[i], physicsClientId=client)
                    i += dof
                ours = deepmimic_points(f[None])
                for name in [n for n, *_ in _JOINTS] + ["left_wrist", "right_wrist"]:
                    theirs = pybullet.getLinkState(body, link[name], computeForwardKinematics=True,
                                                   physicsClientId=client)[4]
                    np.testing.assert_allclose(ours[name][0], theirs, atol=1e-5, err_msg=f"{clip.name} {name}")
                checked += 1
        assert checked >= 20
    finally:
        pybullet.disconnect(client)


def _quaternion_columns() -> list[int]:
    columns, i = [], 8
    for *_, dof in _JOINTS:
        if dof == 4:
            columns.append(i)
        i += dof
    return columns


def test_every_clip_imports_to_canonical_joints(tmp_path):
    assert len(CLIPS) == 20
    for clip in CLIPS:
        motion = load_motion(clip)
        assert motion.joints.shape[1:] == (22, 3) and 15 < motion.fps < 61, clip.name
        joints = motion.to_canonical()
        assert len(joints) >= 15 and abs(joints[..., 1].min()) < 0.05   # on the floor
    # walking: the pelvis travels, the head stays above the pelvis
    walk = load_motion(MOTIONS / "humanoid3d_walk.txt").to_canonical()
    assert np.linalg.norm(walk[-1, 0, [0, 2]] - walk[0, 0, [0, 2]]) > 0.5
    assert (walk[:, 15, 1] > walk[:, 0, 1]).all()
    bad = tmp_path / "notes.txt"
    bad.write_text("a person walks")
    with pytest.raises(MotionImportError, match="not a DeepMimic motion file"):
        load_motion(bad)
    bad.write_text(json.dumps({"Frames": [[0.03] * (FRAME_SIZE - 1)] * 3}))
    with pytest.raises(MotionImportError, match=f"frames of {FRAME_SIZE} numbers"):
        load_motion(bad)
