"""Search your own motion library with a trained model (`trimo-search`).

    trimo-search index --model runs/mine/export my_mocap/ more.bvh shards/mine -o my_mocap.index
    trimo-search query my_mocap.index "a person jumps" -k 5 [--json]
    trimo-search query my_mocap.index --motion example.bvh        # motions like an example clip
    trimo-search query my_mocap.index --video example.mp4         # motions like a video (3-modal models)
    trimo-search moments my_mocap.index "a person jumps" [--motion-id ID] -k 5 [--json]
    trimo-search serve my_mocap.index [--port 7860]                # the search page (search/web.py)

`index` reads BVH, ASF/AMC, AMASS .npz (with --body-model-dir), joint or HumanML3D feature .npy
files and shard sets (folders with shards.json), skips what it cannot read with a line each and
counts it, and adds to an existing index only the files it lacks or that changed. Queries load the
model the index was built with (or --model, which must be the same weights). search/library.py
says how motions are chunked and scored.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from search.library import (SEARCH_BACKENDS, MotionIndex, SearchIndexError, Searcher, SkippedFile, as_dicts,
                            index_paths)


def _index(args) -> int:
    searcher = Searcher(args.model, args.device, progress=not args.quiet)
    meta = index_paths(args.out)[-1]
    if meta.is_file() and not args.rebuild:
        index = MotionIndex.load(args.out)
        print(f"trimo-search: adding to {meta} ({len(index)} motions; --rebuild starts over)")
    else:
        index = searcher.new_index()
    added, skipped = searcher.add(index, args.paths, mapping=args.mapping, units=args.units,
                                  body_model_dir=args.body_model_dir)
    for file, reason, message in skipped:
        print(f"trimo-search: skipped ({reason}): {message}", file=sys.stderr)
    if not len(index):
        print("trimo-search: nothing indexed; see the skip reasons above", file=sys.stderr)
        return 1
    written = index.save(args.out)
    counts = dict(Counter(reason for _, reason, _ in skipped))
    print(f"trimo-search: {added} motions added, {len(index)} in the index -> {', '.join(map(str, written))}"
          + (f"; skipped {counts}" if counts else ""))
    return 0


def _searcher_for(index: MotionIndex, args) -> Searcher:
    return Searcher(args.model or index.model, args.device, progress=False, backend=args.backend)


def _query(args) -> int:
    index = MotionIndex.load(args.index)
    searcher = _searcher_for(index, args)
    if sum(x is not None for x in (args.text, args.motion, args.video)) != 1:
        print("trimo-search query: give one of TEXT, --motion FILE or --video FILE", file=sys.stderr)
        return 2
    if args.text is not None:
        hits = searcher.search_text(index, args.text, args.k)
    elif args.motion is not None:
        from search.library import read_file_motions

        [(_, features)] = read_file_motions(Path(args.motion), searcher.motion_features)[:1]
        hits = searcher.search_motion(index, features, args.k)
    else:
        from shards.video_io import decode_mp4

        video_cfg = searcher.cfg.model.retrieval.video
        frames = decode_mp4(Path(args.video).read_bytes(), video_cfg.n_frames, searcher.cfg.data.video_size,
                            where=args.video)
        hits = searcher.search_video(index, frames.transpose(0, 3, 1, 2), args.k)
    if args.json:
        print(json.dumps(as_dicts(hits), indent=1))
    else:
        _table(["rank", "score", "id", "best 10 s (s)", "path"],
               [[str(i + 1), f"{h.score:.3f}", h.id, f"{h.start_s:.1f}-{h.end_s:.1f}", h.path] for i, h in enumerate(hits)])
    return 0


def _moments(args) -> int:
    index = MotionIndex.load(args.index)
    searcher = _searcher_for(index, args)
    found = searcher.moments(index, args.text, args.k, motion_id=args.motion_id, candidates=args.candidates)
    if args.json:
        print(json.dumps(as_dicts(found), indent=1))
    else:
        _table(["rank", "score", "id", "moment (s)", "method"],
               [[str(i + 1), f"{m.score:.3f}", m.id, f"{m.start_s:.1f}-{m.end_s:.1f} of {m.duration_s:.1f}", m.method]
                for i, m in enumerate(found)])
    return 0


def _serve(args) -> int:
    from search.web import serve

    index = MotionIndex.load(args.index)
    tensors = index_paths(args.index)[0]
    serve(_searcher_for(index, args), index, args.cache or tensors.with_name(tensors.stem + ".previews"),
          args.host, args.port)
    return 0


def _table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trimo-search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", choices=SEARCH_BACKENDS, default="numpy",
                        help="exact search with numpy, or with faiss (pip install trimo[search]) for millions of chunks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("index", help="embed a library (files, folders, shard sets) into an index")
    p.add_argument("paths", nargs="+", help="mocap files, folders (searched recursively) or shard sets")
    p.add_argument("--model", required=True, help="exported model folder (or checkpoint / run directory)")
    p.add_argument("-o", "--out", required=True, help="index path: writes OUT.safetensors and OUT.json")
    p.add_argument("--rebuild", action="store_true", help="start a new index instead of adding to OUT")
    p.add_argument("--mapping", default=None, help="joint mapping preset (lafan1, cmu, mixamo) or JSON/YAML file")
    p.add_argument("--units", default="auto", help="BVH length unit: auto, m, cm, mm, inch")
    p.add_argument("--body-model-dir", default=None, help="SMPL-H body models, for AMASS .npz files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_index)
    for name, run, what in (("query", _query, "motions like a text, an example motion or a video"),
                            ("moments", _moments, "where in the motions a described action happens")):
        p = sub.add_parser(name, help=what)
        p.add_argument("index", help="index path (as given to `index -o`)")
        p.add_argument("text", nargs="?" if name == "query" else None, default=None, help="the description")
        p.add_argument("-k", type=int, default=5, help="results to show")
        p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
        p.add_argument("--model", default=None, help="load this model instead of the one the index names")
        if name == "query":
            p.add_argument("--motion", default=None, help="an example mocap file instead of a text")
            p.add_argument("--video", default=None, help="an example mp4 instead of a text (3-modal models)")
        else:
            p.add_argument("--motion-id", default=None, help="search inside this motion only")
            p.add_argument("--candidates", type=int, default=10, help="motions localized (best chunk scores)")
        p.set_defaults(run=run)
    p = sub.add_parser("serve", help="the search page in a browser")
    p.add_argument("index", help="index path (as given to `index -o`)")
    p.add_argument("--model", default=None, help="load this model instead of the one the index names")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--cache", default=None, help="folder for rendered previews (default: beside the index)")
    p.set_defaults(run=_serve)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (SearchIndexError, SkippedFile, KeyError, FileNotFoundError) as err:
        print(f"trimo-search: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
