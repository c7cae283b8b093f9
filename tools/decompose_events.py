"""Decompose captions into ordered events and write the CAR texts.

    trimo-decompose-events captions.txt -o events.jsonl [--seed 0] [--command "CMD"]

Input: a text file with one caption per line (HumanML3D `caption#tokens#start#end` lines are
accepted: the caption is the part before the first '#'). Output: one JSON object per caption:
{"caption", "subject", "events", "event_text", "shuffled_event_text"}; "events" are the event
sentences a shard stores in meta.texts[].events (subject + phrase), and the last is null for
captions that cannot be shuffled (fewer than two distinct events; counted in the summary).

--command replaces the rule-based decomposer by an external program (e.g. a wrapper around an
LLM): it reads all captions, one per line, on stdin and must print, for each, one line holding a
JSON list of event phrases *without* the subject ("walks forward"), in the same order; the
caption's subject is put in front of each.
"""
from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from motion.events import Decomposition, decompose, event_text, shuffled_event_text


def read_captions(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"error: cannot read captions from {path}: {e}")
    return [line.split("#", 1)[0].strip() for line in lines if line.strip()]


def external_decompose(captions: list[str], command: str) -> list[Decomposition]:
    proc = subprocess.run(shlex.split(command), input="\n".join(captions) + "\n", capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: event command {command!r} exited with {proc.returncode}: {proc.stderr.strip()[:500]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if len(lines) != len(captions):
        raise SystemExit(f"error: event command {command!r} printed {len(lines)} lines for {len(captions)} captions "
                         "(it must print one JSON list per input line)")
    out = []
    for n, (caption, line) in enumerate(zip(captions, lines), 1):
        try:
            events = json.loads(line)
        except json.JSONDecodeError:
            raise SystemExit(f"error: event command output line {n} is not JSON: {line[:200]!r}") from None
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise SystemExit(f"error: event command output line {n} must be a JSON list of strings, got {line[:200]!r}")
        out.append(Decomposition(caption=caption, subject=decompose(caption).subject, events=events))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("captions", type=Path, help="text file, one caption per line")
    ap.add_argument("-o", "--output", type=Path, required=True, help="output .jsonl")
    ap.add_argument("--seed", type=int, default=0, help="seed of the shuffles")
    ap.add_argument("--command", help="external decomposer command (see module doc)")
    args = ap.parse_args(argv)

    captions = read_captions(args.captions)
    if args.command:
        decs = external_decompose(captions, args.command)
    else:
        decs = [decompose(c) for c in tqdm(captions, desc="decomposing", disable=len(captions) < 1000)]
    rng = random.Random(args.seed)
    unshuffleable = 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as f:
        for dec in decs:
            shuffled = shuffled_event_text(dec.sentences, rng)
            unshuffleable += shuffled is None
            f.write(json.dumps({"caption": dec.caption, "subject": dec.subject, "events": dec.sentences,
                                "event_text": event_text(dec.sentences), "shuffled_event_text": shuffled}) + "\n")
    multi = sum(len(d.events) > 1 for d in decs)
    print(f"{len(decs)} captions, {multi} with more than one event, {unshuffleable} cannot be shuffled "
          f"-> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
