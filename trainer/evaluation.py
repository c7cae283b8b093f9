"""Model-facing evaluation: read the test shards, embed and localize with a TrimoModel, run the
protocols of trainer.metrics, and write metrics.json + metrics.md.

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

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from tqdm import tqdm

from modeling.localization import decode_moments
from shards.events import event_caption
from shards.reader import ShardDataset, ShardLoader
from trainer import metrics as M

log = logging.getLogger("trimo.evaluate")


@dataclass
class EvalOptions:
    threshold: float = 0.95             # "All with threshold", on (cos + 1) / 2 (TMR; LAVIMO's paper: 0.8)
    assigned_threshold: float = 0.995   # Assigned protocol (MLP: BABEL 0.995, HumanML3D-Restore 0.8)
    dissimilar_size: int = 100
    dissimilar_ids: Optional[list[str]] = None  # a fixed list (e.g. TMR's for HumanML3D) instead of the selection
    small_batch_size: int = 32
    small_batch_seed: int = 0
    car_seed: int = 0
    corpus_k: int = 100                 # motions localized per query (MLP: 100 or 200)
    corpus_lambda: float = 5.0          # score = p_se * exp(lambda * r) (MLP: 5 or 10)
    corpus_ns: tuple[int, ...] = (10, 50, 100)
    corpus_ious: tuple[float, ...] = (0.5, 0.7)
    candidates_per_motion: int = 5      # top spans of each retrieved motion that enter the corpus list
    chunk_s: float = 10.0
    chunk_overlap: float = 0.9
    pyramid: bool = True                # the temporal-pyramid baseline (slow by design)
    corpus: bool = True                 # corpus-level moment retrieval (every query against every motion)
    pyramid_min: int = 20
    pyramid_max: int = 200
    pyramid_stride: int = 5
    batch_size: int = 32
    num_plots: int = 4                  # localization curves and retrieval strips to draw
    strip_top_k: int = 5


# ---------------------------------------------------------------- test sets in memory

@dataclass
class RetrievalSet:
    """One entry per test item: its first caption, raw motion and joints (when stored).

    Videos are not kept in memory (a full test set of 224 px clips takes gigabytes): `iter_videos`
    streams them from `source` again when the video protocols run; `video` holds the reader
    options for that (None: no video protocols).
    """

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    events: list[list[str] | None] = field(default_factory=list)
    motions: list[np.ndarray] = field(default_factory=list)
    joints: list[np.ndarray | None] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    source: str = ""
    split: str | None = None
    reader_options: dict[str, Any] = field(default_factory=dict)
    video: dict[str, Any] | None = None


@dataclass
class LocalizationSet:
    """Untrimmed motions and their queries: query q asks for `spans[q]` (seconds) in motion `motion[q]`."""

    ids: list[str] = field(default_factory=list)
    motions: list[np.ndarray] = field(default_factory=list)
    fps: list[float] = field(default_factory=list)
    joints: list[np.ndarray | None] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    motion: list[int] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def duration(self, m: int) -> float:
        return len(self.motions[m]) / self.fps[m]


def _iter_samples(shards: str, skipped: dict[str, int] | None = None, split: str | None = None, **kw):
    """Every sample of a shard set once, in index order (evaluation mode: first caption), keeping
    only `meta.split == split` when given; the reader's skip counts are added to `skipped`."""
    if not shards.startswith(("pipe:", "http:", "https:")) and "{" not in shards and not Path(shards).exists():
        raise FileNotFoundError(f"shard set {shards!r} does not exist; pass the folder holding shards.json "
                                "or the shards.json file")
    ds = ShardDataset(shards, training=False, rank=0, world_size=1, fill_skipped=False, uneven="pad", split=split, **kw)
    loader = ShardLoader(ds, batch_size=64, num_workers=0, collate_fn=list)
    for batch in loader:
        yield from (s for s in batch if not s.get("repeat"))
    if skipped is not None:
        skipped.update(loader.skipped)


def read_retrieval_set(shards: str, *, load_video: bool = True, min_frames: int | None = None,
                       max_frames: int | None = None, video_frames: int = 8, video_size: int = 224,
                       split: str | None = None) -> RetrievalSet:
    options = {"min_frames": min_frames, "max_frames": max_frames}
    out = RetrievalSet(source=shards, reader_options=options, split=split,
                       video={"num_video_frames": video_frames, "video_size": video_size} if load_video else None)
    for s in _iter_samples(shards, out.skipped, split, load_video=False, **options):
        if not s["text"]:
            out.skipped["no_caption"] = out.skipped.get("no_caption", 0) + 1
            continue
        out.ids.append(s["key"])
        out.texts.append(s["text"])
        out.events.append(s["events"])
        out.motions.append(s["motion"])
        out.joints.append(s.get("joints"))
    if not out.ids:
        raise ValueError(f"{shards}: no test item with a caption; retrieval shards need meta.texts")
    return out


