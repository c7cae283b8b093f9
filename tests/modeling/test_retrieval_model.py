"""The assembled retrieval model: batch contract, missing modalities, fusion + decoder, overfitting."""
import itertools
import math
import time

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer, BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel

from modeling.attention import MultiHeadAttention
from configs.schema import (ContrastiveLossConfig, FusionDecoderConfig, MotionEncoderConfig, RetrievalModelConfig,
                             TextEncoderConfig, VideoEncoderConfig)
from modeling.fusion import FusionAttention, MotionDecoder, masked_mse
from modeling.retrieval import RetrievalModel
from modeling.text_encoder import backbone_path

torch.set_num_threads(1)
D = 16
ENC = dict(latent_dim=D, n_layers=1, n_heads=2, ff_dim=32, dropout=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(backbone_path(TextEncoderConfig()))


def tiny_cfg(**kw):
    return RetrievalModelConfig(
        motion=MotionEncoderConfig(**ENC), text=TextEncoderConfig(**ENC), video=VideoEncoderConfig(**ENC),
        loss=ContrastiveLossConfig(gather="none"), fusion=FusionDecoderConfig(n_heads=2, n_layers=1, ff_dim=32, dropout=0.0),
        attention_backend="eager", **kw)


def tiny_model(tokenizer, cfg=None, hidden=32):
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=2 * hidden, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0))
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=48, image_size=32, patch_size=16))
    return RetrievalModel(cfg or tiny_cfg(), text_backbone=bert, vision_tower=clip)


def make_batch(tokenizer, b=4, t=6, video=True, negatives=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    captions = ["a person walks forward then turns left", "someone jumps twice", "a man sits down slowly",
                "the person waves and then claps"][:b]
    tok = tokenizer(captions, padding=True, return_tensors="pt")
    batch = {
        "motion": torch.randn(b, t, 263, generator=g),
        "motion_mask": torch.arange(t)[None] < torch.tensor([t, t - 1, 3, t])[:b, None],
        "text_input_ids": tok["input_ids"], "text_attention_mask": tok["attention_mask"],
        "caption_emb": torch.randn(b, 8, generator=g),
    }
    if video:
        batch["video"] = torch.rand(b, 3, 3, 32, 32, generator=g)
        batch["video_mask"] = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)[:b]
    if negatives:
        neg = tokenizer(["a person turns left then walks forward", "the person claps and then waves"],
                        padding=True, return_tensors="pt")
        batch.update(shuffled_input_ids=neg["input_ids"], shuffled_attention_mask=neg["attention_mask"],
                     shuffled_owner=torch.tensor([0, 3]))
    return batch


def test_config_is_an_omegaconf_structured_config():
    base = OmegaConf.structured(RetrievalModelConfig)
    merged = OmegaConf.merge(base, OmegaConf.from_dotlist(["loss.epsilon=0.7", "motion.use_gcn=true"]))
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, RetrievalModelConfig) and cfg.loss.epsilon == 0.7 and cfg.motion.use_gcn
    assert cfg.motion.latent_dim == 512 and cfg.motion.n_layers == 6 and cfg.recon_weight == 0.1
    assert cfg.loss.epsilon == 0.7 and RetrievalModelConfig().loss.epsilon == 0.8


def test_forward_all_heads_combines_losses(tokenizer):
    model = tiny_model(tokenizer)
    out = model(make_batch(tokenizer))
    for key in ("align_mt", "align_mv", "align_tv", "recon", "car_accuracy", "motion_emb", "text_emb", "video_emb"):
        assert key in out, key
    expected = out["align_mt"] + out["align_mv"] + out["align_tv"]
    assert torch.allclose(out["align"], expected)
    assert torch.allclose(out["loss"], out["align"] + 0.1 * out["recon"])
    out["loss"].sum().backward()
    for part in ("motion_encoder", "text_encoder", "video_encoder", "fusion", "decoder", "alignment"):
        module = getattr(model, part)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), part


