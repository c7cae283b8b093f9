"""Snippet pooling, moment <-> span mapping and Eq. 13 decoding, checked against direct loops."""
import itertools

import numpy as np
import pytest
import torch

from modeling.localization import (decode_best_span, decode_topk_spans, indices_to_times, pool_snippets,
                                   span_labels, times_to_indices)


def test_pooling_averages_frames_into_min_f_s_snippets():
    gen = torch.Generator().manual_seed(0)
    lengths = [7, 23, 16, 3]
    S = 8
    frames = torch.randn(len(lengths), max(lengths), 5, generator=gen)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    snippets, snip_mask = pool_snippets(frames, mask, S)
    assert snippets.shape == (4, 8, 5)
    for b, f in enumerate(lengths):
        t = min(f, S)
        assert snip_mask[b].tolist() == [True] * t + [False] * (8 - t)
        groups = [[fr for fr in range(f) if fr * t // f == i] for i in range(t)]
        assert all(groups), "every snippet has at least one frame"
        for i, g in enumerate(groups):
            np.testing.assert_allclose(snippets[b, i].numpy(), frames[b, g].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    # F <= S keeps the frames as they are.
    torch.testing.assert_close(snippets[3, :3], frames[3, :3])
    # Padded frames carry no weight.
    changed = frames.clone()
    changed[~mask] = 1e6
    torch.testing.assert_close(pool_snippets(changed, mask, S)[0][snip_mask], snippets[snip_mask])


def test_pooling_rejects_empty_motion():
    with pytest.raises(ValueError, match="no valid frame"):
        pool_snippets(torch.zeros(2, 4, 3), torch.tensor([[True] * 4, [False] * 4]), 8)


def _brute_best_iou(start, end, duration, t):
    best, arg = -1.0, None
    for j in range(t):                  # order: smallest j, then smallest i wins ties
        for i in range(j + 1):
            s, e = i * duration / t, (j + 1) * duration / t
            inter = max(0.0, min(e, end) - max(s, start))
            iou = inter / (max(e, end) - min(s, start))
            if iou > best:
                best, arg = iou, (i, j)
    return arg


def test_times_to_indices_is_best_iou_span():
    rng = np.random.default_rng(1)
    n = 300
    t = torch.tensor(rng.integers(1, 30, n))
    duration = torch.tensor(rng.uniform(1.0, 40.0, n))
    a, b = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    start = np.minimum(a, b)
    end = np.minimum(np.maximum(a, b) + 1e-3, 1.0)
    # Moments on the snippet grid (ties between neighbours) and moments inside one snippet.
    grid = rng.integers(0, t.numpy(), n) / t.numpy()
    start[:100], end[:100] = grid[:100], np.minimum(grid[:100] + rng.integers(1, 4, 100) / t.numpy()[:100], 1.0)
    start[100:150] = grid[100:150] + 0.3 / t.numpy()[100:150]
    end[100:150] = start[100:150] + 0.2 / t.numpy()[100:150]
    start, end = torch.tensor(start) * duration, torch.tensor(end) * duration
    i, j = times_to_indices(start, end, duration, t)
    for k in range(n):
        assert (int(i[k]), int(j[k])) == _brute_best_iou(float(start[k]), float(end[k]), float(duration[k]), int(t[k]))


def test_indices_and_times_round_trip_on_the_grid():
    t = torch.tensor([10, 256, 7])
    duration = torch.tensor([5.0, 30.0, 2.1], dtype=torch.float64)
    i, j = torch.tensor([2, 100, 0]), torch.tensor([5, 100, 6])
    s, e = indices_to_times(i, j, t, duration)
    np.testing.assert_allclose(s.numpy(), [1.0, 100 * 30 / 256, 0.0])
    np.testing.assert_allclose(e.numpy(), [3.0, 101 * 30 / 256, 2.1])
    i2, j2 = times_to_indices(s, e, duration, t)
    assert i2.tolist() == i.tolist() and j2.tolist() == j.tolist()


def test_bad_moment_is_named():
    with pytest.raises(ValueError, match=r"samples \[1\]"):
        times_to_indices(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.5]), torch.tensor([3.0, 3.0]),
                         torch.tensor([4, 4]))


def test_span_labels():
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    s, e, h = span_labels(torch.tensor([1, 0]), torch.tensor([3, 3]), mask)
    assert s.tolist() == [[0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    assert e.tolist() == [[0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0]]
    assert h.tolist() == [[0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0]]


def _brute_pairs(ps, pe, t_valid, max_span):
    """All allowed pairs sorted by (score desc, j asc, i asc), with float32 products as the decoder uses."""
    pairs = []
    for j in range(t_valid):
        for i in range(j + 1):
            if max_span is not None and j - i >= max_span:
                continue
            pairs.append((float(np.float32(ps[i]) * np.float32(pe[j])), j, i))
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    return pairs


def _random_probs(gen, b, t, ties):
    if ties:   # few distinct values: many exact ties
        x = torch.randint(0, 4, (b, t), generator=gen).float()
        x[:, 0] += 0.0
        return x / 4.0
    return torch.rand(b, t, generator=gen)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("max_span", [None, 1, 2, 3, 5, 9, 12, 40])
def test_best_span_equals_brute_force(ties, max_span):
    gen = torch.Generator().manual_seed(7 + (max_span or 0) + 100 * ties)
    b, t = 24, 12
    ps, pe = _random_probs(gen, b, t, ties), _random_probs(gen, b, t, ties)
    lengths = torch.randint(1, t + 1, (b,), generator=gen)
    mask = torch.arange(t)[None] < lengths[:, None]
    i, j, score = decode_best_span(ps, pe, mask, max_span)
    for k in range(b):
        best = _brute_pairs(ps[k].numpy(), pe[k].numpy(), int(lengths[k]), max_span)[0]
        assert (int(j[k]), int(i[k])) == best[1:], (k, best)
        assert float(score[k]) == best[0]
        assert j[k] - i[k] < (max_span or t + 1) and i[k] <= j[k] < lengths[k]


@pytest.mark.parametrize("max_span", [None, 3])
def test_topk_is_consistent_and_distinct(max_span):
    gen = torch.Generator().manual_seed(3)
    b, t, k = 10, 9, 12
    for ties in (False, True):
        ps, pe = _random_probs(gen, b, t, ties), _random_probs(gen, b, t, ties)
        lengths = torch.tensor([9, 9, 1, 2, 5, 9, 3, 4, 8, 6])
        mask = torch.arange(t)[None] < lengths[:, None]
        ti, tj, ts = decode_topk_spans(ps, pe, k, mask, max_span)
        bi, bj, bs = decode_best_span(ps, pe, mask, max_span)
        assert torch.equal(ti[:, 0], bi) and torch.equal(tj[:, 0], bj) and torch.equal(ts[:, 0], bs)
        for n in range(b):
            brute = _brute_pairs(ps[n].numpy(), pe[n].numpy(), int(lengths[n]), max_span)[:k]
            got = [(float(ts[n, r]), int(tj[n, r]), int(ti[n, r])) for r in range(len(brute))]
            assert got == brute
            assert len(set(got)) == len(got)
            # Fewer valid spans than k: the rest is padding.
            assert (ti[n, len(brute):] == -1).all() and (ts[n, len(brute):] == 0).all()


def test_decode_ignores_masked_snippets():
    ps = torch.tensor([[0.1, 0.2, 0.7, 0.0]])
    pe = torch.tensor([[0.1, 0.3, 0.1, 0.5]])
    mask = torch.tensor([[True, True, True, False]])
    i, j, s = decode_best_span(ps, pe, mask)
    assert (int(i), int(j)) == (2, 2) and float(s) == pytest.approx(0.07)
    brute = max(((ps[0, a] * pe[0, c]).item(), a, c) for a, c in itertools.product(range(3), range(3)) if a <= c)
    assert brute[1:] == (2, 2)
