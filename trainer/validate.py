"""Periodic validation during training (validation split only; the test split is for launch/evaluate).

Computed on every rank's share of the validation shards, then gathered:
- retrieval: text->motion and motion->text R@1/R@5 over the whole validation set (cosine
  similarity of the pooled embeddings, the caption's own motion is the single positive), and the
  CAR accuracy (the motion is closer to its caption than to the event-shuffled caption);
- localization: mean IoU of the Eq. 13 top-1 span against the moment, and R@1 at IoU >= 0.5.
The metric functions are evaluation.protocols' (tie-averaged ranks, percentages), as in the evaluation.
`val/score` (the default model-selection metric) is the mean of the retrieval R@1s and the
localization mean IoU that exist. The paper protocols (TMR subsets, Normal/Assigned IoU, corpus
retrieval) belong to launch/evaluate.py.
"""
from __future__ import annotations

import random
from types import SimpleNamespace

import torch

from modeling.localization import decode_moments
from evaluation import protocols as M
from trainer.data import localization_batch, retrieval_batch, retrieval_texts, shuffled_negatives, _tokenize


def _loader(trainer, task: str, index: str):
    from shards.reader import ShardLoader
    from trainer.build import shard_dataset

    cfg = trainer.cfg
    train_set = getattr(cfg.data, task)
    set_cfg = SimpleNamespace(index=index, urls=None, shuffle_buffer=0, min_frames=train_set.min_frames,
                              max_frames=train_set.max_frames, split=cfg.validation.split)
    rcfg = cfg.model.retrieval
    extra = {"load_video": cfg.data.load_video and rcfg.use_video and task == "retrieval",
             "num_video_frames": rcfg.video.n_frames, "video_size": cfg.data.video_size,
             "crop_to_caption": task == "retrieval"}
    dataset = shard_dataset(set_cfg, task, cfg.run.seed, trainer.rank, trainer.world, training=False, **extra)
    return ShardLoader(dataset, cfg.validation.batch_size, num_workers=0)


@torch.no_grad()
def validate(trainer, step: int) -> dict[str, float]:
    cfg, acc = trainer.cfg, trainer.accelerator
    model = trainer.model
    model.eval()
    scores: dict[str, float] = {}
    rcfg = cfg.model.retrieval
    rng = random.Random(cfg.run.seed)
    limit = cfg.validation.max_batches or None
    try:
        if "retrieval" in trainer.tasks and cfg.validation.retrieval_index:
            motion, text, neg, keep = [], [], [], []
            for i, raw in enumerate(_loader(trainer, "retrieval", cfg.validation.retrieval_index)):
                if limit and i >= limit:
                    break
                video = (rcfg.video.n_frames, cfg.data.video_size) if rcfg.use_video else None
                b = retrieval_batch(raw, trainer.tokenizer, rcfg.text.max_tokens, rng, embedder=None,
                                    negatives_per_sample=0, use_negatives=False, video=video,
                                    captions=cfg.data.train_captions)
                b = {k: v.to(acc.device) for k, v in b.items()}
                out = model(b, "embed")
                # one shuffled caption per sample (the caption itself when it cannot be shuffled)
                negs, owners = shuffled_negatives(raw["events"], rng, 1)
                texts = retrieval_texts(raw, cfg.data.train_captions)
                for o, n in zip(owners, negs):
                    texts[o] = n
                ids, mask = _tokenize(trainer.tokenizer, texts, rcfg.text.max_tokens)
                n_out = model({"text_input_ids": ids.to(acc.device), "text_attention_mask": mask.to(acc.device)}, "embed")
                motion.append(out["motion_emb"])
                text.append(out["text_emb"])
                neg.append(n_out["text_emb"])
                has_neg = torch.zeros(len(texts), dtype=torch.bool)
                has_neg[owners] = True
                keep.append(torch.stack([~raw["repeat"], has_neg], 1).to(acc.device))
            m, t, n, k = (acc.gather(torch.cat(x)).float().cpu() for x in (motion, text, neg, keep))
            k = k.bool()
            m, t, n, has_neg = m[k[:, 0]], t[k[:, 0]], n[k[:, 0]], k[k[:, 0], 1]
            m, t, n = (torch.nn.functional.normalize(x, dim=-1) for x in (m, t, n))
            sim = (t @ m.T).double().numpy()
            t2m, m2t = M.retrieval_ranks(sim), M.retrieval_ranks(sim.T)
            scores.update({"val/t2m_R@1": M.recall_at_k(t2m, 1), "val/t2m_R@5": M.recall_at_k(t2m, 5),
                           "val/m2t_R@1": M.recall_at_k(m2t, 1), "val/m2t_R@5": M.recall_at_k(m2t, 5)})
            if has_neg.any():
                pos, wrong = (m * t).sum(-1)[has_neg], (m * n).sum(-1)[has_neg]
                scores["val/car_accuracy"] = M.car_accuracy(pos.double().numpy(), wrong.double().numpy())
        if "localization" in trainer.tasks and cfg.validation.localization_index:
            ious = []
            for i, raw in enumerate(_loader(trainer, "localization", cfg.validation.localization_index)):
                if limit and i >= limit:
                    break
                b = localization_batch(raw, trainer.tokenizer, rcfg.text.max_tokens, random.Random(i), 0.0,
                                       torch.Generator())
                b = {k: v.to(acc.device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
                out = model(b, "localize")
                pred = decode_moments(out["p_start"], out["p_end"], out["snippet_mask"], b["duration_s"], 1,
                                      cfg.model.localization.max_span_snippets)
                spans = torch.stack([pred["start_s"], pred["end_s"], b["gt_start_s"], b["gt_end_s"]], 1).double()
                ious.append(torch.cat([spans, (~raw["repeat"]).to(spans)[:, None]], 1))
            both = acc.gather(torch.cat(ious)).cpu().numpy()
            both = both[both[:, 4] > 0]
            iou = M.iou_metrics(M.temporal_iou(both[:, :2], both[:, 2:4]), (0.5,))
            scores.update({"val/loc_mIoU": iou["mIoU"], "val/loc_R1@0.5": iou["IoU@0.5"]})
    finally:
        model.train()
    parts = [scores[k] for k in ("val/t2m_R@1", "val/m2t_R@1", "val/loc_mIoU") if k in scores]
    if parts:
        scores["val/score"] = sum(parts) / len(parts)
    return scores