def test_negatives_enter_the_motion_text_loss(tokenizer):
    model = tiny_model(tokenizer).eval()
    with torch.no_grad():
        with_neg = model(make_batch(tokenizer, video=False))
        without = model(make_batch(tokenizer, video=False, negatives=False))
    assert float(with_neg["align_mt"]) > float(without["align_mt"])   # extra columns only add denominator mass
    assert math.isnan(float(without["car_accuracy"]))   # no caption could be shuffled: undefined
    model.cfg.use_chronological_negatives = False
    with torch.no_grad():
        off = model(make_batch(tokenizer, video=False))
    assert torch.allclose(off["align_mt"], without["align_mt"])


def test_missing_modalities_use_what_is_present(tokenizer):
    model = tiny_model(tokenizer)
    out = model(make_batch(tokenizer, video=False, negatives=False))
    assert set(k for k in out if k.startswith("align_")) == {"align_mt"} and "recon" in out
    batch = make_batch(tokenizer, negatives=False)
    del batch["motion"], batch["motion_mask"]
    out = model(batch)
    assert set(k for k in out if k.startswith("align_")) == {"align_tv"} and "recon" not in out
    with pytest.raises(ValueError, match="two modalities"):
        model({k: v for k, v in batch.items() if not k.startswith("video")})


def test_heads_switch_off(tokenizer):
    model = tiny_model(tokenizer, tiny_cfg(use_video=False, use_reconstruction=False))
    assert model.video_encoder is None and model.decoder is None
    out = model(make_batch(tokenizer))      # video in the batch is ignored by a 2-modal model
    assert "align_mv" not in out and "recon" not in out
    assert torch.allclose(out["loss"], out["align"])


def test_fusion_is_the_sum_of_three_attentions_with_motion_embedding_query():
    torch.manual_seed(0)
    fusion = FusionAttention(D, 2, backend="eager")
    e_m = torch.randn(2, D)
    feats = {"motion": (torch.randn(2, 5, D), torch.tensor([[1] * 5, [1, 1, 0, 0, 0]]).bool()),
             "text": (torch.randn(2, 4, D), torch.ones(2, 4, dtype=torch.bool)),
             "video": (torch.randn(2, 3, D), torch.ones(2, 3, dtype=torch.bool))}
    fused = fusion(e_m, feats)
    manual = sum(fusion.attn[s](e_m[:, None], x, key_mask=m) for s, (x, m) in feats.items())
    assert fused.shape == (2, 1, D) and torch.allclose(fused, manual, atol=1e-6)
    # a single query over one key: softmax weight 1, so the output is that key's projected value
    attn: MultiHeadAttention = fusion.attn["motion"]
    one = {"motion": (feats["motion"][0][:, :1], torch.ones(2, 1, dtype=torch.bool))}
    assert torch.allclose(fusion(e_m, one), attn.out_proj(attn.v_proj(feats["motion"][0][:, :1])), atol=1e-6)
    without_video = fusion(e_m, {k: v for k, v in feats.items() if k != "video"})
    assert torch.allclose(without_video, manual - fusion.attn["video"](e_m[:, None], feats["video"][0], key_mask=feats["video"][1]), atol=1e-6)


def test_decoder_is_zero_on_padding_and_mse_counts_real_frames():
    torch.manual_seed(0)
    dec = MotionDecoder(D, 263, FusionDecoderConfig(n_heads=2, n_layers=1, ff_dim=32, dropout=0.0), "eager")
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    out = dec(torch.randn(2, 1, D), mask)
    assert out.shape == (2, 4, 263) and torch.count_nonzero(out[~mask]) == 0
    target = torch.randn(2, 4, 263)
    loop = sum(((out[b, t] - target[b, t]) ** 2).sum() for b in range(2) for t in range(4) if mask[b, t])
    assert torch.allclose(masked_mse(out, target, mask), loop / (6 * 263), atol=1e-6)


