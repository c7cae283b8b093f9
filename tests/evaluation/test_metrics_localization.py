"""Localization (Normal / Assigned), temporal pyramid and corpus moment retrieval metrics, by hand."""
import numpy as np
import pytest

from evaluation import protocols as M


def test_temporal_iou_hand_values():
    pred = np.array([[0.0, 2.0], [1.0, 3.0], [0.0, 1.0], [2.0, 2.0], [0.0, 4.0]])
    gt = np.array([[1.0, 3.0], [1.0, 3.0], [2.0, 3.0], [2.0, 2.0], [1.0, 2.0]])
    # [0,2]vs[1,3]: 1/3; identical: 1; disjoint: 0; both zero length: 0; [0,4] contains [1,2]: 1/4
    np.testing.assert_allclose(M.temporal_iou(pred, gt), [1 / 3, 1.0, 0.0, 0.0, 0.25])


def test_iou_metrics_thresholds_are_inclusive():
    ious = np.array([0.5, 0.69, 0.7, 0.95])
    out = M.iou_metrics(ious)
    assert out == {"IoU@0.5": 100.0, "IoU@0.7": 50.0, "IoU@0.9": 25.0, "mIoU": pytest.approx(71.0)}
    with pytest.raises(ValueError):
        M.iou_metrics(np.array([]))


def test_assigned_with_several_acceptable_moments():
    # motion A has 4 queries: 0, 1, 2 say the same thing, 3 is different; motion B repeats query 0's text
    motion_ids = ["A", "A", "A", "A", "B"]
    gt = np.array([[0.0, 2.0], [4.0, 6.0], [8.0, 10.0], [4.0, 6.0], [0.0, 2.0]])
    same = np.array([1.0, 0.0])
    emb = np.stack([same, same, same + [0.0, 0.1], [0.0, 1.0], same])
    # rescaled similarity of emb 2 with emb 0: (cos(5.7 deg) + 1) / 2 = 0.9975 -> above 0.995
    acceptable = M.assigned_moments(motion_ids, gt, emb, threshold=0.995)
    np.testing.assert_array_equal(acceptable[0], [[0, 2], [4, 6], [8, 10]])   # own first, then 1 and 2
    np.testing.assert_array_equal(acceptable[3], [[4, 6]])                     # nothing similar
    np.testing.assert_array_equal(acceptable[4], [[0, 2]])                     # other motion is not used
    pred = np.array([[8.0, 10.0], [4.5, 6.0], [0.0, 1.0], [0.0, 2.0], [1.0, 2.0]])
    normal = M.temporal_iou(pred, gt)
    assigned = M.best_iou(pred, acceptable)
    np.testing.assert_allclose(normal, [0.0, 0.75, 0.0, 0.0, 0.5])
    # q0 hits query 2's moment exactly; q2 gets 0.5 from query 0's [0, 2]; q1 keeps 0.75
    np.testing.assert_allclose(assigned, [1.0, 0.75, 0.5, 0.0, 0.5])
    out = M.localization_protocols(pred, gt, motion_ids, emb, threshold=0.995)
    assert out["normal"]["IoU@0.5"] == 40.0 and out["assigned"]["IoU@0.5"] == 80.0
    assert out["assigned"]["IoU@0.9"] == 20.0
    assert out["assigned"]["mIoU"] == pytest.approx(100 * np.mean([1.0, 0.75, 0.5, 0.0, 0.5]))
    # orthogonal texts have (0 + 1) / 2 = 0.5: a threshold of 0.4 admits every query of motion A
    loose = M.assigned_moments(motion_ids, gt, emb, threshold=0.4)
    assert len(loose[3]) == 4


def test_pyramid_windows_enumeration():
    wins = M.pyramid_windows(30, min_len=20, max_len=200, stride=5)
    # length 20: starts 0,5,10; length 25: starts 0,5; length 30: start 0
    assert wins.tolist() == [[0, 20], [5, 25], [10, 30], [0, 25], [5, 30], [0, 30]]
    assert M.pyramid_windows(12).tolist() == [[0, 12]]
    long = M.pyramid_windows(300)
    lengths = long[:, 1] - long[:, 0]
    assert lengths.min() == 20 and lengths.max() == 200 and set(np.unique(lengths % 5)) == {0}
    assert set(np.unique(long[:, 0] % 5)) == {0} and long[:, 1].max() <= 300
    expected = sum(len(range(0, 300 - n + 1, 5)) for n in range(20, 201, 5))
    assert len(long) == expected
    assert M.select_window(np.array([0.1, 0.9, 0.9, 0.2]), long[:4]) == tuple(long[1])


