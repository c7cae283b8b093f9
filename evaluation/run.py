"""Model-facing evaluation: read the test shards, embed and localize with a TrimoModel, run the
protocols of evaluation.protocols on the embeddings and spans; the report is evaluation.report's.

What is evaluated (the README's Evaluation section lists the options):
- retrieval: TMR's four protocols for text<->motion and (model with video, items with video)
  video<->motion, on the first caption of every test item;
- CAR: orig->event and event->event accuracy, and motion->text with the shuffled captions added
  to the gallery of the captions as written and of the ordered event texts;
- localization: Normal / Assigned IoU metrics of the localization head, and the temporal-pyramid
  baseline built from the retrieval embeddings;
- corpus moment retrieval (MLP Sec. V) over the localization set's motions.
Sentence similarities (thresholds, Assigned, dissimilar subset) come from a sentence-embedding model
given by path (default: the packaged all-MiniLM-L6-v2; the papers used all-mpnet-base-v2).

Motion is passed raw; the TrimoModel normalizes it with its stored statistics. Durations are
frames / fps of the motion as read, and moments are shifted by the reader's crop, as in training.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from configs.schema import EvalOptions
from evaluation import protocols as M
from evaluation.inference import Encoder
from evaluation.sets import LocalizationSet, RetrievalSet, iter_videos
from motion.events import event_caption

log = logging.getLogger("trimo.evaluate")


def _direction_table(result: dict[str, tuple[dict, dict]], names: tuple[str, str]) -> dict[str, dict]:
    return {names[d]: {protocol: pair[d] for protocol, pair in result.items()} for d in (0, 1)}


def evaluate_retrieval(enc: Encoder, data: RetrievalSet, sentence_emb: np.ndarray, opts: EvalOptions) -> dict:
    motion_emb = enc.motions(data.motions)
    text_emb = enc.texts(data.texts)
    dissimilar = _dissimilar(data.ids, sentence_emb, opts)
    sim_tm = M.cosine_matrix(text_emb, motion_emb)
    out: dict[str, Any] = {"n_items": len(data.ids), "skipped": data.skipped,
                           "dissimilar_ids": [data.ids[i] for i in dissimilar], "notes": []}

    def protocols(sim: np.ndarray, ids: list[str], emb: np.ndarray, sub: list[int]) -> dict:
        if len(ids) < opts.small_batch_size:
            out["notes"].append(f"small_batches left out for {len(ids)} items (< one batch of {opts.small_batch_size})")
        return M.tmr_protocols(sim, ids, emb, opts.threshold, sub, opts.small_batch_size, opts.small_batch_seed)

    out.update(_direction_table(protocols(sim_tm, data.ids, sentence_emb, dissimilar),
                                ("text_to_motion", "motion_to_text")))
    with_video: list[int] = []      # items with a video, filled while their videos stream past

    def stream():
        for i, video in iter_videos(data):
            with_video.append(i)
            yield video

    if data.video is not None and getattr(enc.model.retrieval, "video_encoder", None) is not None:
        video_emb = enc.videos(stream())
    if len(with_video) >= 2:
        sub_ids = [data.ids[i] for i in with_video]
        sub_emb = sentence_emb[with_video]
        sub_dissimilar = _dissimilar(sub_ids, sub_emb, opts)
        out["video_dissimilar_ids"] = [sub_ids[i] for i in sub_dissimilar]
        sim_vm = M.cosine_matrix(video_emb, motion_emb[with_video])
        out["n_video_items"] = len(with_video)
        out.update(_direction_table(protocols(sim_vm, sub_ids, sub_emb, sub_dissimilar),
                                    ("video_to_motion", "motion_to_video")))
    out["_emb"] = {"motion": motion_emb, "text": text_emb}
    return out


def _dissimilar(ids: list[str], sentence_emb: np.ndarray, opts: EvalOptions) -> list[int]:
    if opts.dissimilar_ids is None:
        return M.select_dissimilar(sentence_emb, ids, opts.dissimilar_size)
    where = {key: i for i, key in enumerate(ids)}
    missing = [key for key in opts.dissimilar_ids if key not in where]
    if missing:
        raise ValueError(f"{len(missing)} ids of the dissimilar list are not in the test set (e.g. {missing[:3]}); "
                         "the list must name keys of the retrieval shards")
    return [where[key] for key in opts.dissimilar_ids]


def evaluate_car(enc: Encoder, data: RetrievalSet, motion_emb: np.ndarray, text_emb: np.ndarray,
                 seed: int = 0) -> dict:
    items = M.car_items(data.texts, data.events, seed)
    out: dict[str, Any] = {"n_items": len(items.index), "skipped_single_event": items.single_event,
                           "skipped_unshuffleable": items.unshuffleable}
    if not items.index:
        return out
    m = motion_emb[items.index]
    shuffled_emb = enc.texts(items.shuffled)
    true_orig = _paired_cosine(m, enc.texts(items.original))
    true_event = _paired_cosine(m, enc.texts(items.ordered))
    shuffled = _paired_cosine(m, shuffled_emb)
    out["orig_to_event"] = M.car_accuracy(true_orig, shuffled)
    out["event_to_event"] = M.car_accuracy(true_event, shuffled)
    # every motion against all captions plus the shuffled ones: as written ("orig -> event") and
    # as events concatenated in order ("event -> event")
    sim = M.cosine_matrix(motion_emb, np.concatenate([text_emb, shuffled_emb]))
    out["motion_to_text_with_shuffled"] = M.rank_metrics(M.retrieval_ranks(sim))
    events_emb = enc.texts([event_caption(t, e) for t, e in zip(data.texts, data.events)])
    sim = M.cosine_matrix(motion_emb, np.concatenate([events_emb, shuffled_emb]))
    out["motion_to_events_with_shuffled"] = M.rank_metrics(M.retrieval_ranks(sim))
    return out


def _paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a_i, b_i) for every row i."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=1)


def evaluate_localization(enc: Encoder, data: LocalizationSet, sentence_emb: np.ndarray, opts: EvalOptions) -> dict:
    """The head's predictions ("model", when the model has a localization head) and the pyramid's."""
    gt = np.array(data.spans, dtype=np.float64)
    motion_ids = [data.ids[m] for m in data.motion]
    out: dict[str, Any] = {"n_queries": len(data.texts), "n_motions": len(data.ids), "skipped": data.skipped,
                           "_preds": []}
    if getattr(enc.model, "localization", None) is not None:
        motions = [data.motions[m] for m in data.motion]
        fps = [data.fps[m] for m in data.motion]
        out["_preds"] = preds = enc.localize(motions, fps, data.texts)
        pred = np.array([[p["start_s"], p["end_s"]] for p in preds], dtype=np.float64)
        out["model"] = M.localization_protocols(pred, gt, motion_ids, sentence_emb, opts.assigned_threshold)
    if opts.pyramid:
        out["pyramid"] = M.localization_protocols(pyramid_predictions(enc, data, opts), gt, motion_ids,
                                                  sentence_emb, opts.assigned_threshold)
    return out


def pyramid_predictions(enc: Encoder, data: LocalizationSet, opts: EvalOptions) -> np.ndarray:
    """Temporal-pyramid baseline: per query, the best-matching window of its motion, in seconds."""
    text_emb = enc.texts(data.texts)
    pred = np.zeros((len(data.texts), 2))
    for m in tqdm(range(len(data.ids)), desc="pyramid", disable=not enc.progress, leave=False):
        queries = [q for q, owner in enumerate(data.motion) if owner == m]
        wins = M.pyramid_windows(len(data.motions[m]), opts.pyramid_min, opts.pyramid_max, opts.pyramid_stride)
        win_emb = enc.motions([data.motions[m][s:e] for s, e in wins], desc="pyramid windows")
        scores = M.cosine_matrix(text_emb[queries], win_emb)
        for row, q in enumerate(queries):
            s, e = M.select_window(scores[row], wins)
            pred[q] = (s / data.fps[m], e / data.fps[m])
    return pred


def evaluate_corpus(enc: Encoder, data: LocalizationSet, opts: EvalOptions) -> dict:
    """Corpus moment retrieval (MLP Sec. V) with every localization query against all its motions."""
    chunks, first_chunk = [], []
    for m, motion in enumerate(data.motions):
        first_chunk.append(len(chunks))
        chunks += [motion[s:e] for s, e in M.chunk_windows(len(motion), data.fps[m], opts.chunk_s, opts.chunk_overlap)]
    query_emb = enc.texts(data.texts)
    chunk_emb = enc.motions(chunks, desc="corpus chunks")
    # r_m = max over the motion's (contiguous) chunks; in blocks of queries to bound memory
    r_all = np.concatenate([M.motion_scores(M.cosine_matrix(query_emb[i:i + 256], chunk_emb), first_chunk)
                            for i in range(0, len(query_emb), 256)])
    k = min(opts.corpus_k, len(data.ids))
    top_k_spans = opts.candidates_per_motion
    hits: list[dict[str, bool]] = []
    dcg = {n: [] for n in opts.corpus_ns}
    for q in tqdm(range(len(data.texts)), desc="corpus", disable=not enc.progress, leave=False):
        top = M.top_motions(r_all[q], k)
        preds = enc.localize([data.motions[m] for m in top], [data.fps[m] for m in top],
                             [data.texts[q]] * len(top), top_k=top_k_spans)
        motion = np.repeat(top, top_k_spans)
        spans = np.concatenate([np.stack([p["topk_start_s"], p["topk_end_s"]], 1) for p in preds])
        p_se = np.concatenate([p["topk_score"] for p in preds])
        valid = spans[:, 0] >= 0                                     # short motions have fewer spans
        ranked_m, ranked_s, _ = M.rank_candidates(motion[valid], spans[valid], p_se[valid], r_all[q],
                                                  opts.corpus_lambda)
        gt = np.array(data.spans[q])
        hits.append(M.corpus_hits(ranked_m, ranked_s, data.motion[q], gt, opts.corpus_ns, opts.corpus_ious))
        # Text-motion relevance: the retrieval model's cosine between the query and the retrieved
        # moment (clipped at 0 so that rel lies in [0, 1] like the ideal DCG's rel = 1).
        n_max = max(opts.corpus_ns)
        crops = [_crop(data, int(m), s) for m, s in zip(ranked_m[:n_max], ranked_s[:n_max])]
        rel = np.clip(M.cosine_matrix(query_emb[q:q + 1], enc.motions(crops, desc="moments"))[0], 0.0, None)
        for n in opts.corpus_ns:
            dcg[n].append(M.dcg_at_n(rel, n))
    recall = {key: float(100.0 * np.mean([h[key] for h in hits])) for key in hits[0]}
    return {"k": k, "lambda": opts.corpus_lambda, "candidates_per_motion": top_k_spans,
            "n_queries": len(data.texts), "n_motions": len(data.ids), "recall": recall,
            "dcg_text_motion": {f"DCG@{n}": float(np.mean(v)) for n, v in dcg.items()},
            "ideal_dcg": {f"DCG@{n}": M.ideal_dcg(n) for n in opts.corpus_ns}}


def _crop(data: LocalizationSet, m: int, span: np.ndarray) -> np.ndarray:
    fps, motion = data.fps[m], data.motions[m]
    first = min(int(math.floor(span[0] * fps)), len(motion) - 1)
    return motion[first:max(int(math.ceil(span[1] * fps)), first + 1)]


def evaluate(model: torch.nn.Module, tokenizer, embedder, *, retrieval: RetrievalSet | None = None,
             localization: LocalizationSet | None = None, opts: EvalOptions | None = None,
             sentence_model: str = "", device: str = "cpu", max_tokens: int = 77, progress: bool = True,
             plot_dir: str | Path | None = None) -> dict[str, Any]:
    """Run every protocol the given test sets allow; `embedder(texts) -> (n, e)` gives sentence embeddings."""
    opts = opts or EvalOptions()
    if retrieval is None and localization is None:
        raise ValueError("nothing to evaluate: give a retrieval and/or a localization test set")
    for data in (retrieval, localization):   # the model reads one 263-d feature definition
        if data is not None and data.index is not None:
            data.index.require_motion_features(model.cfg.motion_features, "the model reads")
    enc = Encoder(model, tokenizer, max_tokens, opts.batch_size, device, progress)
    report: dict[str, Any] = {"sentence_model": sentence_model, "options": asdict(opts)}
    plots: list[str] = []
    if retrieval is not None:
        sent = _sentence_embeddings(embedder, retrieval.texts)
        ret = evaluate_retrieval(enc, retrieval, sent, opts)
        emb = ret.pop("_emb")
        report["retrieval"] = ret
        report["car"] = evaluate_car(enc, retrieval, emb["motion"], emb["text"], opts.car_seed)
        if plot_dir is not None:
            plots += _retrieval_plots(retrieval, emb, Path(plot_dir), opts)
    if localization is not None:
        has_head = getattr(model, "localization", None) is not None
        if not has_head:
            log.warning("the model has no localization head: only the temporal-pyramid baseline is computed "
                        "(localization and corpus retrieval need the head)")
        if has_head or opts.pyramid:
            sent = _sentence_embeddings(embedder, localization.texts)
            loc = evaluate_localization(enc, localization, sent, opts)
            preds = loc.pop("_preds")
            report["localization"] = loc
        if has_head and plot_dir is not None:
            plots += _localization_plots(localization, preds, Path(plot_dir), opts)
        if has_head and opts.corpus:
            report["corpus"] = evaluate_corpus(enc, localization, opts)
    report["plots"] = plots
    return report


def _sentence_embeddings(embedder, texts: list[str]) -> np.ndarray:
    out = embedder(texts)
    return out.float().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, dtype=np.float64)


def _retrieval_plots(data: RetrievalSet, emb: dict, out: Path, opts: EvalOptions) -> list[str]:
    from motion.features import features_to_joints
    from evaluation.plots import plot_retrieval_strip

    sim = M.cosine_matrix(emb["text"], emb["motion"])
    paths = []
    for q in range(min(opts.num_plots, len(data.ids))):
        top = np.argsort(-sim[q], kind="stable")[:opts.strip_top_k]
        items = []
        for i in top:
            joints = data.joints[i] if data.joints[i] is not None else features_to_joints(data.motions[i])
            items.append((data.ids[i], float(sim[q, i]), joints, bool(i == q)))
        paths.append(str(plot_retrieval_strip(data.texts[q], items, out / f"retrieval_{q:03d}.png")))
    return paths


def _localization_plots(data: LocalizationSet, preds: list[dict], out: Path, opts: EvalOptions) -> list[str]:
    from evaluation.plots import plot_localization

    paths = []
    for q in range(min(opts.num_plots, len(data.texts))):
        p = preds[q]
        paths.append(str(plot_localization(p["p_start"], p["p_end"], p["highlight"], p["duration_s"],
                                           data.spans[q], (float(p["start_s"]), float(p["end_s"])),
                                           data.texts[q], out / f"localization_{q:03d}.png")))
    return paths
