"""Retrieval metrics (TMR's four protocols) and CAR against hand-computed examples and brute force."""
import numpy as np
import pytest

from evaluation import protocols as M


def brute_force_rank(row: np.ndarray, gt_score: float) -> float:
    """Average of the 1-based positions holding gt_score in the descending sort (TMR's averaging)."""
    ordered = np.sort(row)[::-1]
    return float(np.mean(np.flatnonzero(ordered == gt_score) + 1))


def test_ranks_without_ties():
    sim = np.array([[0.9, 0.1, 0.2],
                    [0.8, 0.5, 0.1],
                    [0.3, 0.7, 0.6]])
    # query 0: gt 0.9 best -> 1; query 1: 0.5 after 0.8 -> 2; query 2: 0.6 after 0.7 -> 2
    np.testing.assert_array_equal(M.retrieval_ranks(sim), [1.0, 2.0, 2.0])
    # column view (gallery -> query direction): column 0 has 0.9 best, column 1: 0.5 after 0.7, column 2: 0.6 best
    np.testing.assert_array_equal(M.retrieval_ranks(sim.T), [1.0, 2.0, 1.0])


def test_ties_are_averaged_and_recall_uses_tmr_rule():
    sim = np.array([[0.5, 0.5, 0.1, 0.0],     # gt tied with one other at the top -> (1 + 2) / 2 = 1.5
                    [0.9, 0.4, 0.4, 0.4],     # one better, three tied -> 1 + (3 + 1) / 2 = 3
                    [0.2, 0.2, 0.2, 0.2],     # all four tied -> 2.5
                    [0.0, 0.0, 0.0, 1.0]])    # best -> 1
    ranks = M.retrieval_ranks(sim)
    np.testing.assert_array_equal(ranks, [1.5, 3.0, 2.5, 1.0])
    # TMR counts rank - 1 < k: 1.5 counts for R@1, 2.5 for R@2, 3.0 does not for R@2
    assert M.recall_at_k(ranks, 1) == 50.0
    assert M.recall_at_k(ranks, 2) == 75.0
    assert M.recall_at_k(ranks, 3) == 100.0
    assert M.median_rank(ranks) == 2.0
    out = M.rank_metrics(ranks)
    assert list(out) == ["R@1", "R@2", "R@3", "R@5", "R@10", "MedR"]


def test_ranks_match_brute_force_on_random_ties():
    rng = np.random.default_rng(3)
    sim = rng.integers(0, 4, size=(40, 40)).astype(float) / 4   # many ties
    ranks = M.retrieval_ranks(sim)
    expected = [brute_force_rank(sim[i], sim[i, i]) for i in range(40)]
    np.testing.assert_allclose(ranks, expected)


def test_threshold_rule_best_rank_among_similar_items():
    sim = np.array([[0.2, 0.9, 0.5],
                    [0.1, 0.3, 0.8],
                    [0.4, 0.6, 0.7]])
    # captions 0 and 1 mean the same (cos 1.0 -> 1.0 > 0.95), caption 2 is orthogonal (0.5)
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pos = M.threshold_positives(emb, 0.95)
    np.testing.assert_array_equal(pos, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    # without threshold: q0 gt 0.2 is last (3), q1 gt 0.3 is 2nd, q2 0.7 is 1st
    np.testing.assert_array_equal(M.retrieval_ranks(sim), [3.0, 2.0, 1.0])
    # with it: q0 may take item 1 (0.9 -> rank 1); q1 may take item 0 (0.1) or 1 (0.3): best is 0.3 -> 2
    np.testing.assert_array_equal(M.retrieval_ranks(sim, pos), [1.0, 2.0, 1.0])


def test_threshold_is_strict_on_rescaled_scale():
    # cos = 0.9 -> (0.9 + 1) / 2 = 0.95: not above 0.95; cos 0.92 -> 0.96 is
    a = np.array([1.0, 0.0])
    emb = np.stack([a, [0.9, np.sqrt(1 - 0.81)], [0.92, np.sqrt(1 - 0.92 ** 2)]])
    pos = M.threshold_positives(emb, 0.95)
    assert not pos[0, 1] and pos[0, 2]
    assert M.threshold_positives(emb, 0.9)[0, 1]           # LAVIMO's looser threshold keeps it
    with pytest.raises(ValueError, match="scale"):
        M.threshold_positives(emb, 1.5)


def test_threshold_ties_average_over_the_best_positive_score():
    sim = np.array([[0.1, 0.6, 0.6], [0.0, 0.5, 0.2], [0.3, 0.2, 0.9]])
    pos = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)
    # q0: best positive 0.6 (item 1), tied with item 2 at the top -> 1.5
    np.testing.assert_array_equal(M.retrieval_ranks(sim, pos), [1.5, 1.0, 1.0])