def test_chunk_windows_ten_seconds_ninety_percent_overlap():
    chunks = M.chunk_windows(n_frames=250, fps=20.0)        # 12.5 s: chunks of 200 frames, hop 20
    assert chunks.tolist() == [[0, 200], [20, 220], [40, 240], [50, 250]]
    assert M.chunk_windows(150, 20.0).tolist() == [[0, 150]]
    assert M.chunk_windows(240, 20.0).tolist() == [[0, 200], [20, 220], [40, 240]]


def test_motion_scores_take_the_best_chunk_of_each_motion():
    # 2 queries; motion 0 has chunks 0-2, motion 1 chunk 3, motion 2 chunks 4-5
    sim = np.array([[0.1, 0.7, 0.3, 0.2, 0.9, -0.5],
                    [0.4, 0.0, 0.0, 0.6, -0.1, -0.2]])
    np.testing.assert_array_equal(M.motion_scores(sim, [0, 3, 4]), [[0.7, 0.2, 0.9], [0.4, 0.6, -0.1]])


def test_dcg_hand_values_and_ideal_reference():
    assert M.dcg_at_n(np.array([1.0, 0.0, 0.5]), 3) == pytest.approx(1.0 + 0.0 + 0.5 / 2.0)
    assert M.dcg_at_n(np.array([0.3, 0.6]), 1) == pytest.approx(0.3)
    assert M.dcg_at_n(np.array([1.0, 1.0, 1.0]), 3) == pytest.approx(1 + 1 / np.log2(3) + 0.5)
    # MLP Table VIII's Ideal DCG row
    assert round(M.ideal_dcg(10), 2) == 4.54
    assert round(M.ideal_dcg(50), 2) == 12.90
    assert round(M.ideal_dcg(100), 2) == 20.94


def test_corpus_ranking_and_recall():
    r = np.array([0.9, 0.1, 0.5])
    assert M.top_motions(r, 2).tolist() == [0, 2]
    motion = np.array([0, 0, 2, 2])
    spans = np.array([[0.0, 1.0], [2.0, 4.0], [1.0, 3.0], [5.0, 6.0]])
    p_se = np.array([0.2, 0.1, 0.5, 0.4])
    # lambda 0: order by p_se alone; lambda 5: exp(5 * 0.9) = 90.0 vs exp(2.5) = 12.2 favours motion 0
    m0, s0, sc0 = M.rank_candidates(motion, spans, p_se, r, lam=0.0)
    assert m0.tolist() == [2, 2, 0, 0] and sc0.tolist() == [0.5, 0.4, 0.2, 0.1]
    m5, s5, sc5 = M.rank_candidates(motion, spans, p_se, r, lam=5.0)
    assert m5.tolist() == [0, 0, 2, 2]
    np.testing.assert_allclose(sc5, [0.2 * np.exp(4.5), 0.1 * np.exp(4.5), 0.5 * np.exp(2.5), 0.4 * np.exp(2.5)])
    # ground truth: motion 2, moment [1, 3]; under lambda 5 it is at rank 3
    hits = M.corpus_hits(m5, s5, gt_motion=2, gt_span=np.array([1.0, 3.0]), ns=(1, 2, 3), ious=(0.5, 0.7))
    assert hits == {"R@1,IoU@0.5": False, "R@2,IoU@0.5": False, "R@3,IoU@0.5": True,
                    "R@1,IoU@0.7": False, "R@2,IoU@0.7": False, "R@3,IoU@0.7": True}
    # a moment of the right span on the wrong motion never counts
    hits = M.corpus_hits(m5, s5, gt_motion=1, gt_span=np.array([1.0, 3.0]), ns=(4,), ious=(0.5,))
    assert hits == {"R@4,IoU@0.5": False}
    # IoU 0.6 passes 0.5 but not 0.7
    hits = M.corpus_hits(np.array([2]), np.array([[1.0, 2.5]]), 2, np.array([1.0, 3.5]), ns=(1,), ious=(0.5, 0.7))
    assert hits == {"R@1,IoU@0.5": True, "R@1,IoU@0.7": False}
