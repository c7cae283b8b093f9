"""SMPL-family bodies through `smplx`: load a model folder without unpickling, pose it from SMPL
parameters (the AMASS/BABEL route) or from our 22 joint positions (via motion.skeleton's IK).

Model files are .npz only. smplx 0.1.28 opens SMPL models with pickle whatever `ext` says, and
SMPL+H/SMPL-X .npz with pickling allowed; we read the arrays ourselves with
`allow_pickle=False` (which refuses object arrays, so nothing is unpickled) and hand them to
smplx as its `data_struct` (SMPL, SMPL+H), or let smplx reopen a file we have checked (SMPL-X).
Official SMPL .pkl files must be converted to .npz once (they also need chumpy to load).

Joints -> pose: our IK gives, for every bone parent -> child, a global rotation that turns the
skeleton's rest direction (`REST_DIRECTIONS`) onto the bone. SMPL rotates the bones leaving a joint
with that joint's rotation, and its rest pose (T-pose, or the avatar's A-pose) has other bone
directions, so SMPL joint p takes the rotation of its bone p -> c followed by a fixed rest-pose
alignment; pelvis and spine3 (three children each) take the rotation that best fits all three
bones (hips + spine, neck + collars: the two skeletons' rest angles between those bones differ, so
no rotation fits all exactly); feet, head, wrists and hands keep the parent's rotation.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from render.capsules import joint_colours
from render.scene import MeshClip
from motion.rotations import qbetween, qinv, qmul
from motion.skeleton import DEFAULT_SKELETON, NUM_JOINTS, PARENTS, REST_DIRECTIONS

MODEL_TYPES = ("smpl", "smplh", "smplx")
FILE_PREFIX = {"smpl": "SMPL", "smplh": "SMPLH", "smplx": "SMPLX"}
DEFAULT_AVATAR_DIR = Path.home() / ".cache" / "trimo" / "avatar"
# the child whose bone drives each of the 22 joints' rotation; -1: keep the parent's rotation;
# None: several children, fitted together with these weights (FIT_CHILDREN)
DRIVING_CHILD = (None, 4, 5, 6, 7, 8, 9, 10, 11, None, -1, -1, 15, 16, 17, -1, 18, 19, 20, 21, -1, -1)
FIT_CHILDREN = {0: {1: 1.0, 2: 1.0, 3: 2.0}, 9: {12: 2.0, 13: 1.0, 14: 1.0}}
CHUNK = 64  # frames per smplx forward call
SMPL_VERTEX_COUNTS = (6890, 10475)  # SMPL/SMPL+H, SMPL-X


class BodyModelError(ValueError):
    """A body-model folder or file that cannot be used; the message names it and the fix."""


def model_file(model_dir: str | Path, model_type: str = "smpl", gender: str = "neutral") -> Path:
    """The .npz to load: `model_dir` itself if it is a file, else smplx's layout
    `<model_dir>/<model_type>/<PREFIX>_<GENDER>.npz` (or `<model_dir>/<PREFIX>_<GENDER>.npz`), or
    AMASS's `<model_dir>[/<model_type>]/<gender>/model.npz`."""
    path = Path(model_dir)
    if model_type not in MODEL_TYPES:
        raise BodyModelError(f"unknown body model type {model_type!r}; choose one of {MODEL_TYPES}")
    if path.is_file():
        candidates = [path]
    else:
        name = f"{FILE_PREFIX[model_type]}_{gender.upper()}.npz"
        candidates = [path / model_type / name, path / name, path / model_type / gender / "model.npz",
                      path / gender / "model.npz"]
    for candidate in candidates:
        if candidate.is_file():
            if candidate.suffix != ".npz":
                raise BodyModelError(f"{candidate}: only .npz body models are read (no pickle); "
                                     "convert the .pkl to .npz once")
            return candidate
    hint = " (build the open avatar with `trimo-build-avatar`)" if path == DEFAULT_AVATAR_DIR else ""
    raise BodyModelError(f"no {model_type} body model found at {' or '.join(map(str, candidates))}{hint}")


def read_model_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError as err:
        raise BodyModelError(f"{path}: holds pickled objects ({err}); re-save it with plain arrays") from None
    missing = {"v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs", "posedirs"} - set(arrays)
    if missing:
        raise BodyModelError(f"{path}: not a SMPL-family model, missing arrays {sorted(missing)}")
    return arrays


@dataclass
class PosedBody:
    vertices: np.ndarray  # (T, V, 3)
    joints: np.ndarray    # (T, J, 3) the model's joints (first 22 in SMPL order)


