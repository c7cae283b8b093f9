"""Batched, no-grad inference with a TrimoModel, only through its task API (`model(batch, task)`):
"embed" for pooled embeddings, "localize" for the localization head's span probabilities and
"localize_inputs" for the encoders' half of "localize" (motion snippets, text tokens), the same
calls and the same input preparation (normalization, snippet pooling) as training.

Batches are cut over items sorted by length (little padding). With `batch_frames`, a batch holds
as many items as fit in that many frames (text: tokens; at least `batch_size`, at most
MAX_BATCH_ITEMS); without it, `batch_size` items, as before. Texts are embedded once per distinct
string and kept: a caption met by several protocols (CAR's captions, localization queries) is not
embedded again. With `ranks` (several processes), each rank runs every N-th batch of a list cut
the same way for any N, and all ranks receive every result (evaluation.ranks).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from evaluation.ranks import Ranks
from modeling.localization import decode_moments

MAX_BATCH_ITEMS = 1024


def _owned(x: torch.Tensor) -> np.ndarray:
    """A NumPy copy: a pooled output is a view of the whole (B, L, d) output, which must not be
    kept alive with it (one pass over a pyramid's windows would hold gigabytes)."""
    return x.detach().float().cpu().numpy().copy()


def _per_pair(out: dict, dec: dict, duration: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """One dict per pair of a "localize" batch: the curves over its valid snippets, its decoded
    spans and its duration."""
    items = []
    for b in range(len(duration)):
        n = int(out["snippet_mask"][b].sum())
        item = {k: out[k][b, :n].float().cpu().numpy() for k in ("p_start", "p_end", "highlight")}
        item.update({k: v[b].float().cpu().numpy() for k, v in dec.items()})
        item["duration_s"] = float(duration[b])
        items.append(item)
    return items


class Encoder:
    """Batched, no-grad embedding and localization with a TrimoModel in eval mode."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_tokens: int, batch_size: int = 32,
                 device: str | torch.device = "cpu", progress: bool = True, batch_frames: int | None = None,
                 ranks: Ranks | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer, self.max_tokens, self.batch_size = tokenizer, max_tokens, batch_size
        self.batch_frames = batch_frames
        self.progress = progress
        self.ranks = ranks or Ranks()
        self._text_emb: dict[str, np.ndarray] = {}      # pooled text embedding per distinct string
        self._text_tokens: dict[str, np.ndarray] = {}   # localization text tokens (L, d) per string

    # ------------------------------------------------------------------ batching
    def _batches(self, n: int, what: str):
        starts = range(0, n, self.batch_size)
        return tqdm(starts, desc=what, disable=not self.progress or len(starts) < 2, leave=False)

    def cut(self, lengths: Sequence[int], budget: int | None = None) -> list[np.ndarray]:
        """Index batches over the items sorted by length (stable), shortest first."""
        order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
        n, size = len(order), self.batch_size
        budget = self.batch_frames if budget is None else budget
        if not budget:
            return [order[i:i + size] for i in range(0, n, size)]
        sorted_len = np.asarray(lengths, dtype=np.int64)[order]
        batches, start = [], 0
        while start < n:
            end = min(start + size, n)
            # items are sorted, so the batch's longest is its last: grow while n_items x longest fits
            while end < n and end - start < MAX_BATCH_ITEMS and (end + 1 - start) * sorted_len[end] <= budget:
                end += 1
            batches.append(order[start:end])
            start = end
        return batches

    def run(self, batches: list, fn: Callable, desc: str) -> list:
        """[fn(batch) for batch in batches]; on several processes each rank runs its share."""
        mine = self.ranks.mine(len(batches))
        bar = tqdm(mine, desc=desc, disable=not self.progress or len(mine) < 2, leave=False)
        return self.gather({b: fn(batches[b]) for b in bar}, len(batches))

    def gather(self, local: dict, n: int) -> list:
        merged = self.ranks.all_gather(local)
        return [merged[b] for b in range(n)]

    def _tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)

    def _token_lengths(self, texts: list[str]) -> list[int]:
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        return [len(i) for i in ids]

    def _motion_batch(self, motions: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(m) for m in motions])
        batch = torch.zeros(len(motions), int(lengths.max()), motions[0].shape[-1])
        for i, m in enumerate(motions):
            batch[i, :len(m)] = torch.from_numpy(np.asarray(m, dtype=np.float32))
        mask = torch.arange(batch.shape[1])[None] < lengths[:, None]
        return batch.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------ embeddings
    @torch.no_grad()
    def texts(self, texts: list[str], tokens: bool = False) -> np.ndarray:
        """Pooled embeddings (n, d), each distinct string embedded once and kept. `tokens`: also
        keep the localization head's text tokens (one "localize_inputs" pass gives both)."""
        cache = self._text_tokens if tokens else self._text_emb
        new = list(dict.fromkeys(t for t in texts if t not in cache))
        if new:
            task = "localize_inputs" if tokens else "embed"
            lengths = self._token_lengths(new)
            budget = None if self.batch_frames is None else max(self.batch_frames // 4, 1)
            batches = self.cut(lengths, budget)

            def run(idx):
                ids, mask = self._tokens([new[j] for j in idx])
                out = self.model({"text_input_ids": ids, "text_attention_mask": mask}, task)
                emb = _owned(out["text_emb"])
                if not tokens:
                    return emb, None
                toks = out["text_tokens"].float().cpu().numpy()
                n_tok = mask.sum(1).tolist()
                return emb, [toks[i, :n_tok[i]].copy() for i in range(len(idx))]

            for idx, (emb, toks) in zip(batches, self.run(batches, run, "embed text")):
                for row, j in enumerate(idx):
                    self._text_emb.setdefault(new[j], emb[row])   # the first embedding of a string stays
                    if toks is not None:
                        self._text_tokens[new[j]] = toks[row]
        if not texts:
            return np.zeros((0, 0), np.float32)
        return np.stack([self._text_emb[t] for t in texts])

    def text_tokens(self, texts: list[str]) -> list[np.ndarray]:
        self.texts(texts, tokens=True)
        return [self._text_tokens[t] for t in texts]

    @torch.no_grad()
    def motions(self, motions: list[np.ndarray], desc: str = "embed motion") -> np.ndarray:
        # sorting by length keeps padding small (pyramid windows and chunks vary a lot)
        if not len(motions):
            return np.zeros((0, 0), np.float32)
        batches = self.cut([len(m) for m in motions])

        def run(idx):
            motion, mask = self._motion_batch([motions[j] for j in idx])
            return _owned(self.model({"motion": motion, "motion_mask": mask}, "embed")["motion_emb"])

        out = self.run(batches, run, desc)
        result = np.empty((len(motions), out[0].shape[1]), dtype=out[0].dtype)
        for idx, emb in zip(batches, out):
            result[idx] = emb
        return result

    @torch.no_grad()
    def videos(self, videos: Iterable[np.ndarray]) -> np.ndarray:
        """Embed uint8 (l_v, 3, H, W) clips from any iterable (streamed, batch by batch), on this process."""
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

    # ------------------------------------------------------------------ localization
    @torch.no_grad()
    def snippets(self, motions: list[np.ndarray], desc: str = "encode motion") -> list[np.ndarray]:
        """The localization head's motion input of each motion: its encoded snippets (T, d)."""
        batches = self.cut([len(m) for m in motions])

        def run(idx):
            motion, mask = self._motion_batch([motions[j] for j in idx])
            out = self.model({"motion": motion, "motion_mask": mask}, "localize_inputs")
            snip, n = out["motion_snippets"].float().cpu().numpy(), out["snippet_mask"].sum(1).tolist()
            return [snip[i, :n[i]].copy() for i in range(len(idx))]

        result: list[np.ndarray] = [np.empty(0)] * len(motions)
        for idx, snips in zip(batches, self.run(batches, run, desc)):
            for row, j in enumerate(idx):
                result[j] = snips[row]
        return result

    @torch.no_grad()
    def localize_pairs(self, snippets: list[np.ndarray], tokens: list[np.ndarray], durations: Sequence[float],
                       pair_motion: np.ndarray, pair_text: np.ndarray, top_k: int = 1, curves: bool = False,
                       desc: str = "localize") -> dict[str, np.ndarray] | list[dict[str, np.ndarray]]:
        """The head on (motion, text) pairs of encoded inputs (`snippets`, `text_tokens`), one
        "localize" call per batch of pairs. Returns stacked arrays ("start_s", "end_s", "score" (n,),
        "topk_start_s", "topk_end_s", "topk_score" (n, k)); with `curves`, one dict per pair as
        `localize` gives (with p_start, p_end, highlight, duration_s)."""
        if self.model.localization is None:
            raise ValueError("this model has no localization head (use_localization=false)")
        max_span = self.model.cfg.localization.max_span_snippets
        pair_motion, pair_text = np.asarray(pair_motion, dtype=np.int64), np.asarray(pair_text, dtype=np.int64)
        n_snip = np.array([len(s) for s in snippets])
        n_tok = np.array([len(t) for t in tokens])
        cost = n_snip[pair_motion] + n_tok[pair_text] if len(pair_motion) else np.zeros(0, np.int64)
        batches = self.cut(cost)
        keys = ("start_s", "end_s", "score", "topk_start_s", "topk_end_s", "topk_score")

        def pad(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
            length = max(len(a) for a in arrays)
            out = np.zeros((len(arrays), length, arrays[0].shape[-1]), dtype=np.float32)
            for i, a in enumerate(arrays):
                out[i, :len(a)] = a
            mask = np.arange(length)[None] < np.array([len(a) for a in arrays])[:, None]
            return torch.from_numpy(out).to(self.device), torch.from_numpy(mask).to(self.device)

        def run(idx):
            snip, smask = pad([snippets[m] for m in pair_motion[idx]])
            tok, tmask = pad([tokens[t] for t in pair_text[idx]])
            duration = torch.tensor([float(durations[m]) for m in pair_motion[idx]], device=self.device)
            out = self.model({"motion_snippets": snip, "snippet_mask": smask, "text_tokens": tok,
                              "text_attention_mask": tmask, "duration_s": duration}, "localize")
            dec = decode_moments(out["p_start"], out["p_end"], out["snippet_mask"], duration, top_k, max_span)
            if not curves:
                return {k: _owned(dec[k]) for k in keys}
            return _per_pair(out, dec, duration)

        outs = self.run(batches, run, desc)
        if curves:
            result: list[dict] = [{}] * len(pair_motion)
            for idx, items in zip(batches, outs):
                for row, j in enumerate(idx):
                    result[j] = items[row]
            return result
        stacked = {k: np.zeros((len(pair_motion),) + ((top_k,) if k.startswith("topk") else ()), np.float32)
                   for k in keys}
        for idx, out in zip(batches, outs):
            for k in keys:
                stacked[k][idx] = out[k]
        return stacked

    @torch.no_grad()
    def localize(self, motions: list[np.ndarray], fps: list[float], texts: list[str], top_k: int = 1
                 ) -> list[dict[str, np.ndarray]]:
        """Per (motion, text) pair: p_start, p_end, highlight (valid snippets) and the decoded spans
        (best start_s/end_s/score and the top-k lists), from the head in eval mode."""
        if self.model.localization is None:
            raise ValueError("this model has no localization head (use_localization=false)")
        max_span = self.model.cfg.localization.max_span_snippets
        results = []
        for i in self._batches(len(texts), "localize"):
            motion, mask = self._motion_batch(motions[i:i + self.batch_size])
            ids, tmask = self._tokens(texts[i:i + self.batch_size])
            duration = torch.tensor([len(m) / f for m, f in zip(motions[i:i + self.batch_size],
                                                                fps[i:i + self.batch_size])], device=self.device)
            out = self.model({"motion": motion, "motion_mask": mask, "text_input_ids": ids,
                              "text_attention_mask": tmask, "duration_s": duration}, "localize")
            dec = decode_moments(out["p_start"], out["p_end"], out["snippet_mask"], duration, top_k, max_span)
            results += _per_pair(out, dec, duration)
        return results
