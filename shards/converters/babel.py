"""BABEL + AMASS -> localization samples (MLP's TSLM benchmark).

BABEL's release holds `train.json`, `val.json` (and `test.json` without labels, which is
unused) mapping a sequence id to {babel_sid, feat_p (AMASS npz path), dur, seq_ann, frame_ann};
`frame_ann` is null for sequences labelled only as a whole. `extra_train.json` / `extra_val.json`
hold more annotators' labels as lists (`seq_anns`, `frame_anns`), and many sequences appear only
there (10,576 sequences have extra annotations; the MLP authors' split lists include ids found only
in the extras), so the ids of a split are the union of both files, and an extra-only sequence
takes its feat_p and dur from the extra file. `labels` are {raw_label, proc_label, start_t, end_t
(seconds)}. Every annotator's frame labels are used (the main file's and all of the extras'),
identical (text, span) pairs once: our reading of the MLP authors' use, who train on all frame
annotations.

One sample per annotated sequence: motion = the whole AMASS sequence at 20 fps (smplx),
`moments` = every frame-level `raw_label` with its span (clipped to the motion), `texts` = [].
As in MLP: labels "transition" are dropped, and BABEL val is the test split (BABEL's test labels
are not public). Unlike MLP's released code, model selection needs a validation split, so
`val_fraction` of the BABEL train sequences (a seeded draw over sorted ids) become "val".
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np

from motion.importers.common import MotionImportError

from .common import FPS, Skipped, amass_motion, clean_key, convert_all, make_sample, mirror_sample

DATASET = "babel"
DROPPED_LABELS = ("transition",)
# BABEL release file -> trimo split it feeds
SPLIT_FILES = {"train": ("train.json", "extra_train.json"), "test": ("val.json", "extra_val.json")}


def read_babel(babel_dir: str | Path, name: str, required: bool = True) -> dict:
    """One BABEL json file ({sid: entry}); an absent optional (extra_*) file gives {}."""
    path = Path(babel_dir) / name
    if not path.is_file():
        if required:
            raise MotionImportError(f"{path}: not found; pass the folder of BABEL's release (babel_v1.0_release)")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MotionImportError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise MotionImportError(f"{path}: expected an object of sequence id -> annotation")
    return data


def frame_labels(entry: dict) -> list[dict]:
    """All frame-level labels of an entry: `frame_ann` (main file) or `frame_anns` (extra files)."""
    anns = [entry.get("frame_ann")] + list(entry.get("frame_anns") or [])
    return [label for ann in anns if ann for label in ann.get("labels") or []]


def moments_of(labels: list[dict], duration: float, where: str, bad: list[str] | None = None) -> list[dict]:
    """{text, start, end} per label: raw_label text, span clipped to [0, duration], transitions and
    empty spans left out, exact duplicates (same text and span from two annotation files) once. A
    label without numeric times is left out and described in `bad`."""
    out, seen = [], set()
    for label in labels:
        text = " ".join(str(label.get("raw_label") or label.get("proc_label") or "").split())
        if not text or text.lower() in DROPPED_LABELS or str(label.get("proc_label", "")).lower() in DROPPED_LABELS:
            continue
        try:
            start, end = float(label["start_t"]), float(label["end_t"])
        except (KeyError, TypeError, ValueError):
            if bad is not None:
                bad.append(f"{where}: frame label {text!r} lacks numeric start_t/end_t")
            continue
        start, end = max(0.0, start), min(end, duration)
        if end <= start or (text, start, end) in seen:
            continue
        seen.add((text, start, end))
        out.append({"text": text, "start": round(start, 4), "end": round(end, 4)})
    return out


def find_amass_file(amass_root: str | Path, feat_p: str) -> Path:
    """BABEL's feat_p starts with the AMASS archive's name ("CMU/CMU/..."); accept either layout."""
    root = Path(amass_root)
    rel = Path(feat_p)
    candidates = [root / rel, root / Path(*rel.parts[1:])] if len(rel.parts) > 1 else [root / rel]
    for path in candidates:
        if path.is_file():
            return path
    raise MotionImportError(f"{candidates[0]}: AMASS sequence not found (also tried {candidates[-1]}); "
                            "pass --amass-root the folder holding the extracted AMASS subsets",
                            reason="amass_file_missing")


def _convert(item: tuple[str, str, dict], amass_root: str, body_model_dir: str, gender: str | None,
             with_joints: bool, mirror: bool, dry_run: bool = False, definition: str = "trimo") -> list:
    split, sid, entry = item
    where = f"BABEL sequence {sid}"
    if "feat_p" not in entry:
        raise MotionImportError(f"{where}: no feat_p (AMASS path)", reason="no_feat_p")
    npz = find_amass_file(amass_root, entry["feat_p"])
    features, joints = amass_motion(npz, body_model_dir, gender, dry_run=dry_run, definition=definition)
    bad: list[str] = []
    moments = moments_of(entry["labels"], len(features) / FPS, where, bad)
    skipped = [Skipped("frame_label", line) for line in bad]
    if not moments:
        return skipped + [Skipped("no_frame_label", f"{where}: no usable frame label (all transitions or empty)")]
    sample = make_sample(clean_key(DATASET, sid), features, dataset=DATASET, split=split, source=entry["feat_p"],
                         mirrored=False, texts=[], moments=moments, joints=joints if with_joints else None,
                         babel_sid=sid)
    return skipped + ([sample, mirror_sample(sample)] if mirror else [sample])


def babel_items(babel_dir: str | Path, val_fraction: float = 0.1, seed: int = 0,
                extra: bool = True) -> dict[str, list[tuple[str, str, dict]]]:
    """(split, sid, entry with merged `labels`) per trimo split; sequences without frame labels are left out."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: use a fraction in [0, 1)")
    out: dict[str, list] = {}
    for split, (main, extra_name) in SPLIT_FILES.items():
        entries = read_babel(babel_dir, main)
        extras = read_babel(babel_dir, extra_name, required=False) if extra else {}
        items = []
        for sid in sorted(set(entries) | set(extras), key=_sid_order):
            main_entry, extra_entry = entries.get(sid) or {}, extras.get(sid) or {}
            labels = frame_labels(main_entry) + frame_labels(extra_entry)
            if labels:
                items.append((split, sid, dict(extra_entry, **main_entry, labels=labels)))
        out[split] = items
    if val_fraction > 0:
        train = out["train"]
        pick = set(np.random.default_rng(seed).permutation(len(train))[:round(val_fraction * len(train))].tolist())
        out["val"] = [("val", sid, entry) for i, (_, sid, entry) in enumerate(train) if i in pick]
        out["train"] = [item for i, item in enumerate(train) if i not in pick]
    return out


def babel_samples(items: list[tuple[str, str, dict]], amass_root: str | Path, body_model_dir: str | Path, *,
                  gender: str | None = None, with_joints: bool = False, mirror: bool = False,
                  num_workers: int = 0, dry_run: bool = False, definition: str = "trimo") -> Iterator[dict]:
    convert = partial(_convert, amass_root=str(amass_root), body_model_dir=str(body_model_dir), gender=gender,
                      with_joints=with_joints, mirror=mirror, dry_run=dry_run, definition=definition)
    return convert_all(items, convert, num_workers)


def _sid_order(sid: str) -> tuple[int, str]:
    return (int(sid), sid) if sid.isdigit() else (1 << 62, sid)
