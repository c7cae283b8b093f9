"""One's own mocap library and a captions table -> one shard set (`trimo-make-shards`).

The table (CSV with a header, or JSON lines) has one row per caption: `path` (a mocap file under
the library root, any format motion.importers reads), `text`, and optionally `start`/`end`
(seconds inside the take; several rows may describe pieces of one take), `split`, `id` and
`events` (the caption's event sentences, `|`-separated in CSV, a list in JSONL; decomposed here
when absent). One sample per take: its canonical motion at 20 fps, its captions with their spans
(the reader crops to a caption), split by take so that no take is in two splits.

What cannot be used is skipped with a line naming the row or file, the problem and the fix, and
counted by reason: an empty caption, a path that is not under the root or not readable, a span
outside the take or empty, a split other than train/val/test, rows of one take that name two
splits, a duplicate id. Mirrored copies are made only when asked, marked `mirrored`.

A take that two or more rows cut into spans is also an untrimmed localization sample
(`localization_sample`): the whole take, its spans as `moments`.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from motion.features import joints_to_features
from motion.importers import load_motion

from .common import FPS, Skipped, caption, clean_key, convert_all, make_sample, mirror_sample

SPLITS = ("train", "val", "test")


@dataclass
class Take:
    """One mocap file and the caption rows that describe it."""

    path: str
    split: str | None = None
    rows: list[dict] = field(default_factory=list)   # {line, text, start, end, events, id}


def read_table(path: str | Path) -> list[dict]:
    """Rows of a captions table (.csv with a header or .jsonl), each with its line number."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: captions table not found")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(dict(json.loads(line), line=line_no))
                except (json.JSONDecodeError, TypeError, ValueError):
                    rows.append({"line": line_no, "_error": "not a JSON object"})
        return rows
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("path", "text") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: columns {missing} missing; the header needs path,text "
                             "(and optionally start,end,split,id,events)")
        return [dict(row, line=line_no) for line_no, row in enumerate(reader, 2)]


def _time(value) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)


def group_takes(rows: list[dict], root: str | Path, table: str = "captions") -> tuple[list[Take], list[Skipped]]:
    """Takes (in table order) with their valid rows, and a Skipped entry per unusable row."""
    root = Path(root).resolve()
    takes: dict[str, Take] = {}
    skipped: list[Skipped] = []
    ids: set[str] = set()

    def skip(row: dict, reason: str, problem: str) -> None:
        skipped.append(Skipped(reason, f"{table}:{row['line']}: {problem}"))

    for row in rows:
        if "_error" in row:
            skip(row, "bad_row", row["_error"])
            continue
        text = " ".join(str(row.get("text") or "").split())
        rel = str(row.get("path") or "").strip()
        if not text:
            skip(row, "empty_caption", "empty caption; write the text or drop the row")
            continue
        file = (root / rel).resolve()
        if not rel or root not in file.parents or not file.is_file():
            skip(row, "unknown_path", f"{rel!r} is not a file under {root}; paths are relative to --root")
            continue
        try:
            start, end = _time(row.get("start")), _time(row.get("end"))
        except ValueError:
            skip(row, "bad_time", f"start/end {row.get('start')!r}/{row.get('end')!r} are not numbers (seconds)")
            continue
        if (start is None) != (end is None) or (start is not None and not 0.0 <= start < end):
            skip(row, "bad_span", f"span {start}..{end} s: give both start < end (>= 0), or neither for the whole take")
            continue
        split = str(row.get("split") or "").strip() or None
        if split is not None and split not in SPLITS:
            skip(row, "bad_split", f"split {split!r} is not one of {SPLITS}")
            continue
        row_id = str(row.get("id") or "").strip() or None
        if row_id is not None:
            if row_id in ids:
                skip(row, "duplicate_id", f"id {row_id!r} is used by an earlier row; ids must be unique")
                continue
            ids.add(row_id)
        events = row.get("events")
        if isinstance(events, str):
            events = [e.strip() for e in events.split("|") if e.strip()] or None
        take = takes.setdefault(rel, Take(rel))
        if split is not None and take.split not in (None, split):
            skip(row, "split_conflict", f"{rel} is in split {take.split!r} by an earlier row; a take has one split")
            continue
        take.split = take.split or split
        take.rows.append({"line": row["line"], "text": text, "start": start, "end": end, "events": events,
                          "id": row_id})
    return list(takes.values()), skipped


def assign_splits(takes: list[Take], val: float, test: float, seed: int) -> None:
    """Takes without a split from the table are drawn into val/test/train (seeded, by take)."""
    free = [t for t in takes if t.split is None]
    order = np.random.default_rng(seed).permutation(len(free))
    n_val, n_test = round(val * len(free)), round(test * len(free))
    for rank, i in enumerate(order):
        free[i].split = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"


def own_samples(takes: list[Take], root: str | Path, *, dataset: str, table: str = "captions",
                mapping: str | None = None, units: str = "auto", body_model_dir: str | None = None,
                definition: str = "trimo", mirror: bool = False, with_joints: bool = True,
                num_workers: int = 0) -> Iterator[dict | Skipped]:
    convert = partial(_convert, root=str(root), dataset=dataset, table=table, mapping=mapping, units=units,
                      body_model_dir=body_model_dir, definition=definition, mirror=mirror, with_joints=with_joints)
    return convert_all(takes, convert, num_workers)


def _convert(take: Take, root: str, dataset: str, table: str, mapping: str | None, units: str,
             body_model_dir: str | None, definition: str, mirror: bool, with_joints: bool) -> list:
    motion = load_motion(Path(root) / take.path, mapping=mapping, units=units, body_model_dir=body_model_dir)
    joints = motion.to_canonical()
    features = joints_to_features(joints, source=take.path, definition=definition)
    duration = len(features) / FPS
    texts, out = [], []
    for row in take.rows:
        if row["end"] is not None and row["end"] > duration + 1.0 / FPS:
            out.append(Skipped("span_outside_take", f"{table}:{row['line']}: span {row['start']}..{row['end']} s "
                                                    f"ends after {take.path} ({duration:.2f} s)"))
            continue
        entry = caption(row["text"], row["start"], row["end"], events=row["events"] is None)
        if row["events"] is not None:
            entry["events"] = row["events"]
        texts.append(entry)
    if not texts:
        return out
    ids = [r["id"] for r in take.rows if r["id"]]
    key = clean_key(dataset, ids[0] if len(take.rows) == 1 and ids else str(Path(take.path).with_suffix("")))
    sample = make_sample(key, features, dataset=dataset, split=take.split, source=take.path, mirrored=False,
                         texts=texts, joints=joints if with_joints else None)
    out.append(sample)
    if mirror:
        out.append(mirror_sample(sample))
    return out


def localization_sample(sample: dict) -> dict | None:
    """A take described by two or more spans as a localization sample (texts [], the spans as
    moments in the untrimmed motion), or None for a take with fewer spans."""
    spans = [t for t in sample["meta"]["texts"] if t["start"] is not None]
    if len(spans) < 2:
        return None
    moments = [{"text": t["text"], "start": t["start"], "end": t["end"]} for t in spans]
    out = {k: v for k, v in sample.items() if k in ("key", "motion", "joints")}
    return dict(out, meta=dict(sample["meta"], texts=[], moments=moments))
