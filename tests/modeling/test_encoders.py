"""Motion (with and without the GCN S-Enc), text and video encoders on tiny models built from config."""
import time

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel

from configs.schema import MotionEncoderConfig, TextEncoderConfig, VideoEncoderConfig
from modeling.gcn import SpatialGCN, skeleton_adjacency
from modeling.motion_encoder import MotionEncoder
from modeling.sequence import masked_mean, sinusoidal_positions
from modeling.text_encoder import TextEncoder, backbone_path
from modeling.video_encoder import VideoEncoder

torch.set_num_threads(1)
TINY = dict(latent_dim=16, n_layers=2, n_heads=2, ff_dim=32, dropout=0.0)


def joint12_stand_in(features):
    """Test-only stand-in for motion.features.features_to_joint12: position, 6D rotation, velocity per joint
    (root: zero position/rotation), read straight from the 263-d layout."""
    lead = features.shape[:-1]
    pos = torch.cat([features.new_zeros(*lead, 1, 3), features[..., 4:67].reshape(*lead, 21, 3)], -2)
    rot = torch.cat([features.new_zeros(*lead, 1, 6), features[..., 67:193].reshape(*lead, 21, 6)], -2)
    vel = features[..., 193:259].reshape(*lead, 22, 3)
    return torch.cat([rot, pos, vel], -1)


