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

Every model input is embedded once, whichever protocols use it: texts once per distinct string
(captions, CAR's texts, localization queries), each localization motion and query encoded once for
the head ("localize_inputs"), which then runs on the (query, motion) pairs, and every frame range
(pyramid windows, corpus chunks, retrieved moments) once, all in batches of items of similar
length (EvalOptions.batch_frames). On several processes (evaluation.ranks) each rank embeds a
share of every batch list, all ranks receive the embeddings, and rank 0 alone scores.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from configs.schema import EvalOptions
from evaluation import protocols as M
from evaluation.inference import Encoder
from evaluation.ranks import Ranks
from evaluation.sets import LocalizationSet, RetrievalSet, iter_videos
from motion.events import event_caption

log = logging.getLogger("trimo.evaluate")


class Clock:
    """Wall time per stage (seconds, summed when a stage is entered again) into `out`, logged."""

    def __init__(self, out: dict[str, float] | None = None):
        self.out = out if out is not None else {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.out[stage] = self.out.get(stage, 0.0) + seconds
            log.info("%s: %.1f s", stage, seconds)


def _direction_table(result: dict[str, tuple[dict, dict]], names: tuple[str, str]) -> dict[str, dict]:
    return {names[d]: {protocol: pair[d] for protocol, pair in result.items()} for d in (0, 1)}


def retrieval_texts(data: RetrievalSet, car: M.CarItems) -> list[str]:
    """Every text the retrieval protocols and CAR embed: captions, shuffled and ordered event texts
    (CAR's "original" texts are the captions)."""
    return data.texts + car.shuffled + car.ordered + [event_caption(t, e) for t, e in zip(data.texts, data.events)]


def evaluate_retrieval(enc: Encoder, data: RetrievalSet, sentence_emb: np.ndarray | None, opts: EvalOptions,
                       car: M.CarItems | None = None, clock: Clock | None = None) -> dict | None:
    """TMR's protocols text<->motion and video<->motion. Every rank embeds its share; the protocols
    run on rank 0 (other ranks return None). The embeddings are kept in out["_emb"]."""
    clock = clock or Clock()
    car = car or M.car_items(data.texts, data.events, opts.car_seed)
    with clock("embed retrieval motions"):
        motion_emb = enc.motions(data.motions)
    with clock("embed retrieval texts (captions, CAR)"):
        enc.texts(retrieval_texts(data, car))
        text_emb = enc.texts(data.texts)
    with clock("embed videos"):
        video_emb, with_video = _video_embeddings(enc, data)
    if not enc.ranks.main:
        return None
    with clock("retrieval protocols"):
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
        # every query's rank (All protocol), to see which items fail
        out["item_ranks"] = {direction: dict(zip(data.ids, M.retrieval_ranks(sim).tolist()))
                             for direction, sim in (("text_to_motion", sim_tm), ("motion_to_text", sim_tm.T))}
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


def _video_embeddings(enc: Encoder, data: RetrievalSet) -> tuple[np.ndarray | None, list[int]]:
    """Embeddings of the items that have a video (rows in item order) and those items' indices.
    Each rank decodes and embeds its share of the shards; reader processes decode ahead."""
    if data.video is None or getattr(enc.model.retrieval, "video_encoder", None) is None:
        return None, []
    ranks = enc.ranks
    workers = max(1, min(4, (os.cpu_count() or 1) // ranks.world))
    got: list[int] = []

    def stream():
        for i, video in iter_videos(data, ranks.rank, ranks.world, num_workers=workers):
            got.append(i)
            yield video

    emb = enc.videos(stream())
    merged = ranks.all_gather({i: emb[row] for row, i in enumerate(got)})
    with_video = sorted(merged)
    return (np.stack([merged[i] for i in with_video]) if with_video else None), with_video


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
                 seed: int = 0, items: M.CarItems | None = None) -> dict:
    """CAR from the kept text embeddings (evaluate_retrieval embedded every CAR text once)."""
    items = items or M.car_items(data.texts, data.events, seed)
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


class Segments:
    """Embeddings of frame ranges [start, stop) of the localization motions, each range embedded
    once whichever protocol asks for it (pyramid windows, corpus chunks, retrieved moments)."""

    def __init__(self, enc: Encoder, data: LocalizationSet):
        self.enc, self.data = enc, data
        self.row: dict[tuple[int, int, int], int] = {}
        self.parts: list[np.ndarray] = []
        self.n = 0

    def embed(self, segments: list[tuple[int, int, int]], desc: str) -> None:
        new = [s for s in dict.fromkeys(segments) if s not in self.row]
        if not new:
            return
        emb = self.enc.motions([self.data.motions[m][s:e] for m, s, e in new], desc=desc)
        for i, key in enumerate(new):
            self.row[key] = self.n + i
        self.parts = [np.concatenate(self.parts + [emb])] if self.parts else [emb]
        self.n += len(new)

    def get(self, segments: list[tuple[int, int, int]]) -> np.ndarray:
        """The embeddings of ranges embedded before (no model call here: rank 0 alone reads)."""
        return self.parts[0][[self.row[s] for s in segments]]


def _windows(data: LocalizationSet, opts: EvalOptions) -> list[np.ndarray]:
    return [M.pyramid_windows(len(m), opts.pyramid_min, opts.pyramid_max, opts.pyramid_stride) for m in data.motions]


def _chunks(data: LocalizationSet, opts: EvalOptions) -> list[np.ndarray]:
    return [M.chunk_windows(len(m), data.fps[i], opts.chunk_s, opts.chunk_overlap) for i, m in enumerate(data.motions)]


def _keys(m: int, spans: np.ndarray) -> list[tuple[int, int, int]]:
    return [(m, int(s), int(e)) for s, e in spans]


def evaluate_localization(enc: Encoder, data: LocalizationSet, sentence_emb: np.ndarray | None, opts: EvalOptions,
                          clock: Clock | None = None) -> dict:
    """The head's predictions ("model", when the model has a localization head), the pyramid's and
    (opts.corpus, with a head) corpus retrieval. Every rank embeds its share; rank 0 scores (the
    other ranks' dict holds no metrics)."""
    clock = clock or Clock()
    main = enc.ranks.main
    has_head = getattr(enc.model, "localization", None) is not None
    gt = np.array(data.spans, dtype=np.float64)
    motion_ids = [data.ids[m] for m in data.motion]
    out: dict[str, Any] = {"n_queries": len(data.texts), "n_motions": len(data.ids), "skipped": data.skipped,
                           "_preds": []}
    durations = [data.duration(m) for m in range(len(data.ids))]
    with clock("encode localization inputs"):
        if has_head:
            tokens = enc.text_tokens(data.texts)   # also keeps the queries' pooled embeddings
            snippets = enc.snippets(data.motions)
        query_emb = enc.texts(data.texts)
    if has_head:
        with clock("localization head"):
            queries = np.arange(len(data.texts))
            out["_preds"] = preds = enc.localize_pairs(snippets, tokens, durations, np.asarray(data.motion), queries,
                                                       top_k=1, curves=True)
            if main:
                pred = np.array([[p["start_s"], p["end_s"]] for p in preds], dtype=np.float64)
                _score_localization(out, "model", pred, gt, motion_ids, sentence_emb, data.kinds, opts)
    segments = Segments(enc, data)
    corpus = has_head and opts.corpus
    if opts.pyramid:
        windows = _windows(data, opts)
        with clock("pyramid: embed windows"):
            wanted = [k for m, w in enumerate(windows) for k in _keys(m, w)]
            if corpus:   # the corpus chunks too, in the same batches (many are pyramid windows)
                wanted += [k for m, c in enumerate(_chunks(data, opts)) for k in _keys(m, c)]
            segments.embed(wanted, "pyramid windows")
        if main:
            with clock("pyramid: score"):
                pred = pyramid_predictions(data, windows, segments, query_emb)
                _score_localization(out, "pyramid", pred, gt, motion_ids, sentence_emb, data.kinds, opts)
    if corpus:
        out["_corpus"] = evaluate_corpus(enc, data, opts, query_emb, snippets, tokens, segments, clock)
    return out


def _score_localization(out: dict, method: str, pred: np.ndarray, gt: np.ndarray, motion_ids: list[str],
                        sentence_emb: np.ndarray | None, kinds: list[str | None], opts: EvalOptions) -> None:
    """out[method] = both protocols over every query; out["by_kind"][method][kind] = the Normal
    protocol over the queries of each kind (meta.moments[].kind, where the shards label them)."""
    out[method] = M.localization_protocols(pred, gt, motion_ids, sentence_emb, opts.assigned_threshold)
    labels = np.array([k or "" for k in kinds], dtype=object)
    for kind in sorted(set(labels) - {""}):
        sel = labels == kind
        scores = M.iou_metrics(M.temporal_iou(pred[sel], gt[sel]))
        out.setdefault("by_kind", {}).setdefault(method, {})[kind] = dict(scores, queries=int(sel.sum()))


def pyramid_predictions(data: LocalizationSet, windows: list[np.ndarray], segments: Segments,
                        query_emb: np.ndarray) -> np.ndarray:
    """Temporal-pyramid baseline: per query, the best-matching window of its motion, in seconds."""
    pred = np.zeros((len(data.texts), 2))
    by_motion: dict[int, list[int]] = {}
    for q, owner in enumerate(data.motion):
        by_motion.setdefault(owner, []).append(q)
    for m, queries in by_motion.items():
        wins = windows[m]
        scores = M.cosine_matrix(query_emb[queries], segments.get(_keys(m, wins)))
        for row, q in enumerate(queries):
            s, e = M.select_window(scores[row], wins)
            pred[q] = (s / data.fps[m], e / data.fps[m])
    return pred


def evaluate_corpus(enc: Encoder, data: LocalizationSet, opts: EvalOptions, query_emb: np.ndarray,
                    snippets: list[np.ndarray], tokens: list[np.ndarray], segments: Segments,
                    clock: Clock | None = None) -> dict | None:
    """Corpus moment retrieval (MLP Sec. V) with every localization query against all its motions.

    The head runs on every (query, retrieved motion) pair from encoded inputs (each motion and
    query encoded once); chunks and retrieved moments are embedded once each. Returns None on
    ranks other than 0."""
    clock = clock or Clock()
    with clock("corpus: head on (query, motion) pairs"):
        chunks, first_chunk = [], []
        for m, c in enumerate(_chunks(data, opts)):
            first_chunk.append(len(chunks))
            chunks += _keys(m, c)
        segments.embed(chunks, "corpus chunks")     # already done with the pyramid's windows
        chunk_emb = segments.get(chunks)
        # r_m = max over the motion's (contiguous) chunks; in blocks of queries to bound memory
        r_all = np.concatenate([M.motion_scores(M.cosine_matrix(query_emb[i:i + 256], chunk_emb), first_chunk)
                                for i in range(0, len(query_emb), 256)])
        k = min(opts.corpus_k, len(data.ids))
        top_k_spans = opts.candidates_per_motion
        n_q = len(data.texts)
        top = np.stack([M.top_motions(r_all[q], k) for q in range(n_q)])          # (queries, k)
        durations = [data.duration(m) for m in range(len(data.ids))]
        res = enc.localize_pairs(snippets, tokens, durations, top.reshape(-1), np.repeat(np.arange(n_q), k),
                                 top_k=top_k_spans, desc="corpus: localize")
    with clock("corpus: rank and embed moments"):
        n_max = max(opts.corpus_ns)
        ranked = []
        for q in range(n_q):
            rows = slice(q * k, (q + 1) * k)
            motion = np.repeat(top[q], top_k_spans)
            spans = np.stack([res["topk_start_s"][rows].reshape(-1), res["topk_end_s"][rows].reshape(-1)], 1)
            p_se = res["topk_score"][rows].reshape(-1)
            valid = spans[:, 0] >= 0                                     # short motions have fewer spans
            ranked_m, ranked_s, _ = M.rank_candidates(motion[valid], spans[valid], p_se[valid], r_all[q],
                                                      opts.corpus_lambda)
            ranked.append((ranked_m, ranked_s))
        crops = [[_crop_key(data, int(m), s) for m, s in zip(ranked_m[:n_max], ranked_s[:n_max])]
                 for ranked_m, ranked_s in ranked]
        segments.embed([c for per_query in crops for c in per_query], "corpus moments")
    if not enc.ranks.main:
        return None
    with clock("corpus: score"):
        hits: list[dict[str, bool]] = []
        dcg = {n: [] for n in opts.corpus_ns}
        for q in range(n_q):
            ranked_m, ranked_s = ranked[q]
            hits.append(M.corpus_hits(ranked_m, ranked_s, data.motion[q], np.array(data.spans[q]), opts.corpus_ns,
                                      opts.corpus_ious))
            # Text-motion relevance: the retrieval model's cosine between the query and the retrieved
            # moment (clipped at 0 so that rel lies in [0, 1] like the ideal DCG's rel = 1).
            rel = np.clip(M.cosine_matrix(query_emb[q:q + 1], segments.get(crops[q]))[0], 0.0, None)
            for n in opts.corpus_ns:
                dcg[n].append(M.dcg_at_n(rel, n))
        recall = {key: float(100.0 * np.mean([h[key] for h in hits])) for key in hits[0]}
    return {"k": k, "lambda": opts.corpus_lambda, "candidates_per_motion": top_k_spans,
            "n_queries": len(data.texts), "n_motions": len(data.ids), "recall": recall,
            "dcg_text_motion": {f"DCG@{n}": float(np.mean(v)) for n, v in dcg.items()},
            "ideal_dcg": {f"DCG@{n}": M.ideal_dcg(n) for n in opts.corpus_ns}}


def _crop_key(data: LocalizationSet, m: int, span: np.ndarray) -> tuple[int, int, int]:
    """The frames [first, stop) of motion m that a retrieved moment (seconds) covers."""
    fps, n = data.fps[m], len(data.motions[m])
    first = min(int(math.floor(span[0] * fps)), n - 1)
    return m, first, max(int(math.ceil(span[1] * fps)), first + 1)


@contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sentence_embeddings(embedder, texts: list[str], ranks: Ranks | None = None) -> dict[str, np.ndarray]:
    """The sentence model's embedding of every distinct text; on several processes each rank
    embeds a share of batches of 256 texts cut the same way for any number of ranks (a text meets
    the same batch mates: the same numbers). On one thread, as in a launched training run: a
    forward of a few captions is too small to share, and two threads waiting on each other on a
    busy machine made it ten times slower."""
    ranks = ranks or Ranks()
    distinct = list(dict.fromkeys(texts))
    if not distinct:
        return {}
    batches = [distinct[i:i + 256] for i in range(0, len(distinct), 256)]   # the same for any number of ranks
    with one_thread():
        local = {b: _as_numpy(embedder(batches[b])) for b in ranks.mine(len(batches))}
    merged = ranks.all_gather(local)
    return {t: row for b, batch in enumerate(batches) for t, row in zip(batch, merged[b])}


def evaluate(model: torch.nn.Module, tokenizer, embedder, *, retrieval: RetrievalSet | None = None,
             localization: LocalizationSet | None = None, opts: EvalOptions | None = None,
             sentence_model: str = "", device: str = "cpu", max_tokens: int = 77, progress: bool = True,
             plot_dir: str | Path | None = None, ranks: Ranks | None = None,
             timings: dict[str, float] | None = None) -> dict[str, Any] | None:
    """Run every protocol the given test sets allow; `embedder(texts) -> (n, e)` gives sentence embeddings.

    On several processes (`ranks`; every rank calls this with the same sets and options), each
    rank embeds its share of every batch list and rank 0 scores: it returns the report, the
    other ranks None. `timings` receives the wall time of each stage in seconds."""
    opts = opts or EvalOptions()
    ranks = ranks or Ranks()
    clock = Clock(timings)
    if retrieval is None and localization is None:
        raise ValueError("nothing to evaluate: give a retrieval and/or a localization test set")
    for data in (retrieval, localization):   # the model reads one 263-d feature definition
        if data is not None and data.index is not None:
            data.index.require_motion_features(model.cfg.motion_features, "the model reads")
    if retrieval is not None and opts.dissimilar_ids is not None:
        _dissimilar(retrieval.ids, None, opts)     # an unknown id stops every rank before any model call
    enc = Encoder(model, tokenizer, max_tokens, opts.batch_size, device, progress, opts.batch_frames, ranks)
    report: dict[str, Any] = {"sentence_model": sentence_model, "options": asdict(opts)}
    plots: list[str] = []
    has_head = getattr(model, "localization", None) is not None
    run_localization = localization is not None and (has_head or opts.pyramid)
    with clock("sentence embeddings"):
        sent = sentence_embeddings(embedder, (retrieval.texts if retrieval is not None else []) +
                                   (localization.texts if run_localization else []), ranks)
    if retrieval is not None:
        car = M.car_items(retrieval.texts, retrieval.events, opts.car_seed)
        sent_r = np.stack([sent[t] for t in retrieval.texts])
        ret = evaluate_retrieval(enc, retrieval, sent_r, opts, car, clock)
        if ranks.main:
            emb = ret.pop("_emb")
            report["retrieval"] = ret
            with clock("CAR"):
                report["car"] = evaluate_car(enc, retrieval, emb["motion"], emb["text"], opts.car_seed, car)
            if plot_dir is not None:
                with clock("plots"):
                    plots += _retrieval_plots(retrieval, emb, Path(plot_dir), opts)
    if localization is not None:
        if not has_head and ranks.main:
            log.warning("the model has no localization head: only the temporal-pyramid baseline is computed "
                        "(localization and corpus retrieval need the head)")
        if run_localization:
            sent_l = np.stack([sent[t] for t in localization.texts])
            loc = evaluate_localization(enc, localization, sent_l, opts, clock)
            preds = loc.pop("_preds")
            corpus = loc.pop("_corpus", None)
            if ranks.main:
                report["localization"] = loc
                if corpus is not None:
                    report["corpus"] = corpus
                if has_head and plot_dir is not None:
                    with clock("plots"):
                        plots += _localization_plots(localization, preds, Path(plot_dir), opts)
    if not ranks.main:
        return None
    report["plots"] = plots
    return report


def _as_numpy(out) -> np.ndarray:
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