def test_latent_dims_must_agree(tokenizer):
    cfg = tiny_cfg()
    cfg.text.latent_dim = 8
    with pytest.raises(ValueError, match="latent_dim"):
        tiny_model(tokenizer, cfg)


@pytest.mark.slow
def test_tiny_model_overfits_64_samples(tokenizer):
    """Text->motion R@1 reaches 100% on 64 synthetic triplets within 200 CPU steps (all heads on:
    tri-modal soft-target alignment, chronological negatives, fusion + reconstruction)."""
    torch.manual_seed(0)
    verbs, ways, counts = ["walks", "jumps", "kicks", "spins"], ["forward", "backward", "left", "right"], \
        ["once", "twice", "slowly", "quickly"]
    captions = [f"a person {v} {w} {c}" for v, w, c in itertools.product(verbs, ways, counts)]
    tok = tokenizer(captions, padding=True, return_tensors="pt")
    g = torch.Generator().manual_seed(0)
    n, t = 64, 8
    lengths = torch.randint(4, t + 1, (n,), generator=g)
    batch = {"motion": torch.randn(n, t, 263, generator=g), "motion_mask": torch.arange(t)[None] < lengths[:, None],
             "text_input_ids": tok["input_ids"], "text_attention_mask": tok["attention_mask"],
             "video": torch.rand(n, 2, 3, 32, 32, generator=g), "video_mask": torch.ones(n, 2, dtype=torch.bool),
             "caption_emb": torch.randn(n, 8, generator=g)}
    shuffled = [f"a person {c} {w} {v}" for v, w, c in itertools.product(verbs, ways, counts)][:16]
    neg = tokenizer(shuffled, padding=True, return_tensors="pt")
    batch.update(shuffled_input_ids=neg["input_ids"], shuffled_attention_mask=neg["attention_mask"],
                 shuffled_owner=torch.arange(16))
    cfg = tiny_cfg()
    model = tiny_model(tokenizer, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    start, r_at_1, step = time.time(), 0.0, 0
    for step in range(1, 201):
        model.train()
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        if step % 10 == 0:
            model.eval()
            with torch.no_grad():
                out = model(batch)
            text = torch.nn.functional.normalize(out["text_emb"], dim=-1)
            motion = torch.nn.functional.normalize(out["motion_emb"], dim=-1)
            r_at_1 = float(((text @ motion.T).argmax(1) == torch.arange(n)).float().mean())
            if r_at_1 == 1.0:
                break
    assert r_at_1 == 1.0, f"text->motion R@1 = {r_at_1:.3f} after {step} steps"
    print(f"overfit: R@1=100% at step {step}, {time.time() - start:.1f}s")


def test_sample_without_video_is_left_out_of_video_pairs(tokenizer):
    model = tiny_model(tokenizer).eval()
    batch = make_batch(tokenizer, negatives=False)
    batch["video_mask"][2] = False                       # sample 2 has no rendering
    with torch.no_grad():
        out = model(batch)
        sub = {k: (v[[0, 1, 3]] if k in ("motion", "motion_mask", "text_input_ids", "text_attention_mask",
                                          "caption_emb", "video", "video_mask") else v) for k, v in batch.items()}
        ref = model(sub)
    assert torch.allclose(out["align_mv"], ref["align_mv"], atol=1e-5)
    assert torch.allclose(out["align_tv"], ref["align_tv"], atol=1e-5)
    assert not torch.allclose(out["align_mt"], ref["align_mt"], atol=1e-5)   # motion-text keeps sample 2
    # the fusion gives sample 2 no video term at all (not the projection bias)
    feats = {"motion": (torch.randn(1, 3, D), torch.ones(1, 3, dtype=torch.bool)),
             "video": (torch.randn(1, 2, D), torch.zeros(1, 2, dtype=torch.bool))}
    e_m = torch.randn(1, D)
    assert torch.allclose(model.fusion(e_m, feats), model.fusion(e_m, {"motion": feats["motion"]}))