def motion_batch(b=3, t=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    motion = torch.randn(b, t, 263, generator=g)
    lengths = torch.tensor([t, t - 2, 3])[:b]
    mask = torch.arange(t)[None] < lengths[:, None]
    return motion, mask


# ---- sequence / motion -------------------------------------------------------------------------

def test_sinusoidal_positions_follow_the_formula():
    table = sinusoidal_positions(5, 6)
    for pos in range(5):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert abs(table[pos, 2 * i] - torch.sin(torch.tensor(angle))) < 1e-6
            assert abs(table[pos, 2 * i + 1] - torch.cos(torch.tensor(angle))) < 1e-6


def test_motion_encoder_ignores_padding_and_matches_unpadded_sample():
    torch.manual_seed(0)
    enc = MotionEncoder(MotionEncoderConfig(**TINY), backend="eager").eval()
    motion, mask = motion_batch()
    frames, pooled = enc(motion, mask)
    assert frames.shape == (3, 7, 16) and pooled.shape == (3, 16)
    garbage = motion.clone()
    garbage[~mask] = 1e3
    frames2, pooled2 = enc(garbage, mask)
    assert torch.allclose(pooled, pooled2, atol=1e-5) and torch.allclose(frames[mask], frames2[mask], atol=1e-5)
    alone_frames, alone = enc(motion[2:3, :3], mask[2:3, :3])
    assert torch.allclose(alone[0], pooled[2], atol=1e-5)
    assert torch.allclose(alone_frames[0], frames[2, :3], atol=1e-5)


def test_motion_encoder_backends_agree():
    torch.manual_seed(0)
    eager = MotionEncoder(MotionEncoderConfig(**TINY), backend="eager").eval()
    sdpa = MotionEncoder(MotionEncoderConfig(**TINY), backend="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    motion, mask = motion_batch()
    assert torch.allclose(eager(motion, mask)[1], sdpa(motion, mask)[1], atol=1e-5)


def test_adjacency_from_parents_is_the_bone_graph_with_self_loops():
    from motion.skeleton import PARENTS

    adj = skeleton_adjacency(list(PARENTS))
    assert torch.equal(adj, adj.T) and torch.all(adj.diag() == 1)
    assert adj[0, 1] == 1 and adj[9, 13] == 1 and adj[9, 14] == 1 and adj[1, 2] == 0
    assert int(adj.sum()) == 22 + 2 * 21   # a tree over 22 joints has 21 bones
    norm = skeleton_adjacency(list(PARENTS), normalize=True)
    assert torch.allclose(norm[0, 1], 1 / torch.sqrt(torch.tensor(4.0 * 3.0)))   # pelvis: 3 bones + self, left hip: 2 + self


@pytest.mark.parametrize("n_layers", [1, 4, 7])
def test_gcn_equals_direct_formula_on_real_frames(n_layers):
    """H^(0) batch-normalized per joint and channel; layer(H) = BN(tanh(A H W + b)); the first layer,
    then residual blocks of two layers (one for a last odd layer); batch statistics from real frames
    only; mean over joints."""
    from motion.skeleton import PARENTS

    torch.manual_seed(0)
    adj = skeleton_adjacency(list(PARENTS))
    gcn = SpatialGCN(12, 8, n_layers, adj).train()
    with torch.no_grad():                       # a learned adjacency that has moved off the bone graph
        gcn.adjacency.add_(0.1 * torch.randn_like(adj))
        for w in gcn.weights:
            w.bias.normal_()
    assert all(torch.count_nonzero(w.bias) for w in gcn.weights)
    x = torch.randn(2, 5, 22, 12) * torch.logspace(-2, 1, 12) + 3.0   # channels of very different scales
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = gcn(x, mask)

    def layer(i, h):
        h = torch.tanh(gcn.adjacency @ (h @ gcn.weights[i].weight.T + gcn.weights[i].bias))
        mean, var = h.mean(dim=(0, 1)), h.var(dim=(0, 1), unbiased=False)
        return (h - mean) / torch.sqrt(var + gcn.norms[i].eps) * gcn.norms[i].weight + gcn.norms[i].bias

    h = x[mask]
    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + gcn.input_norm.eps)   # affine starts at 1, 0
    h = layer(0, h)
    for block in {1: [], 4: [[1, 2], [3]], 7: [[1, 2], [3, 4], [5, 6]]}[n_layers]:
        y = h
        for i in block:
            y = layer(i, y)
        h = h + y
    assert torch.allclose(out[mask], h.mean(1), atol=1e-4)
    assert torch.count_nonzero(out[~mask]) == 0


def test_gcn_adjacency_is_learned_from_the_bone_graph():
    from motion.skeleton import PARENTS

    adj = skeleton_adjacency(list(PARENTS))
    gcn = SpatialGCN(12, 8, 3, adj)
    assert torch.equal(gcn.adjacency.detach(), adj) and "adjacency" in gcn.state_dict()
    gcn(torch.randn(2, 4, 22, 12), torch.ones(2, 4, dtype=torch.bool)).sum().backward()
    assert gcn.adjacency.grad is not None and gcn.adjacency.grad.abs().sum() > 0


def test_motion_encoder_with_gcn_un_normalizes_for_joint12():
    seen = []

    def spy(features):
        seen.append(features.clone())
        return joint12_stand_in(features)

    from motion.skeleton import PARENTS

    torch.manual_seed(0)
    cfg = MotionEncoderConfig(**TINY, use_gcn=True, gcn_layers=3, gcn_dim=8)
    enc = MotionEncoder(cfg, backend="eager", joint12_fn=spy, parents=list(PARENTS))
    mean, std = torch.randn(263), torch.rand(263) + 0.5
    enc.set_feature_stats(mean, std)
    motion, mask = motion_batch()
    frames, pooled = enc(motion, mask)
    assert torch.allclose(seen[0], motion * enc.feat_std + mean, atol=1e-6)
    assert frames.shape == (3, 7, 16) and torch.isfinite(pooled).all()
    (pooled * torch.randn_like(pooled)).sum().backward()   # a plain sum of a normalized output has ~0 gradient
    assert enc.gcn.weights[0].weight.grad.abs().sum() > 0
    assert "feat_mean" in enc.state_dict()   # the stats travel with the checkpoint


def test_motion_encoder_default_joint12_comes_from_shards_motion():
    motion_mod = pytest.importorskip("motion.features", reason="motion.features (helper MOTION) not written yet")
    if not hasattr(motion_mod, "features_to_joint12"):
        pytest.skip("motion.features.features_to_joint12 not written yet")
    enc = MotionEncoder(MotionEncoderConfig(**TINY, use_gcn=True, gcn_layers=2, gcn_dim=8), backend="eager")
    motion, mask = motion_batch()
    _, pooled = enc(motion, mask)
    assert torch.isfinite(pooled).all()


def test_wrong_feature_size_is_named():
    enc = MotionEncoder(MotionEncoderConfig(**TINY), backend="eager")
    with pytest.raises(ValueError, match="263"):
        enc(torch.randn(1, 4, 251), torch.ones(1, 4, dtype=torch.bool))


# ---- text --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(backbone_path(TextEncoderConfig()))


def tiny_bert(vocab_size):
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
def test_text_encoder_modes_train_the_right_parameters(tokenizer, mode):
    enc = TextEncoder(TextEncoderConfig(mode=mode, **TINY), backend="eager", backbone=tiny_bert(tokenizer.vocab_size))
    tok = tokenizer(["a person walks forward", "someone jumps twice then sits"], padding=True, return_tensors="pt")
    tokens, pooled = enc(tok["input_ids"], tok["attention_mask"])
    assert tokens.shape == (2, tok["input_ids"].shape[1], 16) and pooled.shape == (2, 16)
    (pooled * torch.randn_like(pooled)).sum().backward()   # a plain sum of a normalized output has ~0 gradient
    backbone = {n: p for n, p in enc.backbone.named_parameters()}
    trainable = {n for n, p in backbone.items() if p.requires_grad}
    with_grad = {n for n, p in backbone.items() if p.grad is not None and p.grad.abs().sum() > 0}
    if mode == "frozen":
        assert not trainable and not with_grad
    elif mode == "lora":
        assert trainable and all("lora_" in n for n in trainable)
        assert any("query" in n for n in trainable) and any("value" in n for n in trainable)
        assert not any("key" in n for n in trainable)
        assert with_grad <= trainable
    else:
        assert trainable == set(backbone)
    assert enc.temporal.proj.weight.grad is not None   # the temporal transformer always trains


def test_text_encoder_ignores_padding(tokenizer):
    enc = TextEncoder(TextEncoderConfig(mode="full", **TINY), backend="eager",
                      backbone=tiny_bert(tokenizer.vocab_size)).eval()
    short = tokenizer(["a person waves"], return_tensors="pt")
    padded = tokenizer(["a person waves"], padding="max_length", max_length=16, return_tensors="pt")
    _, a = enc(short["input_ids"], short["attention_mask"])
    _, b = enc(padded["input_ids"], padded["attention_mask"])
    assert torch.allclose(a, b, atol=1e-5)


def test_frozen_backbone_stays_in_eval_mode(tokenizer):
    bert = tiny_bert(tokenizer.vocab_size)
    enc = TextEncoder(TextEncoderConfig(mode="frozen", **TINY), backend="eager", backbone=bert)
    enc.train()
    assert not enc.backbone.training and enc.temporal.training


def test_bad_mode_is_named(tokenizer):
    with pytest.raises(ValueError, match="text.mode"):
        TextEncoder(TextEncoderConfig(mode="adapter", **TINY), backbone=tiny_bert(tokenizer.vocab_size))


@pytest.mark.slow
def test_packaged_minilm_with_lora_starts_as_the_base_model(tokenizer):
    """The real all-MiniLM-L6-v2 loads offline; LoRA sits on query/value of all 6 layers and, with
    B initialized to zero, leaves the backbone output unchanged until trained."""
    start = time.time()
    from transformers import AutoModel

    enc = TextEncoder(TextEncoderConfig(mode="lora", **TINY), backend="eager").eval()
    base = AutoModel.from_pretrained(backbone_path(TextEncoderConfig())).eval()
    lora_layers = [n for n, _ in enc.backbone.named_modules() if n.endswith(("query", "value")) and
                   hasattr(_, "lora_A")]
    assert len(lora_layers) == 12
    tok = tokenizer(["a man kicks with his left leg"], return_tensors="pt")
    with torch.no_grad():
        lora_states = enc.backbone(**tok).last_hidden_state
        base_states = base(**tok).last_hidden_state
    assert lora_states.shape[-1] == 384 and torch.allclose(lora_states, base_states, atol=1e-5)
    n_train = sum(p.numel() for p in enc.backbone.parameters() if p.requires_grad)
    assert n_train == 6 * 2 * 2 * 8 * 384    # layers x (q, v) x (A, B) x rank x width
    assert time.time() - start < 20


# ---- video -------------------------------------------------------------------------------------

def tiny_clip(image_size=32):
    torch.manual_seed(0)
    return CLIPVisionModel(CLIPVisionConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=48, image_size=image_size, patch_size=16))


