"""Build trimo's demo corpus: a retrieval shard set with videos and a localization shard set.

    python tools/build_demo.py --out data/demo [--size tiny|small|default|large] [--seed 0]
                               [--no-video] [--workers 2] [--video-fps 10] [--video-size 128]
                               [--video-body capsule|stick] [--video-backend auto|egl|numpy]
                               [--moments context|isolated] [--generator 2|1]

Writes `<out>/retrieval/` (short captioned clips of 1-4 events, with videos of a capsule body) and
`<out>/localization/` (untrimmed 10-60 s clips with captioned moments; actions repeat and captions
say which one they mean, unless --moments isolated), each a set of WebDataset
shards with its `shards.json`. Sizes (retrieval / localization clips): tiny 24 / 4 (for tests),
small 400 / 40, default 3000 / 300, large 20000 / 2000; about 84 / 8 / 8 % train / val / test.
The same seed gives byte-identical shard files for any worker count.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time

from demo.build import build_demo
from demo.corpus import DEFAULT_GENERATOR, GENERATORS, MOMENT_STYLES, SIZES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder; retrieval/ and localization/ are written inside")
    ap.add_argument("--size", choices=sorted(SIZES), default="default", help="corpus size (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed (default: %(default)s)")
    ap.add_argument("--no-video", action="store_true", help="skip rendering videos of the retrieval clips")
    ap.add_argument("--workers", type=int, default=2, help="processes (0 = this one; default: %(default)s)")
    ap.add_argument("--video-fps", type=float, default=10.0, help="video frame rate, a divisor of 20 (default: %(default)s)")
    ap.add_argument("--video-size", type=int, default=128, help="video width = height, even (default: %(default)s)")
    ap.add_argument("--video-body", choices=("capsule", "stick"), default="capsule",
                    help="what the video shows (default: %(default)s)")
    ap.add_argument("--video-backend", choices=("auto", "egl", "numpy"), default="auto",
                    help="renderer: OpenGL on EGL, NumPy, or EGL when it works (default: %(default)s)")
    ap.add_argument("--moments", choices=MOMENT_STYLES, default="context",
                    help="localization captions: 'context' (default): actions repeat inside a clip and a caption says "
                         "which one it means ('after turning left, a person jumps', '... for the second time'); "
                         "'isolated': every action once, captions name only their span (with --generator 1: the "
                         "corpus before this option, byte for byte)")
    ap.add_argument("--generator", type=int, choices=sorted(GENERATORS), default=DEFAULT_GENERATOR,
                    help="generator version: 2 (default): 31 actions, cartwheels, backflips, forward rolls, crawling, "
                         "getting up from the floor and dancing among them, by bodies with their shoulders where a "
                         "person's are; 1: the earlier corpus, byte for byte (25 standing and seated actions, "
                         "shoulders too low), on which the ablation figures were measured")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.workers < 0:
        ap.error("--workers must be >= 0")

    started = time.perf_counter()
    command = " ".join(shlex.quote(a) for a in ["tools/build_demo.py", *(sys.argv[1:] if argv is None else argv)])
    summaries = build_demo(args.out, args.size, args.seed, video=not args.no_video, video_fps=args.video_fps,
                           video_size=args.video_size, video_body=args.video_body, video_backend=args.video_backend,
                           workers=args.workers, progress=not args.quiet, command=command, moment_style=args.moments,
                           generator=args.generator)
    for s in summaries:
        splits = ", ".join(f"{k} {v}" for k, v in sorted(s.clips.items()))
        extra = f", {s.moments} moments" if s.moments else ""
        print(f"{s.name}: {sum(s.clips.values())} clips ({splits}), {s.hours:.2f} h of motion, {s.captions} captions"
              f"{extra}; {s.shards} shards, {s.bytes / 2 ** 20:.1f} MiB; dropped for caption leakage: "
              f"{s.dropped['clips']} clips, {s.dropped['moments']} moments; {s.seconds:.0f} s")
    print(f"demo corpus written to {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