def iter_videos(data: RetrievalSet):
    """(item index, uint8 video (l_v, 3, H, W)) for the items of `data` that have a video, streamed
    from its shards with the same reader options (so the same caption crop)."""
    if data.video is None:
        return
    where = {key: i for i, key in enumerate(data.ids)}
    for s in _iter_samples(data.source, None, data.split, load_joints=False, **data.reader_options, **data.video):
        if s["key"] in where and "video" in s:
            yield where[s["key"]], s["video"]


def read_localization_set(shards: str, *, min_frames: int | None = None, max_frames: int | None = None,
                          split: str | None = None) -> LocalizationSet:
    out = LocalizationSet()
    for s in _iter_samples(shards, out.skipped, split, load_video=False, min_frames=min_frames, max_frames=max_frames,
                           crop_to_caption=False):
        fps = float(s["meta"]["fps"])
        offset, duration = s["span"][0] / fps, len(s["motion"]) / fps
        queries = []
        for m in s["moments"]:
            start, end = max(m["start"] - offset, 0.0), min(m["end"] - offset, duration)
            if m["text"].strip() and end > start:
                queries.append((m["text"], start, end))
        if not queries:
            out.skipped["no_moment"] = out.skipped.get("no_moment", 0) + 1
            continue
        index = len(out.ids)
        out.ids.append(s["key"])
        out.motions.append(s["motion"])
        out.fps.append(fps)
        out.joints.append(s.get("joints"))
        for text, start, end in queries:
            out.texts.append(text)
            out.motion.append(index)
            out.spans.append((start, end))
    if not out.texts:
        raise ValueError(f"{shards}: no localization query; localization shards need "
                         "meta.moments [{text, start, end}]")
    return out


# ---------------------------------------------------------------- model calls