def test_video_encoder_masks_frames_and_mean_pools():
    enc = VideoEncoder(VideoEncoderConfig(**TINY), backend="eager", tower=tiny_clip()).eval()
    g = torch.Generator().manual_seed(0)
    video = torch.rand(2, 4, 3, 32, 32, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    frames, pooled = enc(video, mask)
    assert frames.shape == (2, 4, 16) and pooled.shape == (2, 16)
    assert torch.allclose(pooled, masked_mean(frames, mask), atol=1e-6)
    garbage = video.clone()
    garbage[~mask] = 0.5
    _, pooled2 = enc(garbage, mask)
    assert torch.allclose(pooled, pooled2, atol=1e-5)
    _, alone = enc(video[1:, :2], mask[1:, :2])
    assert torch.allclose(alone[0], pooled[1], atol=1e-5)


def test_video_encoder_normalizes_and_resizes():
    from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    tower = tiny_clip()
    seen = []
    tower.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["pixel_values"]), with_kwargs=True)
    enc = VideoEncoder(VideoEncoderConfig(**TINY, mode="frozen"), backend="eager", tower=tower)
    video = torch.full((1, 2, 3, 64, 48), 0.5)
    enc(video, torch.ones(1, 2, dtype=torch.bool))
    pixels = seen[0]
    assert pixels.shape == (2, 3, 32, 32)
    expected = (0.5 - torch.tensor(OPENAI_CLIP_MEAN)) / torch.tensor(OPENAI_CLIP_STD)
    assert torch.allclose(pixels[0, :, 5, 5], expected, atol=1e-5)
    assert not any(p.requires_grad for p in enc.tower.parameters())


