"""Left/right mirroring for data augmentation: joints, 263-d features and captions.

Mirroring negates X (the body's left/right axis) and swaps left and right joints. In the
263 vector every block transforms directly (no round trip through joints, which would lose
the last frame): facing frames mirror with the body, so facing-frame vectors get X negated and
joints permuted, the root turn rate changes sign, rotations R become M R M with M = diag(-1, 1, 1)
(6D [c0, c1] -> signs + - - - + +), and the left/right foot contacts swap.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from motion.features import FEATURE_DIM, check_features, check_joints
from motion.skeleton import MIRROR_PERMUTATION, NUM_JOINTS

_PERM = list(MIRROR_PERMUTATION)
_PERM_NO_ROOT = [j - 1 for j in MIRROR_PERMUTATION[1:]]  # over joints 1..21
_X_FLIP = np.array([-1.0, 1.0, 1.0])
_SIX_D_FLIP = np.array([1.0, -1.0, -1.0, -1.0, 1.0, 1.0])


def mirror_joints(joints, source: str = "joints") -> np.ndarray:
    """(T, 22, 3) -> mirrored positions: X negated, left and right joints swapped."""
    joints = check_joints(joints, source, min_frames=1)
    return joints[:, _PERM] * _X_FLIP


def _feature_sign_and_order() -> tuple[np.ndarray, np.ndarray]:
    """Mirroring the 263 vector is out[i] = sign[i] * x[order[i]]."""
    order, sign = [], []

    def block(start: int, joints: list[int], width: int, flip: np.ndarray) -> None:
        for j in joints:
            order.extend(start + j * width + k for k in range(width))
            sign.extend(flip)

    order += [0, 1, 2, 3]
    sign += [-1.0, -1.0, 1.0, 1.0]  # turn rate, root X velocity, root Z velocity, height
    block(4, _PERM_NO_ROOT, 3, _X_FLIP)
    block(67, _PERM_NO_ROOT, 6, _SIX_D_FLIP)
    block(193, _PERM, 3, _X_FLIP)
    order += [261, 262, 259, 260]  # (left ankle, left foot) <-> (right ankle, right foot)
    sign += [1.0] * 4
    return np.array(order), np.array(sign)


_FEATURE_ORDER, _FEATURE_SIGN = _feature_sign_and_order()
assert len(_FEATURE_ORDER) == FEATURE_DIM and sorted(_FEATURE_ORDER) == list(range(FEATURE_DIM))
assert len(_PERM) == NUM_JOINTS


def mirror_features(features, source: str = "features"):
    """Mirror (..., T, 263) features directly; NumPy or torch, same type and dtype out."""
    check_features(features, source)
    if isinstance(features, torch.Tensor):
        order = torch.as_tensor(_FEATURE_ORDER, device=features.device)
        sign = torch.as_tensor(_FEATURE_SIGN, dtype=features.dtype, device=features.device)
        return features[..., order] * sign
    features = np.asarray(features)
    return (features[..., _FEATURE_ORDER] * _FEATURE_SIGN).astype(features.dtype, copy=False)


# ----------------------------------------------------------------------------- captions

# Canonical spelling of what a mirrored word becomes. "counter-clockwise", "counter clockwise",
# "anticlockwise" and "anti-clockwise" all become "clockwise", and "clockwise" becomes
# "counterclockwise", so a double swap normalizes those variants to "counterclockwise".
_SWAPS = {
    "left": "right", "right": "left",
    "leftward": "rightward", "rightward": "leftward",
    "leftwards": "rightwards", "rightwards": "leftwards",
    "leftmost": "rightmost", "rightmost": "leftmost",
    "clockwise": "counterclockwise",
    "counterclockwise": "clockwise", "counter-clockwise": "clockwise", "counter clockwise": "clockwise",
    "anticlockwise": "clockwise", "anti-clockwise": "clockwise",
}
# "right" meaning "correct" or "immediately" stays: these phrases are left as they are.
_KEEP = ("all right", "right away", "right now")
_WORD = re.compile(
    r"(?<![A-Za-z])("
    + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(_SWAPS, key=len, reverse=True))
    + r")(?![A-Za-z])",
    re.IGNORECASE,
)
_KEEP_RE = re.compile(r"(?<![A-Za-z])(" + "|".join(k.replace(" ", r"\s+") for k in _KEEP) + r")(?![A-Za-z])",
                      re.IGNORECASE)


def _match_case(template: str, word: str) -> str:
    if template.isupper():
        return word.upper()
    if template[0].isupper():
        return word[0].upper() + word[1:]
    return word


def swap_left_right(text: str) -> str:
    """Swap left/right words in a caption for a mirrored motion, keeping their case.

    Whole words only, so "leftover", "bright", "cleft", "lefty" and "righteous" stay; hyphen and
    apostrophe forms swap ("left-hand" -> "right-hand", "left's" -> "right's"). "right" in
    "all right", "right away" and "right now" is not a direction and stays.
    """
    kept = [(m.start(), m.end()) for m in _KEEP_RE.finditer(text)]

    def replace(match: re.Match) -> str:
        if any(start <= match.start() < end for start, end in kept):
            return match.group(0)
        word = match.group(0)
        key = re.sub(r"\s+", " ", word.lower())
        return _match_case(word, _SWAPS[key])

    return _WORD.sub(replace, text)