class BodyModel:
    """A loaded SMPL-family model with helpers to pose it and turn it into a MeshClip."""

    def __init__(self, model_dir: str | Path | None = None, model_type: str = "smpl", gender: str = "neutral",
                 num_betas: int = 10):
        import smplx
        from smplx.utils import Struct

        path = model_file(model_dir if model_dir is not None else DEFAULT_AVATAR_DIR, model_type, gender)
        arrays = read_model_arrays(path)
        self.model_type, self.path = model_type, path
        num_betas = min(num_betas, arrays["shapedirs"].shape[-1])
        common = dict(num_betas=num_betas, gender=gender, batch_size=1)
        if len(arrays["v_template"]) not in SMPL_VERTEX_COUNTS:
            # smplx appends landmark "joints" at SMPL's vertex ids (nose, ears, toes, fingertips),
            # which another mesh doesn't have: point the few it insists on at vertex 0, unused here
            common.update(vertex_ids={name: 0 for name in ("nose", "reye", "leye", "rear", "lear")},
                          use_hands=False, use_feet_keypoints=False)
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 shape coefficients
            self.model = self._create(smplx, Struct, path, arrays, model_type, common)
        self.model.eval()
        self.faces = np.asarray(self.model.faces, dtype=np.int32)
        self.num_betas = num_betas
        self.num_body_joints = self.model.NUM_BODY_JOINTS  # 23 for SMPL, 21 for SMPL+H/SMPL-X
        with torch.no_grad():
            self.rest_joints = (self.model.J_regressor @ self.model.v_template).numpy().astype(np.float64)
        self.colours = self._colours()
        self._alignment = self._rest_alignment()

    @staticmethod
    def _create(smplx, Struct, path: Path, arrays: dict, model_type: str, common: dict):
        if model_type == "smpl":
            return smplx.SMPL(str(path), data_struct=Struct(**arrays), **common)
        if model_type == "smplh":
            for side in "lr":  # unused with full hand poses, but smplx reads them
                arrays.setdefault(f"hands_components{side}", np.eye(45))
                arrays.setdefault(f"hands_mean{side}", np.zeros(45))
            return smplx.SMPLH(str(path), data_struct=Struct(**arrays), use_pca=False, flat_hand_mean=True, **common)
        # SMPL-X: smplx reopens the file itself; read_model_arrays has checked it holds no pickles
        return smplx.SMPLX(str(path), ext="npz", use_pca=False, **common)

    def _colours(self) -> np.ndarray:
        """Per-vertex colours (V, 3): left side blue, right red, like the capsule body, blended by
        the skinning weights (hand and finger joints count as their wrist)."""
        parents = self.model.parents.numpy()
        body_joint = np.arange(len(parents))
        while (body_joint >= NUM_JOINTS).any():
            body_joint = np.where(body_joint >= NUM_JOINTS, parents[body_joint], body_joint)
        weights = self.model.lbs_weights.numpy().astype(np.float64)
        return (weights @ joint_colours()[body_joint]).astype(np.float32)

    def _rest_alignment(self) -> np.ndarray:
        """(22, 4) rotations taking this model's rest bone directions onto REST_DIRECTIONS."""
        align = np.tile([1.0, 0.0, 0.0, 0.0], (NUM_JOINTS, 1))
        for child in range(1, NUM_JOINTS):
            bone = self.rest_joints[child] - self.rest_joints[PARENTS[child]]
            align[child] = qbetween(bone / np.linalg.norm(bone), REST_DIRECTIONS[child])
        return align

    def _best_fit_rotation(self, joints: np.ndarray, parent: int) -> np.ndarray:
        """(T, 4) rotations best turning the model's rest bones parent -> children onto the
        clip's (weighted Kabsch on unit directions, via scipy)."""
        children = FIT_CHILDREN[parent]
        rest = np.stack([self.rest_joints[c] - self.rest_joints[parent] for c in children])
        rest /= np.linalg.norm(rest, axis=-1, keepdims=True)
        weights = np.array(list(children.values()))
        out = np.empty((len(joints), 4))
        for t, pose in enumerate(joints):
            target = pose[list(children)] - pose[parent]
            target /= np.maximum(np.linalg.norm(target, axis=-1, keepdims=True), 1e-9)
            out[t] = Rotation.align_vectors(target, rest, weights=weights)[0].as_quat(scalar_first=True)
        return out

    def pose_from_joints(self, joints: np.ndarray) -> dict[str, np.ndarray]:
        """SMPL parameters (axis-angle global_orient (T, 3), body_pose (T, 3 * NUM_BODY_JOINTS),
        transl (T, 3)) that put this model's bones along those of joints (T, 22, 3)."""
        joints = np.asarray(joints, dtype=np.float64)
        local = DEFAULT_SKELETON.inverse_kinematics(joints)
        bone = np.empty_like(local)  # global rotation of each bone parent(j) -> j
        bone[:, 0] = local[:, 0]
        for j in range(1, NUM_JOINTS):
            bone[:, j] = qmul(bone[:, PARENTS[j]], local[:, j])
        smpl_global = np.empty_like(bone)
        for j in range(NUM_JOINTS):  # parents come first
            child = DRIVING_CHILD[j]
            if child is None:
                smpl_global[:, j] = self._best_fit_rotation(joints, j)
            elif child >= 0:
                smpl_global[:, j] = qmul(bone[:, child], self._alignment[child])
            else:
                smpl_global[:, j] = smpl_global[:, PARENTS[j]]
        smpl_local = smpl_global.copy()
        for j in range(1, NUM_JOINTS):
            smpl_local[:, j] = qmul(qinv(smpl_global[:, PARENTS[j]]), smpl_global[:, j])
        rotvec = Rotation.from_quat(smpl_local.reshape(-1, 4), scalar_first=True).as_rotvec()
        rotvec = rotvec.reshape(len(joints), NUM_JOINTS, 3)
        body_pose = np.zeros((len(joints), self.num_body_joints, 3))
        body_pose[:, :NUM_JOINTS - 1] = rotvec[:, 1:]
        return {"global_orient": rotvec[:, 0], "body_pose": body_pose.reshape(len(joints), -1),
                "transl": joints[:, 0] - self.rest_joints[0]}

    def forward(self, global_orient: np.ndarray, body_pose: np.ndarray, transl: np.ndarray | None = None,
                betas: np.ndarray | None = None) -> PosedBody:
        """Vertices and joints of the model posed by axis-angle parameters, batched over frames."""
        frames = len(global_orient)
        transl = np.zeros((frames, 3)) if transl is None else transl
        betas = np.zeros((frames, self.num_betas)) if betas is None else np.broadcast_to(
            np.asarray(betas)[..., :self.num_betas], (frames, self.num_betas)).copy()
        body_pose = np.asarray(body_pose).reshape(frames, -1)[:, :3 * self.num_body_joints]
        # SMPL-H/SMPL-X body poses (21 joints) drive a SMPL model (23) with its hands at rest
        body_pose = np.pad(body_pose, ((0, 0), (0, 3 * self.num_body_joints - body_pose.shape[1])))
        vertices, joints = [], []
        with torch.no_grad():
            for s in range(0, frames, CHUNK):
                part = slice(s, s + CHUNK)
                as_tensor = lambda x: torch.as_tensor(np.ascontiguousarray(x[part]), dtype=torch.float32)
                n = len(as_tensor(transl))
                extra = {}
                if self.model_type in ("smplh", "smplx"):
                    extra = {"left_hand_pose": torch.zeros(n, 45), "right_hand_pose": torch.zeros(n, 45)}
                if self.model_type == "smplx":
                    extra.update(jaw_pose=torch.zeros(n, 3), leye_pose=torch.zeros(n, 3), reye_pose=torch.zeros(n, 3),
                                 expression=torch.zeros(n, self.model.num_expression_coeffs))
                out = self.model(global_orient=as_tensor(global_orient), body_pose=as_tensor(body_pose),
                                 transl=as_tensor(transl), betas=as_tensor(betas), return_verts=True, **extra)
                vertices.append(out.vertices.numpy())
                joints.append(out.joints.numpy())
        return PosedBody(np.concatenate(vertices), np.concatenate(joints))

    def clip(self, posed: PosedBody, z_up: bool = False) -> MeshClip:
        """A MeshClip of posed vertices, the camera on the pelvis, the floor under the lowest vertex."""
        vertices, root = posed.vertices, posed.joints[:, 0]
        if z_up:  # AMASS axes, turned the way the AMASS importer (and HumanML3D) does
            from motion.importers.amass import z_up_to_y_up

            vertices, root = z_up_to_y_up(vertices), z_up_to_y_up(root)
        return MeshClip(vertices.astype(np.float32), self.faces, self.colours, root=root,
                        floor_y=float(vertices[..., 1].min()))

    def clip_from_params(self, global_orient: np.ndarray, body_pose: np.ndarray, transl: np.ndarray | None = None,
                         betas: np.ndarray | None = None, z_up: bool = False) -> MeshClip:
        """A MeshClip from SMPL-family parameters (e.g. an AMASS clip; `z_up=True` for AMASS axes)."""
        return self.clip(self.forward(global_orient, body_pose, transl, betas), z_up=z_up)

    def clip_from_joints(self, joints: np.ndarray) -> MeshClip:
        """A MeshClip of this body following joints (T, 22, 3) (Y up, metres)."""
        return self.clip(self.forward(**self.pose_from_joints(joints)))


@lru_cache(maxsize=2)
def _cached_model(path: str, model_type: str) -> BodyModel:
    return BodyModel(path, model_type)


def load_body_model(model_dir: str | Path | None = None, model_type: str = "smpl") -> BodyModel:
    """A BodyModel, cached per process (loading a model takes ~0.5 s)."""
    return _cached_model(str(model_dir if model_dir is not None else DEFAULT_AVATAR_DIR), model_type)
