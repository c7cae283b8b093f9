"""Batched, no-grad inference with a TrimoModel, only through its task API (`model(batch, task)`):
"embed" for pooled embeddings and "localize" for the localization head's span probabilities, the
same calls and the same input preparation (normalization, snippet pooling) as training."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from tqdm import tqdm

from modeling.localization import decode_moments


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
            for b in range(len(duration)):
                n = int(out["snippet_mask"][b].sum())
                item = {k: out[k][b, :n].float().cpu().numpy() for k in ("p_start", "p_end", "highlight")}
                item.update({k: v[b].float().cpu().numpy() for k, v in dec.items()})
                item["duration_s"] = float(duration[b])
                results.append(item)
        return results
