"""AMASS (SMPL-H) sequences -> 22 canonical joints, through `smplx`, the HumanML3D way.

An AMASS npz holds `poses` (T, 156) axis-angle (root 3, body 63, hands 90), `trans` (T, 3),
`betas`, `gender` and `mocap_framerate`. As HumanML3D does, we use the first 10 betas, take the
first 22 posed joints, turn Z up into Y up with (x, y, z) -> (-x, z, y) (a proper rotation:
det = +1) and down-sample by striding to 20 fps. Where the source rate is not a multiple of 20
(HumanML3D's int(fps / 20) stride then gives the wrong rate) we interpolate instead.

Body model files are read with np.load(allow_pickle=False) and handed to smplx as a struct, so
no pickle is ever executed; `body_model_dir` may hold `SMPLH_<GENDER>.npz` (smplx layout) or
`<gender>/model.npz` (AMASS layout), or be the model file itself.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from motion.features import resample
from motion.skeleton import JOINT_NAMES

from .common import TARGET_FPS, ImportedMotion, MotionImportError

NUM_BETAS = 10  # HumanML3D uses betas[:10]; smplx also caps SMPL-H shape spaces at 10
MODEL_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
Z_UP_TO_Y_UP = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # rows: new x, y, z


def z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    """(..., 3) AMASS Z-up coordinates -> Y-up ones: (x, y, z) -> (-x, z, y)."""
    return points @ Z_UP_TO_Y_UP.T


def find_body_model(body_model_dir: str | Path, gender: str) -> Path:
    base = Path(body_model_dir)
    candidates = [base] if base.is_file() else [
        base / f"SMPLH_{gender.upper()}.npz", base / gender / "model.npz", base / "smplh" / gender / "model.npz"]
    for path in candidates:
        if path.is_file():
            return path
    raise MotionImportError(
        f"{base}: no SMPL-H {gender} body model (looked for {', '.join(str(c) for c in candidates)}); "
        "pass body_model_dir= the folder holding SMPLH_<GENDER>.npz or <gender>/model.npz")


def load_smplh(model_path: Path, device: str = "cpu"):
    """Build smplx.SMPLH from an npz without unpickling; hand PCA is off (AMASS gives full hand poses)."""
    import smplx
    from smplx.utils import Struct

    with np.load(model_path, allow_pickle=False) as data:
        missing = [k for k in MODEL_KEYS if k not in data.files]
        if missing:
            raise MotionImportError(f"{model_path}: body model lacks {missing}; expected an SMPL-H .npz model")
        try:
            arrays = {k: np.asarray(data[k]) for k in MODEL_KEYS}
        except ValueError as err:  # object arrays would need pickle
            raise MotionImportError(
                f"{model_path}: body model stores pickled objects ({err}); re-save it as plain arrays") from None
        for side in "lr":  # unused with use_pca=False and flat hands, but smplx reads them
            arrays[f"hands_components{side}"] = (
                np.asarray(data[f"hands_components{side}"]) if f"hands_components{side}" in data.files else np.eye(45))
            arrays[f"hands_mean{side}"] = np.zeros(45)
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 shape coefficients
        model = smplx.SMPLH(str(model_path), data_struct=Struct(**arrays), use_pca=False, flat_hand_mean=True,
                            num_betas=NUM_BETAS, batch_size=1)
    return model.to(device).eval()


def _scalar_string(value: np.ndarray) -> str:
    item = np.asarray(value).reshape(-1)[0] if np.asarray(value).size else ""
    return item.decode() if isinstance(item, bytes) else str(item)


def smplh_joints(model, poses: np.ndarray, trans: np.ndarray, betas: np.ndarray,
                 chunk: int = 512, device: str = "cpu") -> np.ndarray:
    """First 22 posed joints (T, 22, 3), Z up as in AMASS, computed `chunk` frames at a time."""
    import torch

    out = []
    beta = torch.as_tensor(betas[:NUM_BETAS], dtype=torch.float32, device=device)[None]
    with torch.no_grad():
        for s in range(0, poses.shape[0], chunk):
            p = torch.as_tensor(poses[s:s + chunk], dtype=torch.float32, device=device)
            t = torch.as_tensor(trans[s:s + chunk], dtype=torch.float32, device=device)
            res = model(betas=beta.expand(p.shape[0], -1), global_orient=p[:, :3], body_pose=p[:, 3:66],
                        left_hand_pose=p[:, 66:111], right_hand_pose=p[:, 111:156], transl=t,
                        return_verts=False)
            out.append(res.joints[:, :22].double().cpu().numpy())
    return np.concatenate(out)


def _read_sequence(data, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str]:
    for key in ("poses", "trans"):
        if key not in data.files:
            raise MotionImportError(f"{path}: no '{key}' array (has {data.files}); not an AMASS SMPL-H sequence "
                                    "(e.g. a shape.npz)", reason="not_a_sequence")
    poses, trans = np.asarray(data["poses"], np.float64), np.asarray(data["trans"], np.float64)
    betas = np.asarray(data["betas"], np.float64).reshape(-1) if "betas" in data.files else np.zeros(NUM_BETAS)
    rate_key = next((k for k in ("mocap_framerate", "mocap_frame_rate") if k in data.files), None)
    if rate_key is None:
        raise MotionImportError(f"{path}: no mocap_framerate; not an AMASS sequence", reason="not_a_sequence")
    fps = float(np.asarray(data[rate_key]).reshape(-1)[0])
    file_gender = _scalar_string(data["gender"]) if "gender" in data.files else "neutral"
    return poses, trans, betas, fps, file_gender


def _load_sequence(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str]:
    """(poses, trans, betas, fps, gender in the file) of an AMASS SMPL-H npz, checked; raises a
    MotionImportError naming the file (with a reason a converter counts skips by)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MotionImportError(f"{path}: cannot read npz ({err})", reason="unreadable_npz") from None
    try:
        with data:
            poses, trans, betas, fps, file_gender = _read_sequence(data, path)
    except ValueError as err:  # object arrays need pickle, which we never run
        if isinstance(err, MotionImportError):
            raise
        raise MotionImportError(f"{path}: cannot read npz ({err}); re-save it with plain numeric arrays",
                                reason="unreadable_npz") from None
    if poses.ndim != 2 or poses.shape[1] != 156:
        kind = " (an SMPL-X sequence: use AMASS's SMPL-H release)" if poses.ndim == 2 and poses.shape[1] == 165 else ""
        raise MotionImportError(f"{path}: poses have shape {poses.shape}, expected (T, 156) SMPL-H axis-angles{kind}",
                                reason="not_smplh")
    if poses.shape[0] < 2:
        raise MotionImportError(f"{path}: clip has {poses.shape[0]} frame(s); at least 2 are needed",
                                reason="too_short")
    if trans.shape != (poses.shape[0], 3):
        raise MotionImportError(f"{path}: trans has shape {trans.shape}, expected ({poses.shape[0]}, 3)",
                                reason="bad_arrays")
    return poses, trans, betas, fps, file_gender


