"""Parameter counts and forward+backward time of the retrieval model at the papers' size.

Default: LAVIMO's configuration (latent 512, 6-layer motion / text / video temporal transformers,
6-layer motion decoder, CLIP ViT-B/32 vision tower built from config, packaged all-MiniLM-L6-v2 text
backbone), batch 32, 200 motion frames, 8 video frames at 224 px, K=16 shuffled captions.
Random inputs, random (untrained) vision weights: this measures cost, not quality.

    trimo-bench-retrieval-model [--device cuda] [--no-video] [--batch 32] [--steps 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from configs.schema import RetrievalModelConfig  # noqa: E402
from modeling.retrieval import RetrievalModel  # noqa: E402
from modeling.text_encoder import load_tokenizer  # noqa: E402


def count(module: torch.nn.Module | None) -> tuple[int, int]:
    if module is None:
        return 0, 0
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def make_batch(cfg: RetrievalModelConfig, args, device) -> dict[str, torch.Tensor]:
    tokenizer = load_tokenizer(cfg.text)
    b, t = args.batch, args.frames
    words = "a person walks forward then turns around and jumps twice before sitting down slowly".split()
    captions = [" ".join(words[: 6 + i % 8]) for i in range(b)]
    tok = tokenizer(captions, padding=True, return_tensors="pt")
    neg = tokenizer([" ".join(reversed(c.split())) for c in captions[: args.negatives]], padding=True,
                    return_tensors="pt")
    lengths = torch.randint(t // 2, t + 1, (b,))
    batch = {
        "motion": torch.randn(b, t, cfg.motion.n_feats),
        "motion_mask": torch.arange(t)[None] < lengths[:, None],
        "text_input_ids": tok["input_ids"], "text_attention_mask": tok["attention_mask"].bool(),
        "caption_emb": torch.randn(b, 384),
        "shuffled_input_ids": neg["input_ids"], "shuffled_attention_mask": neg["attention_mask"].bool(),
        "shuffled_owner": torch.arange(args.negatives),
    }
    if cfg.use_video:
        size = cfg.video.clip_image_size
        batch["video"] = torch.rand(b, cfg.video.n_frames, 3, size, size)
        batch["video_mask"] = torch.ones(b, cfg.video.n_frames, dtype=torch.bool)
    return {k: v.to(device) for k, v in batch.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--negatives", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--no-video", action="store_true", help="2-modal model (no CLIP tower)")
    parser.add_argument("--backend", default="auto", help="attention backend: eager | sdpa | triton | auto")
    parser.add_argument("--text-mode", default="full", help="frozen | lora | full")
    args = parser.parse_args(argv)

    cfg = RetrievalModelConfig(use_video=not args.no_video, attention_backend=args.backend)
    cfg.text.mode = args.text_mode
    cfg.loss.gather = "none"
    device = torch.device(args.device)
    model = RetrievalModel(cfg).to(device).train()
    parts = {"motion encoder": model.motion_encoder, "text encoder": model.text_encoder,
             "  text backbone": model.text_encoder.backbone, "video encoder": model.video_encoder,
             "  CLIP tower": model.video_encoder.tower if model.video_encoder is not None else None,
             "fusion attention": model.fusion, "motion decoder": model.decoder, "alignment": model.alignment,
             "total": model}
    print(f"{'component':<18}{'params':>14}{'trainable':>14}")
    for name, module in parts.items():
        total, trainable = count(module)
        print(f"{name:<18}{total:>14,}{trainable:>14,}")

    batch = make_batch(cfg, args, device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for step in range(args.steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = model(batch)
        out["loss"].sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step > 0:
            times.append(time.perf_counter() - start)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    video = f", video {cfg.video.n_frames}x{cfg.video.clip_image_size}px" if cfg.use_video else ""
    print(f"forward+backward on {device} (batch {args.batch}, {args.frames} frames{video}, "
          f"K={args.negatives}, text {args.text_mode}, attention {args.backend}): "
          f"median {statistics.median(times):.3f} s over {len(times)} steps")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