class Encoder:
    """Batched, no-grad embedding and localization with a TrimoModel in eval mode."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_tokens: int, batch_size: int = 32,
                 device: str | torch.device = "cpu", progress: bool = True):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer, self.max_tokens, self.batch_size = tokenizer, max_tokens, batch_size
        self.progress = progress

    def _batches(self, n: int, what: str):
        starts = range(0, n, self.batch_size)
        return tqdm(starts, desc=what, disable=not self.progress or len(starts) < 2, leave=False)

    def _tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)

    def _motion_batch(self, motions: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(m) for m in motions])
        batch = torch.zeros(len(motions), int(lengths.max()), motions[0].shape[-1])
        for i, m in enumerate(motions):
            batch[i, :len(m)] = torch.from_numpy(np.asarray(m, dtype=np.float32))
        mask = torch.arange(batch.shape[1])[None] < lengths[:, None]
        return batch.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def texts(self, texts: list[str]) -> np.ndarray:
        out = []
        for i in self._batches(len(texts), "embed text"):
            ids, mask = self._tokens(texts[i:i + self.batch_size])
            out.append(self.model({"text_input_ids": ids, "text_attention_mask": mask}, "embed")["text_emb"])
        return torch.cat(out).float().cpu().numpy()

    @torch.no_grad()
    def motions(self, motions: list[np.ndarray], desc: str = "embed motion") -> np.ndarray:
        out = []
        # sorting by length keeps padding small (pyramid windows and chunks vary a lot)
        order = np.argsort([len(m) for m in motions], kind="stable")
        for i in self._batches(len(motions), desc):
            motion, mask = self._motion_batch([motions[j] for j in order[i:i + self.batch_size]])
            out.append(self.model({"motion": motion, "motion_mask": mask}, "embed")["motion_emb"].float().cpu())
        emb = torch.cat(out).numpy()
        result = np.empty_like(emb)
        result[order] = emb
        return result

    @torch.no_grad()
    def videos(self, videos: Iterable[np.ndarray]) -> np.ndarray:
        """Embed uint8 (l_v, 3, H, W) clips from any iterable (streamed, batch by batch)."""
        out, pending = [], []

        def flush():
            video = torch.from_numpy(np.stack(pending)).to(self.device).float() / 255.0
            mask = torch.ones(video.shape[:2], dtype=torch.bool, device=self.device)
            out.append(self.model({"video": video, "video_mask": mask}, "embed")["video_emb"].float().cpu())
            pending.clear()

        for video in videos:
            pending.append(video)
            if len(pending) == self.batch_size:
                flush()
        if pending:
            flush()
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

    @torch.no_grad()
    def localize(self, motions: list[np.ndarray], fps: list[float], texts: list[str], top_k: int = 1
                 ) -> list[dict[str, np.ndarray]]:
        """Per (motion, text) pair: p_start, p_end, highlight (valid snippets) and the decoded spans
        (best start_s/end_s/score and the top-k lists), from the head in eval mode."""
        head = self.model.localization
        if head is None:
            raise ValueError("this model has no localization head (use_localization=false)")
        results = []
        for i in self._batches(len(texts), "localize"):
            motion, mask = self._motion_batch(motions[i:i + self.batch_size])
            ids, tmask = self._tokens(texts[i:i + self.batch_size])
            duration = torch.tensor([len(m) / f for m, f in zip(motions[i:i + self.batch_size],
                                                                fps[i:i + self.batch_size])], device=self.device)
            frames, _ = self.model.retrieval.encode_motion(self.model.normalize(motion), mask)
            tokens, _ = self.model.retrieval.encode_text(ids, tmask)
            out = head(frames, mask, tokens, tmask.bool(), duration)     # eval mode: no ground truth needed
            dec = decode_moments(out["p_start"], out["p_end"], out["snippet_mask"], duration, top_k,
                                 head.cfg.max_span_snippets)
            for b in range(len(duration)):
                n = int(out["snippet_mask"][b].sum())
                item = {k: out[k][b, :n].float().cpu().numpy() for k in ("p_start", "p_end", "highlight")}
                item.update({k: v[b].float().cpu().numpy() for k, v in dec.items()})
                item["duration_s"] = float(duration[b])
                results.append(item)
        return results


# ---------------------------------------------------------------- the protocols on a model

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


# ---------------------------------------------------------------- the whole run

def evaluate(model: torch.nn.Module, tokenizer, embedder, *, retrieval: RetrievalSet | None = None,
             localization: LocalizationSet | None = None, opts: EvalOptions | None = None,
             sentence_model: str = "", device: str = "cpu", max_tokens: int = 77, progress: bool = True,
             plot_dir: str | Path | None = None) -> dict[str, Any]:
    """Run every protocol the given test sets allow; `embedder(texts) -> (n, e)` gives sentence embeddings."""
    opts = opts or EvalOptions()
    if retrieval is None and localization is None:
        raise ValueError("nothing to evaluate: give a retrieval and/or a localization test set")
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
        if has_head and opts.corpus:
            report["corpus"] = evaluate_corpus(enc, localization, opts)
            if plot_dir is not None:
                plots += _localization_plots(localization, preds, Path(plot_dir), opts)
    report["plots"] = plots
    return report


def _sentence_embeddings(embedder, texts: list[str]) -> np.ndarray:
    out = embedder(texts)
    return out.float().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, dtype=np.float64)


def _retrieval_plots(data: RetrievalSet, emb: dict, out: Path, opts: EvalOptions) -> list[str]:
    from shards.motion import features_to_joints
    from trainer.plots import plot_retrieval_strip

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
    from trainer.plots import plot_localization

    paths = []
    for q in range(min(opts.num_plots, len(data.texts))):
        p = preds[q]
        paths.append(str(plot_localization(p["p_start"], p["p_end"], p["highlight"], p["duration_s"],
                                           data.spans[q], (float(p["start_s"]), float(p["end_s"])),
                                           data.texts[q], out / f"localization_{q:03d}.png")))
    return paths


# ---------------------------------------------------------------- report files

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
    corpus = report.get("corpus")
    if corpus:
        parts.append(f"\n## Corpus moment retrieval (k = {corpus['k']}, lambda = {corpus['lambda']})\n\n")
        parts.append(_table(list(corpus["recall"]), [list(corpus["recall"].values())]))
        dcg = corpus["dcg_text_motion"]
        rows = [["text-motion"] + list(dcg.values()), ["ideal"] + list(corpus["ideal_dcg"].values())]
        parts.append("\n" + _table(["relevance"] + list(dcg), rows))
    return "".join(parts)


# ---------------------------------------------------------------- loading a model

def load_model(path: str | Path, device: str = "cpu"):
    """(model in eval mode, tokenizer, max_tokens) from an export folder (trainer.export), a
    checkpoint folder (checkpoints/step-*) or a run directory (its latest checkpoint).

    A checkpoint rebuilds the model from its config.yaml (so the text backbone path in it must
    exist here) and loads the weights accelerate saved: model.safetensors, or a DeepSpeed ZeRO
    checkpoint consolidated to fp32 with deepspeed.utils.zero_to_fp32.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model {str(path)!r} does not exist; pass an export folder, a checkpoint "
                                "folder or a run directory")
    if (path / "model.safetensors").is_file() and (path / "text_backbone").is_dir():
        from trainer.export import load_pretrained

        model, tokenizer, cfg = load_pretrained(path, device)
        return model, tokenizer, cfg.model.retrieval.text.max_tokens
    from trainer.build import build_model
    from trainer.checkpoint import CHECKPOINTS, resolve_checkpoint
    from trainer.config import load_run_config
    from trainer.experiment import ExperimentConfig

    if (path / CHECKPOINTS).is_dir():
        path = resolve_checkpoint(path, "latest")
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(f"{path} is neither a trimo export (model.safetensors + text_backbone/) nor a "
                                "checkpoint (config.yaml); pass <run>/export, <run>/checkpoints/step-N or <run>")
    cfg = load_run_config(ExperimentConfig, path)
    model, tokenizer, _ = build_model(cfg)
    model.load_state_dict(_checkpoint_weights(path), strict=True)
    return model.to(device).eval(), tokenizer, cfg.model.retrieval.text.max_tokens


def _checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    if (path / "latest").is_file():
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return get_fp32_state_dict_from_zero_checkpoint(str(path))
    raise FileNotFoundError(f"{path}: no model weights (model.safetensors, pytorch_model.bin or a DeepSpeed "
                            "checkpoint with 'latest'); was the checkpoint written completely?")
