"""Evaluation figures (matplotlib, Agg backend: no display needed).

- `plot_localization`: start/end probabilities and highlight scores over a motion's time axis with
  the ground-truth moment shaded and the predicted one marked (the layout of the MLP paper's Fig. 4).
- `plot_retrieval_strip`: a text query above its top-k retrieved motions, each a row of stick-figure
  frames (render.stick) with its id and similarity; the ground truth is framed in green.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from render.stick import render_stick_figure  # noqa: E402


def plot_localization(p_start: np.ndarray, p_end: np.ndarray, highlight: np.ndarray, duration_s: float,
                      gt: tuple[float, float], pred: tuple[float, float] | None, query: str,
                      path: str | Path) -> Path:
    """One query's localization curves; snippet i is drawn at the centre of [i, i + 1) * D / T."""
    n = len(p_start)
    if not (len(p_end) == len(highlight) == n) or n == 0:
        raise ValueError(f"p_start, p_end and highlight must have the same non-zero length, got "
                         f"{len(p_start)}, {len(p_end)}, {len(highlight)}")
    t = (np.arange(n) + 0.5) * duration_s / n
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=110)
    ax.axvspan(gt[0], gt[1], color="tab:green", alpha=0.2, label=f"ground truth {gt[0]:.1f}-{gt[1]:.1f} s")
    ax.plot(t, p_start, color="tab:blue", label="$P_s$ (start)")
    ax.plot(t, p_end, color="tab:red", label="$P_e$ (end)")
    ax.set_xlim(0, duration_s)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, max(float(np.max(p_start)), float(np.max(p_end)), 1e-6) * 1.15)
    hl = ax.twinx()
    hl.plot(t, highlight, color="tab:gray", linestyle=":", label="highlight score")
    hl.set_ylim(0, 1.05)
    hl.set_ylabel("highlight")
    if pred is not None:
        for x in pred:
            ax.axvline(x, color="black", linestyle="--", linewidth=1)
        ax.plot([], [], color="black", linestyle="--", label=f"prediction {pred[0]:.1f}-{pred[1]:.1f} s")
    handles = ax.get_legend_handles_labels()
    extra = hl.get_legend_handles_labels()
    fig.legend(handles[0] + extra[0], handles[1] + extra[1], loc="lower center", ncol=5, fontsize=7, frameon=False)
    ax.set_title(textwrap.shorten(query, 90), fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, path)


def plot_retrieval_strip(query: str, items: list[tuple[str, float, np.ndarray, bool]], path: str | Path,
                         frames_per_item: int = 5, frame_size: int = 128) -> Path:
    """items: (id, similarity, joints (T, 22, 3), is_ground_truth) in ranked order."""
    if not items:
        raise ValueError("a retrieval strip needs at least one retrieved item")
    rows = len(items)
    fig, axes = plt.subplots(rows, frames_per_item, figsize=(1.6 * frames_per_item, 1.75 * rows + 0.5),
                             dpi=100, squeeze=False)
    for r, (key, score, joints, is_gt) in enumerate(items):
        joints = np.asarray(joints)
        picks = np.linspace(0, len(joints) - 1, frames_per_item).round().astype(int)
        frames = render_stick_figure(joints[picks], size=(frame_size, frame_size), line_width=2)
        for c, frame in enumerate(frames):
            ax = axes[r, c]
            ax.imshow(frame)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("tab:green" if is_gt else "0.7")
                spine.set_linewidth(3 if is_gt else 1)
        label = f"{r + 1}. {textwrap.shorten(key, 28)}\nsim {score:.3f}" + (" (GT)" if is_gt else "")
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(textwrap.fill(f"query: {query}", 80), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