def probe_amass_npz(npz_path: str | Path) -> tuple[float, int]:
    """(frame rate, frames) of an AMASS sequence, checked as `load_amass_npz` checks it, without the
    body model: what a dry run and HumanML3D's frame timing need."""
    poses, _, _, fps, _ = _load_sequence(Path(npz_path))
    return fps, len(poses)


def _stride(fps: float, target_fps: float) -> int | None:
    """The integer step from `fps` down to `target_fps`, or None when the rates are not multiples."""
    ratio = fps / target_fps
    stride = round(ratio)
    return stride if stride >= 1 and abs(ratio - stride) < 1e-3 else None


def frames_at(fps: float, frames: int, target_fps: float = TARGET_FPS) -> int:
    """How many frames `load_amass_npz` returns for a sequence of `frames` frames at `fps`."""
    stride = _stride(fps, target_fps)
    if stride is not None:
        return -(-frames // stride)
    return len(resample(np.zeros((frames, 1)), fps, target_fps))


def load_amass_npz(npz_path: str | Path, body_model_dir: str | Path, gender: str | None = None,
                   device: str = "cpu", target_fps: float = TARGET_FPS, chunk: int = 512) -> ImportedMotion:
    """AMASS SMPL-H sequence -> 22 joints (metres, Y up) at `target_fps`.

    gender: "neutral", "male", "female", or None to use the one stored in the file.
    """
    path = Path(npz_path)
    poses, trans, betas, fps, file_gender = _load_sequence(path)
    if betas.size < NUM_BETAS:
        betas = np.pad(betas, (0, NUM_BETAS - betas.size))
    gender = (gender or file_gender).lower()
    if gender not in ("neutral", "male", "female"):
        raise MotionImportError(f"{path}: gender {gender!r}; pass gender='neutral', 'male' or 'female'")

    stride = _stride(fps, target_fps)
    by_stride = stride is not None
    if by_stride:  # stride before the body model: same frames as HumanML3D, 1/stride of the work
        poses, trans = poses[::stride], trans[::stride]
    model = load_smplh(find_body_model(body_model_dir, gender), device)
    joints = z_up_to_y_up(smplh_joints(model, poses, trans, betas, chunk, device))
    if not by_stride:
        joints = resample(joints, fps, target_fps, source=str(path))
    return ImportedMotion(joints, target_fps, str(path), {n: f"smplh:{i}" for i, n in enumerate(JOINT_NAMES)})