def test_video_shape_error_is_named():
    enc = VideoEncoder(VideoEncoderConfig(**TINY), tower=tiny_clip())
    with pytest.raises(ValueError, match="frames, 3, H, W"):
        enc(torch.rand(1, 4, 32, 32), torch.ones(1, 4, dtype=torch.bool))


@pytest.mark.parametrize("kind", ["distilbert", "t5", "clip", "roberta"])
def test_lora_defaults_find_query_value_of_other_backbones(tmp_path, kind):
    """Tiny backbones of the papers' families, saved locally and loaded through the config path."""
    from transformers import (CLIPTextConfig, CLIPTextModel, DistilBertConfig, DistilBertModel, RobertaConfig,
                              RobertaModel, T5Config, T5EncoderModel)

    torch.manual_seed(0)
    model = {
        "distilbert": lambda: DistilBertModel(DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2, hidden_dim=32)),
        "t5": lambda: T5EncoderModel(T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)),
        "clip": lambda: CLIPTextModel(CLIPTextConfig(vocab_size=100, hidden_size=16, intermediate_size=32,
                                                     num_hidden_layers=1, num_attention_heads=2)),
        "roberta": lambda: RobertaModel(RobertaConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1,
                                                      num_attention_heads=2, intermediate_size=32)),
    }[kind]()
    model.save_pretrained(tmp_path)
    enc = TextEncoder(TextEncoderConfig(backbone=str(tmp_path), mode="lora", **TINY), backend="eager")
    trainable = [n for n, p in enc.backbone.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ids = torch.randint(3, 100, (2, 5))
    _, pooled = enc(ids, torch.ones(2, 5, dtype=torch.long))
    assert pooled.shape == (2, 16)


def test_missing_text_backbone_path_is_named(tmp_path):
    with pytest.raises(OSError, match="text.backbone"):
        TextEncoder(TextEncoderConfig(backbone=str(tmp_path / "nope"), **TINY))


def test_no_feature_is_scaled_up_more_than_its_group_average():
    """A dimension that hardly varies in the training statistics gets its group's mean std, so a
    real motion's ordinary value stays a few stds away; other dimensions keep their own std."""
    from motion.features import FEATURE_GROUPS

    enc = MotionEncoder(MotionEncoderConfig(**TINY), backend="eager")
    std = torch.linspace(0.5, 1.5, 263, dtype=torch.float64)
    rot = FEATURE_GROUPS["rot"]
    std[rot.start] = 1e-5                         # a stiff joint of a synthetic corpus
    std[FEATURE_GROUPS["foot_contact"]] = 0.0     # contacts that never change
    enc.set_feature_stats(torch.zeros(263), std)
    assert enc.feat_std[rot.start].item() == pytest.approx(std[rot].mean().item(), rel=1e-6)
    above = rot.start + 100                       # above its group's mean: its own std
    assert enc.feat_std[above].item() == pytest.approx(std[above].item(), rel=1e-6)
    assert torch.all(enc.feat_std[FEATURE_GROUPS["foot_contact"]] == 1.0)   # only centred
    real = torch.zeros(1, 1, 263)
    real[..., rot.start] = 0.1                    # an ordinary rotation value of real mocap
    assert enc.normalize(real)[..., rot.start].abs().item() < 1.0
