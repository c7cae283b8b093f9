"""Evaluation metrics on similarity matrices and spans (numpy); no model here. CAR accuracy
counts wins with the training metric's rule (modeling.contrastive.car_counts).

Each function names the protocol and the paper or reference code it follows. Conventions:
- Similarity matrices are (queries, gallery) with the ground truth of query i in column i.
- Ranks are 1-based and tie-averaged as in TMR: a ground truth tied with e - 1 other items after
  g better ones gets rank g + (e + 1) / 2. R@k counts ranks with rank - 1 < k (TMR compares its
  0-based averaged column with k), so a rank of 1.5 counts for R@1; MedR is the median rank.
- Sentence-similarity thresholds are on TMR's rescaled scale (cos + 1) / 2 and strict (>).
- Spans are (start, end) in seconds (or frames: any consistent unit); IoU@m counts IoU >= m.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

RECALL_KS = (1, 2, 3, 5, 10)
IOU_THRESHOLDS = (0.5, 0.7, 0.9)


# ---------------------------------------------------------------- retrieval (TMR's protocols)

def rescaled_similarity(cos: np.ndarray) -> np.ndarray:
    """TMR's (cos + 1) / 2, the scale of every sentence-similarity threshold here."""
    return (np.asarray(cos, dtype=np.float64) + 1.0) / 2.0


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of a with every row of b."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return a @ b.T


