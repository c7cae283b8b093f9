"""trimo-search: index a mocap folder with a trained model, query it, find moments; checked against
brute force through the model's task API, and against a model that is not the index's."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluation import protocols as M
from fixtures.mocap_builders import walking_bvh
from fixtures.synthetic_motion import synthetic_clip
from search.library import FPS, MotionIndex, SearchIndexError, Searcher
from tools import search as cli

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "mocap"
    (root / "cmu").mkdir(parents=True)
    for ext in ("asf", "amc"):
        shutil.copy(FIXTURES / f"cmu_walk_60fps.{ext}", root / "cmu" / f"walk.{ext}")
    walking_bvh(root / "jump.bvh", n_frames=90, fps=30.0)
    np.save(root / "long_turn.npy", synthetic_clip(500, seed=3).astype(np.float32))    # 25 s: 3+ chunks
    (root / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n{\n")                          # unreadable
    np.save(root / "released.npy", np.zeros((40, 263), np.float32))                     # released features
    return root


def test_index_query_and_moments_agree_with_brute_force(models, library, tmp_path):
    searcher = Searcher(models["head"], progress=False)
    index, skipped = searcher.build_index([library])
    assert [e["id"] for e in index.entries] == ["cmu/walk", "jump", "long_turn"]
    assert sorted(reason for _, reason, _ in skipped) == ["bad_input", "motion_features"]
    assert any("released.npy" in msg and "index the joints" in msg for _, _, msg in skipped)

    # text -> motion: a motion's score is its best chunk's cosine, computed here chunk by chunk
    query = "a person walks forward"
    hits = searcher.search_text(index, query, k=3)
    text = searcher.encoder.texts([query])[0]
    text /= np.linalg.norm(text)
    brute = {}
    for entry, motion in zip(index.entries, index.features):
        chunks = M.chunk_windows(len(motion), FPS, index.chunk_s, index.chunk_overlap)
        emb = searcher.encoder.motions([motion[s:e] for s, e in chunks])
        cos = emb @ text / np.linalg.norm(emb, axis=1)
        best = int(np.argmax(cos))
        brute[entry["id"]] = (float(cos[best]), chunks[best][0] / FPS, chunks[best][1] / FPS)
    assert len(M.chunk_windows(500, FPS, index.chunk_s, index.chunk_overlap)) > 3
    assert [h.id for h in hits] == sorted(brute, key=lambda i: -brute[i][0])
    for h in hits:
        assert h.score == pytest.approx(brute[h.id][0], abs=1e-5) and (h.start_s, h.end_s) == brute[h.id][1:]

    # the faiss backend (exact inner product over the chunks) ranks the same
    pytest.importorskip("faiss", reason="faiss-cpu (the optional search extra, in dev) is not installed")
    searcher.backend = "faiss"
    by_faiss = searcher.search_text(index, query, k=3)
    searcher.backend = "numpy"
    assert [(h.id, h.start_s, h.end_s) for h in by_faiss] == [(h.id, h.start_s, h.end_s) for h in hits]
    assert [h.score for h in by_faiss] == pytest.approx([h.score for h in hits], abs=1e-6)

    # motion -> motion: a motion finds itself first
    assert searcher.search_motion(index, index.features[2], k=1)[0].id == "long_turn"

    # moments in one motion: the head's spans through Encoder.localize, best first, inside the take
    moments = searcher.moments(index, query, k=3, motion_id="long_turn")
    direct = searcher.encoder.localize([index.features[2]], [FPS], [query], top_k=3)[0]
    spans = np.stack([direct["topk_start_s"], direct["topk_end_s"]], 1)
    np.testing.assert_allclose([(m.start_s, m.end_s) for m in moments], spans, atol=1e-6)
    assert all(m.method == "head" and 0 <= m.start_s < m.end_s <= m.duration_s + 1e-6 for m in moments)
    assert [m.score for m in moments] == sorted((m.score for m in moments), reverse=True)
    assert moments[0].p_start == pytest.approx(direct["p_start"].tolist())

    # saved and loaded: the same index
    index.save(tmp_path / "lib")
    loaded = MotionIndex.load(tmp_path / "lib.json")
    assert loaded.entries == index.entries and np.array_equal(loaded.chunk_emb, index.chunk_emb)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.features, index.features))
    assert [h.id for h in searcher.search_text(loaded, query, k=3)] == [h.id for h in hits]


def test_pyramid_moments_without_a_head(models, library):
    searcher = Searcher(models["pyramid"], progress=False)
    assert not searcher.has_head
    index, _ = searcher.build_index([library / "long_turn.npy"])
    [best] = searcher.moments(index, "a person turns", k=1)
    assert best.method == "pyramid" and best.id == "long_turn"
    # the best window inside the motion's best chunk, by brute force over the same windows
    [hit] = searcher.search_text(index, "a person turns", k=1)
    first, stop = int(hit.start_s * FPS), int(hit.end_s * FPS)
    windows = first + M.pyramid_windows(stop - first)
    scores = searcher.embed_motions([index.features[0][s:e] for s, e in windows]) @ searcher.embed_texts(
        ["a person turns"])[0]
    w = int(np.argmax(scores))
    assert (best.start_s, best.end_s) == (windows[w, 0] / FPS, windows[w, 1] / FPS)
    assert best.score == pytest.approx(float(scores[w]), abs=1e-5)


def test_groups_of_motions_give_the_same_index_and_features_stay_on_disk(models, library, monkeypatch):
    """`add` embeds EMBED_GROUP motions at a time and writes their features to a scratch file:
    groups of one give the index of one group, also when a changed file is dropped in between."""
    from search import library as lib

    searcher = Searcher(models["head"], progress=False)
    whole, _ = searcher.build_index([library])
    monkeypatch.setattr(lib, "EMBED_GROUP", 1)
    grouped, _ = searcher.build_index([library])
    assert np.array_equal(grouped.chunk_owner, whole.chunk_owner) and np.array_equal(grouped.chunk_span, whole.chunk_span)
    # batches of other motions pad differently: the same embeddings up to float rounding
    assert np.allclose(grouped.chunk_emb, whole.chunk_emb, atol=1e-5, rtol=0)
    assert all(np.array_equal(a, b) for a, b in zip(grouped.features, whole.features))
    assert all(isinstance(f, np.memmap) for f in grouped.features)        # read back from disk, not held
    walking_bvh(library / "jump.bvh", n_frames=120, fps=30.0)              # changed: dropped, then re-added
    os.utime(library / "jump.bvh", (1, 1))
    added, _ = searcher.add(grouped, [library])
    assert added == 1 and [e["id"] for e in grouped.entries] == ["cmu/walk", "long_turn", "jump"]
    counts = np.bincount(grouped.chunk_owner, minlength=len(grouped))
    assert list(counts) == [len(M.chunk_windows(len(f), FPS, grouped.chunk_s, grouped.chunk_overlap))
                            for f in grouped.features]
    assert np.allclose(grouped.chunk_emb[grouped.chunk_owner == 1], whole.chunk_emb[whole.chunk_owner == 2], atol=1e-5)
    assert grouped.entries[2]["frames"] == len(grouped.features[2]) > whole.entries[1]["frames"]   # the new take


def test_incremental_add_and_another_models_index_is_refused(models, library, tmp_path, capsys):
    out = tmp_path / "lib"
    assert cli.main(["index", "--model", str(models["head"]), str(library / "cmu"), str(library / "jump.bvh"),
                     "-o", str(out), "--quiet"]) == 0
    assert "2 motions added, 2 in the index" in capsys.readouterr().out
    before = MotionIndex.load(out)
    # a new file and a changed one are embedded; the unchanged one keeps its embeddings bit for bit
    walking_bvh(library / "jump.bvh", n_frames=120, fps=30.0)
    os.utime(library / "jump.bvh", (1, 1))
    assert cli.main(["index", "--model", str(models["head"]), str(library), "-o", str(out), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "2 motions added, 3 in the index" in printed.out and "skipped {'bad_input': 1, 'motion_features': 1}" \
        in printed.out and "broken.bvh" in printed.err
    after = MotionIndex.load(out)
    assert [e["id"] for e in after.entries] == ["walk", "jump", "long_turn"]   # a file keeps its first id
    assert after.entries[1]["frames"] != before.entries[1]["frames"]
    walk = before.chunk_owner == 0
    assert np.array_equal(after.chunk_emb[after.chunk_owner == 0], before.chunk_emb[walk])
    # another file with a taken id gets a suffix and does not replace the first
    (tmp_path / "more").mkdir()
    walking_bvh(tmp_path / "more" / "jump.bvh", n_frames=60, fps=30.0)
    assert cli.main(["index", "--model", str(models["head"]), str(tmp_path / "more"), "-o", str(out), "--quiet"]) == 0
    assert "1 motions added, 4 in the index" in capsys.readouterr().out
    assert [e["id"] for e in MotionIndex.load(out).entries] == ["walk", "jump", "long_turn", "jump~2"]

    # the CLI's JSON lists, then another model's weights are refused with the fix
    assert cli.main(["query", str(out), "a person walks", "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and {"id", "path", "score", "start_s", "end_s"} <= set(hits[0])
    assert cli.main(["moments", str(out), "a person walks", "--motion-id", "long_turn", "-k", "2", "--json"]) == 0
    assert [m["id"] for m in json.loads(capsys.readouterr().out)] == ["long_turn", "long_turn"]
    assert cli.main(["query", str(out), "a person walks", "--model", str(models["other"])]) == 2
    err = capsys.readouterr().err
    assert "built with another model" in err and f"--model {models['other']}" in err
    with pytest.raises(SearchIndexError, match="holds 'humanml3d' features but the model reads 'trimo'"):
        Searcher(models["head"], progress=False).check(
            MotionIndex(str(models["head"]), after.fingerprint, "humanml3d"))
    assert cli.main(["moments", str(out), "a person walks", "--motion-id", "nowhere"]) == 2
    assert "no motion 'nowhere' in the index" in capsys.readouterr().err


def test_top_k_and_the_scale_benchmark_agree_with_sorting(capsys):
    """_top (argpartition) equals a stable full sort, ties included; the benchmark's own check
    (vectorized motion scores == a per-motion loop) passes on a small synthetic library."""
    from search.library import _top
    from tools import bench_search

    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.integers(0, 5, size=int(rng.integers(1, 40))).astype(np.float32)   # many ties
        k = int(rng.integers(1, 45))
        assert list(_top(scores, k)) == list(np.argsort(-scores, kind="stable")[:k])
    assert bench_search.main(["--motions", "300", "--repeats", "2"]) == 0
    printed = capsys.readouterr().out
    assert "numpy" in printed and "same top 5" in printed