def test_small_batches_shuffle_sorted_ids_with_numpy_seed_0_and_drop_remainder():
    rng = np.random.default_rng(0)
    ids = [f"id{v:03d}" for v in rng.permutation(70)]          # unsorted on input
    batches = M.small_batches(ids, batch_size=32, seed=0)
    assert len(batches) == 2 and all(len(b) == 32 for b in batches)   # 70 = 2 x 32 + 6 dropped
    # TMR: keyids = sorted(ids); idx = arange(N); np.random.seed(0); np.random.shuffle(idx)
    keyids = sorted(ids)
    idx = np.arange(70)
    np.random.seed(0)
    np.random.shuffle(idx)
    for b in range(2):
        assert [ids[i] for i in batches[b]] == [keyids[j] for j in idx[32 * b:32 * (b + 1)]]
    used = np.concatenate(batches)
    assert len(set(used.tolist())) == 64


def test_small_batch_metrics_average_per_batch():
    ids = [f"{i:02d}" for i in range(8)]
    sim = np.eye(8)
    sim[1, 0] = 2.0        # query 1 loses to item 0: rank 2 when both are in its batch
    batches = [np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7])]
    fwd, bwd = M.small_batch_metrics(sim, batches)
    # batch 1: ranks [1, 2, 1, 1] -> R@1 75; batch 2: all 1 -> 100; mean 87.5
    assert fwd["R@1"] == 87.5 and fwd["R@2"] == 100.0
    assert fwd["MedR"] == 1.0
    # backward (item -> query): column 0 has 2.0 at row 1 above its own 1.0 -> rank 2
    assert bwd["R@1"] == 87.5
    # the split of the real protocol on 8 ids with batch 4
    got = M.small_batches(ids, 4, 0)
    assert len(got) == 2
    fwd2, _ = M.small_batch_metrics(sim, got)
    together = any({0, 1} <= set(b.tolist()) for b in got)
    assert fwd2["R@1"] == (87.5 if together else 100.0)


def test_dissimilar_selection_is_deterministic_max_min():
    # three clusters of near-duplicates; picking 3 must take one of each
    base = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    rng = np.random.default_rng(1)
    emb = np.concatenate([base[c] + 0.01 * rng.standard_normal((4, 3)) for c in range(3)])
    ids = [f"c{c}_{i}" for c in range(3) for i in range(4)]
    picked = M.select_dissimilar(emb, ids, n=3)
    assert sorted(i // 4 for i in picked) == [0, 1, 2]
    # same answer whatever the input order
    perm = rng.permutation(12)
    picked_perm = M.select_dissimilar(emb[perm], [ids[p] for p in perm], n=3)
    assert [ids[perm[i]] for i in picked_perm] == [ids[i] for i in picked]
    assert M.select_dissimilar(emb, ids, n=3) == picked


def test_dissimilar_selection_hand_example_and_brute_force_greedy():
    # 2-d unit vectors at angles; mean direction is ~45 deg; item at 180 deg is the farthest
    angles = np.radians([0, 10, 45, 90, 180])
    emb = np.stack([np.cos(angles), np.sin(angles)], 1)
    ids = ["a", "b", "c", "d", "e"]
    picked = M.select_dissimilar(emb, ids, n=3)
    # first: lowest mean cosine -> e (180 deg); next: lowest cosine to e: a (cos 180 = -1) before
    # b (-0.98), c (-0.71), d (0); then max cosine to {e, a}: b 0.98, c 0.71, d 0.0 -> d
    assert [ids[i] for i in picked] == ["e", "a", "d"]
    assert M.select_dissimilar(emb, ids, n=10) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="unique"):
        M.select_dissimilar(emb, ["a", "a", "c", "d", "e"], n=2)