def threshold_positives(sentence_emb: np.ndarray, threshold: float = 0.95) -> np.ndarray:
    """(n, n) bool: item j counts as correct for query i when (cos(s_i, s_j) + 1) / 2 > threshold.

    The diagonal is always True (the ground truth itself counts, as in TMR).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is on the (cos + 1) / 2 scale and must lie in [0, 1]")
    positives = rescaled_similarity(cosine_matrix(sentence_emb, sentence_emb)) > threshold
    np.fill_diagonal(positives, True)
    return positives


def retrieval_ranks(sim: np.ndarray, positives: np.ndarray | None = None) -> np.ndarray:
    """Tie-averaged 1-based rank of each query's ground truth (column i for query i).

    With `positives` (n_q, n_g) bool, the threshold rule: the ground truth's score becomes the best
    score among the items marked positive for the query, i.e. its rank is the best rank among them.
    """
    sim = np.asarray(sim, dtype=np.float64)
    n_q, n_g = sim.shape
    if n_g < n_q:
        raise ValueError(f"similarity matrix {sim.shape}: the gallery must hold every query's ground truth "
                         "(column i for query i)")
    if not np.isfinite(sim).all():
        raise ValueError("similarity matrix holds NaN or inf; check the embeddings")
    gt = sim[np.arange(n_q), np.arange(n_q)]
    if positives is not None:
        positives = np.asarray(positives, dtype=bool)
        if positives.shape != sim.shape:
            raise ValueError(f"positives {positives.shape} must match the similarity matrix {sim.shape}")
        gt = np.maximum(gt, np.where(positives, sim, -np.inf).max(axis=1))
    better = (sim > gt[:, None]).sum(axis=1)
    tied = (sim == gt[:, None]).sum(axis=1)          # includes the ground truth (or the best positive)
    return better + (tied + 1) / 2.0


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Percent of queries with rank - 1 < k (TMR's rule on tie-averaged ranks)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return float(100.0 * np.mean(ranks - 1 < k))


def median_rank(ranks: np.ndarray) -> float:
    return float(np.median(np.asarray(ranks, dtype=np.float64)))


def rank_metrics(ranks: np.ndarray, ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    """R@k (percent) for every k and MedR."""
    out = {f"R@{k}": recall_at_k(ranks, k) for k in ks}
    out["MedR"] = median_rank(ranks)
    return out


def two_way_metrics(sim: np.ndarray, positives: np.ndarray | None = None) -> tuple[dict, dict]:
    """Metrics of sim (a -> b) and of sim.T (b -> a); `positives` is symmetric (caption similarity)."""
    forward = rank_metrics(retrieval_ranks(sim, positives))
    backward = rank_metrics(retrieval_ranks(sim.T, None if positives is None else positives.T))
    return forward, backward


def select_dissimilar(sentence_emb: np.ndarray, ids: list[str], n: int = 100) -> list[int]:
    """Deterministic greedy max-min selection of n mutually dissimilar items (indices into ids).

    Items are visited in sorted-id order. The first pick is the item with the lowest mean cosine
    similarity to all items; each next pick is the item whose highest similarity to the picks so far
    is the lowest. Ties go to the smallest id. (TMR ships a fixed list whose selection script is
    unpublished; this is trimo's documented replacement.) Fewer than n items: all, in id order.
    """
    if len(ids) != len(sentence_emb):
        raise ValueError(f"{len(ids)} ids for {len(sentence_emb)} sentence embeddings")
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique for the dissimilar subset")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    if len(order) <= n:
        return order
    emb = np.asarray(sentence_emb, dtype=np.float64)[order]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    first = int(np.argmin(emb @ emb.mean(axis=0)))   # mean cosine to all = dot with the mean vector
    picked = [first]
    closest = emb @ emb[first]
    closest[first] = np.inf
    while len(picked) < n:
        nxt = int(np.argmin(closest))                 # argmin returns the first (smallest id) on ties
        picked.append(nxt)
        closest = np.maximum(closest, emb @ emb[nxt])
        closest[picked] = np.inf
    return [order[i] for i in picked]


def small_batches(ids: list[str], batch_size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """TMR's small-batch protocol: sort the ids, shuffle with numpy seed `seed`, cut full batches.

    Returns index arrays into `ids`; the remainder (len % batch_size items) is dropped.
    """
    order = np.array(sorted(range(len(ids)), key=lambda i: ids[i]), dtype=np.int64)
    perm = np.arange(len(ids))
    np.random.RandomState(seed).shuffle(perm)     # = np.random.seed(seed); np.random.shuffle(...)
    shuffled = order[perm]
    return [shuffled[b * batch_size:(b + 1) * batch_size] for b in range(len(ids) // batch_size)]


def small_batch_metrics(sim: np.ndarray, batches: list[np.ndarray]) -> tuple[dict, dict]:
    """Two-way metrics inside each batch, averaged over batches (MedR too, as TMR does)."""
    if not batches:
        raise ValueError("no full batch: the test set is smaller than one batch")
    results = [two_way_metrics(sim[np.ix_(b, b)]) for b in batches]
    return tuple({k: float(np.mean([r[d][k] for r in results])) for k in results[0][d]} for d in (0, 1))


def tmr_protocols(sim: np.ndarray, ids: list[str], sentence_emb: np.ndarray, threshold: float = 0.95,
                  dissimilar: list[int] | None = None, batch_size: int = 32, seed: int = 0
                  ) -> dict[str, tuple[dict, dict]]:
    """TMR's four protocols on one square similarity matrix (query modality x gallery modality).

    Returns {protocol: (forward metrics, backward metrics)} for "all", "all_threshold",
    "dissimilar" (the `dissimilar` indices, default select_dissimilar) and "small_batches" (left
    out when the set is smaller than one batch).
    """
    sim = np.asarray(sim, dtype=np.float64)
    if sim.shape != (len(ids), len(ids)):
        raise ValueError(f"similarity matrix {sim.shape} does not match {len(ids)} items")
    if dissimilar is None:
        dissimilar = select_dissimilar(sentence_emb, ids)
    sub = np.asarray(dissimilar, dtype=np.int64)
    out = {
        "all": two_way_metrics(sim),
        "all_threshold": two_way_metrics(sim, threshold_positives(sentence_emb, threshold)),
        "dissimilar": two_way_metrics(sim[np.ix_(sub, sub)]),
    }
    batches = small_batches(ids, batch_size, seed)
    if batches:
        out["small_batches"] = small_batch_metrics(sim, batches)
    return out


# ---------------------------------------------------------------- chronological accuracy (CAR)

def car_accuracy(sim_true: np.ndarray, sim_shuffled: np.ndarray) -> float:
    """Percent of items whose motion is closer to the true caption than to its shuffled one
    (modeling.contrastive.car_counts: strict >, ties lose)."""
    from modeling.contrastive import car_counts

    sim_true, sim_shuffled = np.asarray(sim_true, dtype=np.float64), np.asarray(sim_shuffled, dtype=np.float64)
    if sim_true.shape != sim_shuffled.shape or sim_true.size == 0:
        raise ValueError(f"CAR needs equal, non-empty arrays; got {sim_true.shape} and {sim_shuffled.shape}")
    wins, items = car_counts(torch.from_numpy(sim_true), torch.from_numpy(sim_shuffled)).tolist()
    return 100.0 * wins / items


@dataclass
class CarItems:
    """The items taking part in the CAR test and their three texts (see `car_items`)."""

    index: list[int] = field(default_factory=list)        # rows of the test set
    original: list[str] = field(default_factory=list)     # caption as written ("orig -> event")
    ordered: list[str] = field(default_factory=list)      # events concatenated in order ("event -> event")
    shuffled: list[str] = field(default_factory=list)     # events concatenated in a shuffled order
    single_event: int = 0                                 # items left out: fewer than two events
    unshuffleable: int = 0                                # items left out: all events identical


def car_items(captions: list[str], events: list[list[str] | None], seed: int = 0) -> CarItems:
    """Pick the items with more than one stored event and draw one shuffled order for each (CAR).

    `events[i]` is the caption's stored event sentences (meta.texts[].events; None when the shard
    has none: the item counts as single-event). A caption whose events are all the same text
    cannot be shuffled: skipped and counted. The draws use one random.Random(seed) in item order,
    so the test set is reproducible.
    """
    import random

    from motion.events import event_text, shuffled_event_text

    rng = random.Random(seed)
    out = CarItems()
    for i, caption in enumerate(captions):
        evs = events[i] or []
        if len(evs) < 2:
            out.single_event += 1
            continue
        shuffled = shuffled_event_text(evs, rng)
        if shuffled is None:
            out.unshuffleable += 1
            continue
        out.index.append(i)
        out.original.append(caption)
        out.ordered.append(event_text(evs))
        out.shuffled.append(shuffled)
    return out


# ---------------------------------------------------------------- temporal localization (MLP)

def temporal_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of (..., 2) spans [start, end], broadcast; a zero-length union gives 0."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    inter = np.clip(np.minimum(pred[..., 1], gt[..., 1]) - np.maximum(pred[..., 0], gt[..., 0]), 0.0, None)
    union = np.maximum(pred[..., 1], gt[..., 1]) - np.minimum(pred[..., 0], gt[..., 0])
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou_metrics(ious: np.ndarray, thresholds: tuple[float, ...] = IOU_THRESHOLDS) -> dict[str, float]:
    """IoU@m = percent of queries with IoU >= m; mIoU = mean IoU x 100."""
    ious = np.asarray(ious, dtype=np.float64)
    if ious.size == 0:
        raise ValueError("no localization query to evaluate")
    out = {f"IoU@{m}": float(100.0 * np.mean(ious >= m)) for m in thresholds}
    out["mIoU"] = float(100.0 * ious.mean())
    return out


def assigned_moments(motion_ids: list[str], spans: np.ndarray, sentence_emb: np.ndarray,
                     threshold: float) -> list[np.ndarray]:
    """Acceptable moments per query (MLP's Assigned protocol): its own ground truth, plus the moments
    of the other queries of the same motion whose sentence similarity (cos + 1) / 2 is > threshold.
    (BABEL: 0.995, HumanML3D-Restore: 0.8.)"""
    spans = np.asarray(spans, dtype=np.float64)
    sentence_emb = np.asarray(sentence_emb)
    if not (len(motion_ids) == len(spans) == len(sentence_emb)):
        raise ValueError(f"{len(motion_ids)} motion ids, {len(spans)} spans, {len(sentence_emb)} embeddings")
    groups: dict[str, list[int]] = {}
    for q, motion in enumerate(motion_ids):
        groups.setdefault(motion, []).append(q)
    out: list[np.ndarray] = [np.empty((0, 2))] * len(spans)
    for members in groups.values():              # similarities only inside a motion: O(sum of group^2)
        similar = rescaled_similarity(cosine_matrix(sentence_emb[members], sentence_emb[members])) > threshold
        for row, q in enumerate(members):
            others = [members[c] for c in np.flatnonzero(similar[row]) if c != row]
            out[q] = np.concatenate([spans[q:q + 1], spans[others]], axis=0)
    return out


def best_iou(pred: np.ndarray, acceptable: list[np.ndarray]) -> np.ndarray:
    """Per query, the best IoU of the prediction with any acceptable moment."""
    pred = np.asarray(pred, dtype=np.float64)
    return np.array([temporal_iou(pred[q][None], np.asarray(acc)).max() for q, acc in enumerate(acceptable)])


def localization_protocols(pred: np.ndarray, gt: np.ndarray, motion_ids: list[str], sentence_emb: np.ndarray,
                           threshold: float) -> dict[str, dict[str, float]]:
    """Normal (IoU with the ground truth) and Assigned (best IoU over acceptable moments)."""
    normal = temporal_iou(pred, gt)
    assigned = best_iou(pred, assigned_moments(motion_ids, gt, sentence_emb, threshold))
    return {"normal": iou_metrics(normal), "assigned": iou_metrics(assigned)}


def pyramid_windows(n_frames: int, min_len: int = 20, max_len: int = 200, stride: int = 5) -> np.ndarray:
    """Temporal-pyramid windows [start, stop) in frames: lengths min_len, min_len + stride, ...,
    max_len that fit, each at starts 0, stride, 2 * stride, ... A motion shorter than min_len is
    one window over all of it."""
    if n_frames <= 0:
        raise ValueError(f"a motion needs at least one frame, got {n_frames}")
    wins = [(s, s + length) for length in range(min_len, min(max_len, n_frames) + 1, stride)
            for s in range(0, n_frames - length + 1, stride)]
    return np.array(wins if wins else [(0, n_frames)], dtype=np.int64)


def select_window(scores: np.ndarray, windows: np.ndarray) -> tuple[int, int]:
    """The window with the highest similarity to the query (first on ties)."""
    best = int(np.argmax(np.asarray(scores)))
    return int(windows[best, 0]), int(windows[best, 1])


# ---------------------------------------------------------------- corpus moment retrieval (MLP Sec. V)

def chunk_windows(n_frames: int, fps: float, chunk_s: float = 10.0, overlap: float = 0.9) -> np.ndarray:
    """[start, stop) frame chunks of chunk_s seconds with `overlap` (MLP: 10 s, 90%: a 1 s hop).

    A motion shorter than one chunk is one chunk; a last chunk ending at the motion's end is added
    when the hop does not land there, so every frame is covered.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"chunk overlap must be in [0, 1), got {overlap}")
    size = max(1, int(round(chunk_s * fps)))
    if n_frames <= size:
        return np.array([(0, n_frames)], dtype=np.int64)
    hop = max(1, int(round(size * (1.0 - overlap))))
    starts = list(range(0, n_frames - size + 1, hop))
    if starts[-1] + size < n_frames:
        starts.append(n_frames - size)
    return np.array([(s, s + size) for s in starts], dtype=np.int64)


