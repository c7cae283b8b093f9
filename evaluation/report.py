"""The evaluation report: metrics.json (everything) and metrics.md (the tables)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """metrics.json (everything) and metrics.md (the tables) in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "metrics.json", out_dir / "metrics.md"
    json_path.write_text(json.dumps(report, indent=1, default=_jsonable) + "\n", encoding="utf-8")
    md_path.write_text(markdown_report(report), encoding="utf-8")
    return json_path, md_path


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_report(report: dict[str, Any]) -> str:
    o = report["options"]
    parts = [f"# trimo evaluation\n\nModel: `{report.get('model', '')}`  \n"
             f"Sentence-embedding model: `{report['sentence_model']}`  \n"
             f"Thresholds on (cos + 1) / 2: All-threshold {o['threshold']}, Assigned {o['assigned_threshold']}\n"]
    ret = report.get("retrieval")
    if ret:
        parts.append(f"\n## Retrieval ({ret['n_items']} items" +
                     (f", {ret['n_video_items']} with video" if "n_video_items" in ret else "") + ")\n\n")
        keys = ["R@1", "R@2", "R@3", "R@5", "R@10", "MedR"]
        rows = [[direction, protocol] + [m[k] for k in keys]
                for direction in ("text_to_motion", "motion_to_text", "video_to_motion", "motion_to_video")
                if direction in ret for protocol, m in ret[direction].items()]
        parts.append(_table(["direction", "protocol"] + keys, rows))
        n = ret["n_items"]   # a random ranking of the All protocol's gallery
        parts.append("\nChance (All): " + ", ".join(f"R@{k} {100.0 * min(k, n) / n:.2f}" for k in (1, 2, 3, 5, 10))
                     + f", MedR {(n + 1) / 2:.1f}\n")
        parts += [f"\nNote: {note}\n" for note in ret.get("notes", [])]
    car = report.get("car")
    if car:
        parts.append(f"\n## Chronological accuracy (CAR, {car['n_items']} items; skipped: "
                     f"{car['skipped_single_event']} single-event, {car['skipped_unshuffleable']} unshuffleable)\n\n")
        if "orig_to_event" in car:
            rows = [[name, car[f"{key}_to_event"]] + [car[ranks][k] for k in ("R@1", "R@5", "MedR")]
                    for name, key, ranks in (("orig->event", "orig", "motion_to_text_with_shuffled"),
                                             ("event->event", "event", "motion_to_events_with_shuffled"))]
            parts.append(_table(["scenario", "CAR", "m->t R@1 (+shuffled)", "m->t R@5 (+shuffled)",
                                 "m->t MedR (+shuffled)"], rows))
    loc = report.get("localization")
    if loc:
        parts.append(f"\n## Temporal sentence localization ({loc['n_queries']} queries, "
                     f"{loc['n_motions']} motions)\n\n")
        keys = ["IoU@0.5", "IoU@0.7", "IoU@0.9", "mIoU"]
        rows = [[method, protocol] + [loc[method][protocol][k] for k in keys]
                for method in ("model", "pyramid") if method in loc for protocol in ("normal", "assigned")]
        parts.append(_table(["method", "protocol"] + keys, rows))
        if loc.get("by_kind"):
            parts.append("\nBy query kind (Normal protocol):\n\n")
            rows = [[method, kind, scores["queries"]] + [scores[k] for k in keys]
                    for method, kinds in loc["by_kind"].items() for kind, scores in kinds.items()]
            parts.append(_table(["method", "kind", "queries"] + keys, rows))
    corpus = report.get("corpus")
    if corpus:
        parts.append(f"\n## Corpus moment retrieval (k = {corpus['k']}, lambda = {corpus['lambda']})\n\n")
        parts.append(_table(list(corpus["recall"]), [list(corpus["recall"].values())]))
        dcg = corpus["dcg_text_motion"]
        rows = [["text-motion"] + list(dcg.values()), ["ideal"] + list(corpus["ideal_dcg"].values())]
        parts.append("\n" + _table(["relevance"] + list(dcg), rows))
    return "".join(parts)