def test_tmr_protocols_on_perfect_and_reversed_matrices():
    n = 40
    ids = [f"{i:03d}" for i in range(n)]
    emb = np.eye(n)
    perfect = M.tmr_protocols(np.eye(n), ids, emb, dissimilar=list(range(10)), batch_size=32)
    for protocol in ("all", "all_threshold", "dissimilar", "small_batches"):
        for direction in perfect[protocol]:
            assert direction["R@1"] == 100.0 and direction["MedR"] == 1.0
    worst = M.tmr_protocols(-np.eye(n), ids, emb, dissimilar=list(range(10)), batch_size=32)
    assert worst["all"][0]["R@10"] == 0.0 and worst["all"][0]["MedR"] == n
    assert worst["dissimilar"][0]["MedR"] == 10 and worst["small_batches"][0]["MedR"] == 32
    with pytest.raises(ValueError, match="does not match"):
        M.tmr_protocols(np.eye(3), ids, emb)


def test_ranks_reject_bad_matrices():
    with pytest.raises(ValueError, match="gallery"):
        M.retrieval_ranks(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        M.retrieval_ranks(np.array([[np.nan, 0.0], [0.0, 1.0]]))


def test_rectangular_gallery_with_extra_columns():
    # motion -> text with 2 shuffled captions appended: the shuffled one of motion 0 wins
    sim = np.array([[0.5, 0.1, 0.7, 0.0],
                    [0.2, 0.9, 0.1, 0.3]])
    np.testing.assert_array_equal(M.retrieval_ranks(sim), [2.0, 1.0])


def test_car_accuracy_and_item_selection():
    assert M.car_accuracy(np.array([0.5, 0.2, 0.3, 0.4]), np.array([0.4, 0.3, 0.3, 0.1])) == 50.0  # tie is not a win
    with pytest.raises(ValueError):
        M.car_accuracy(np.zeros(2), np.zeros(3))
    captions = ["a person walks forward then sits down",
                "a person jumps",
                "a person waves then waves",
                "a person runs, then jumps and then crouches"]
    events = [["a person walks forward", "a person sits down"], ["a person jumps"],
              ["a person waves", "a person waves"], ["a person runs", "a person jumps", "a person crouches"], None]
    items = M.car_items(captions + ["a person spins"], events, seed=0)
    assert items.index == [0, 3]
    assert items.single_event == 2 and items.unshuffleable == 1     # one event, or none stored
    assert items.ordered[0] == "a person walks forward. a person sits down."
    assert items.shuffled[0] == "a person sits down. a person walks forward."
    assert items.shuffled[1] != items.ordered[1]
    sentences = lambda text: sorted(text.rstrip(".").split(". "))  # noqa: E731
    assert sentences(items.shuffled[1]) == sentences(items.ordered[1])   # same events, other order
    again = M.car_items(captions + ["a person spins"], events, seed=0)
    assert again.shuffled == items.shuffled


def test_small_batches_left_out_when_set_is_smaller_than_a_batch():
    ids = [f"{i}" for i in range(5)]
    out = M.tmr_protocols(np.eye(5), ids, np.eye(5), dissimilar=[0, 1, 2], batch_size=32)
    assert set(out) == {"all", "all_threshold", "dissimilar"}
    with pytest.raises(ValueError, match="no full batch"):
        M.small_batch_metrics(np.eye(5), M.small_batches(ids, 32))