def motion_scores(chunk_sim: np.ndarray, first_chunk: list[int]) -> np.ndarray:
    """r_m per query: the max similarity over motion m's chunks, which are the contiguous columns
    first_chunk[m] .. first_chunk[m + 1] - 1 of chunk_sim (queries, chunks)."""
    return np.maximum.reduceat(np.asarray(chunk_sim, dtype=np.float64), np.asarray(first_chunk), axis=1)


def dcg_at_n(rel: np.ndarray, n: int) -> float:
    """DCG@n = sum_{i=1..n} rel_i / log2(i + 1) over the first n ranked items (fewer if fewer)."""
    rel = np.asarray(rel, dtype=np.float64)[:n]
    return float(np.sum(rel / np.log2(np.arange(2, len(rel) + 2))))


def corpus_scores(p_se: np.ndarray, retrieval_score: np.ndarray, lam: float) -> np.ndarray:
    """MLP's final corpus score p_se * exp(lambda * r)."""
    return np.asarray(p_se, dtype=np.float64) * np.exp(lam * np.asarray(retrieval_score, dtype=np.float64))


def top_motions(r: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k motions with the highest retrieval score r_m (stable: first on ties)."""
    return np.argsort(-np.asarray(r, dtype=np.float64), kind="stable")[:k]


def rank_candidates(motion: np.ndarray, spans: np.ndarray, p_se: np.ndarray, r: np.ndarray, lam: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort candidate moments by p_se * exp(lambda * r[motion]), best first (stable).

    motion (c,) corpus indices, spans (c, 2), p_se (c,), r (M,) per-motion retrieval scores.
    Returns (motion, spans, score) in ranked order.
    """
    motion = np.asarray(motion, dtype=np.int64)
    score = corpus_scores(p_se, np.asarray(r, dtype=np.float64)[motion], lam)
    order = np.argsort(-score, kind="stable")
    return motion[order], np.asarray(spans, dtype=np.float64)[order], score[order]


def corpus_hits(ranked_motion: np.ndarray, ranked_spans: np.ndarray, gt_motion: int, gt_span: np.ndarray,
                ns: tuple[int, ...] = (10, 50, 100), ious: tuple[float, ...] = (0.5, 0.7)) -> dict[str, bool]:
    """Recall@n, IoU@m for one query: is a moment of the right motion with IoU >= m in the top n?"""
    right = np.asarray(ranked_motion) == gt_motion
    iou = np.where(right, temporal_iou(np.asarray(ranked_spans), np.asarray(gt_span, dtype=np.float64)[None]), 0.0)
    return {f"R@{n},IoU@{m}": bool(np.any(right[:n] & (iou[:n] >= m))) for m in ious for n in ns}


def ideal_dcg(n: int) -> float:
    """DCG@n with rel = 1 everywhere (MLP's reference: 4.54, 12.90, 20.94 for n = 10, 50, 100)."""
    return dcg_at_n(np.ones(n), n)
