"""Stick-figure rendering, video writing (MP4 decoded back, GIF) and the trimo-preview CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures.mocap_builders import walking_bvh
from motion.importers import load_motion
from motion.features import joints_to_features
from render.stick import BACKGROUND, render_stick_figure, write_video
from tools.preview import main

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def walk() -> np.ndarray:
    return load_motion(FIXTURES / "cmu_walk_60fps.amc", fps=60.0).to_canonical()[:24]


def figure_pixels(frame: np.ndarray) -> np.ndarray:
    """(y, x) of saturated pixels: the red/blue limbs, not the grey floor or white background."""
    rgb = frame.astype(int)
    return np.argwhere(rgb.max(-1) - rgb.min(-1) > 60)


def test_frames_shape_motion_and_camera_follow(walk):
    frames = render_stick_figure(walk, size=(96, 128))
    assert frames.shape == (len(walk), 96, 128, 3) and frames.dtype == np.uint8
    change = np.abs(np.diff(frames.astype(int), axis=0)).sum(axis=(1, 2, 3))
    assert (change > 0).all()  # limbs swing and the floor slides
    for frame in frames[::6]:
        ys, xs = figure_pixels(frame).T
        assert abs(xs.mean() - 64) < 20  # the camera keeps the body near the centre
        assert ys.max() > 96 * 0.6 and ys.min() < 96 * 0.5  # feet low, shoulders high
    assert tuple(frames[0, 0, 0]) == BACKGROUND
    still = render_stick_figure(np.repeat(walk[:1], 3, axis=0), size=(96, 128))
    assert (still == still[0]).all()  # nothing moves when the pose does not


def test_mp4_decodes_to_right_count_and_size(tmp_path, walk):
    import decord

    frames = render_stick_figure(walk, size=(65, 81))  # odd sizes are padded to even for yuv420p
    path = write_video(frames, tmp_path / "walk.mp4", fps=20)
    reader = decord.VideoReader(str(path))
    assert len(reader) == len(walk)
    first = reader[0].asnumpy()
    assert first.shape == (66, 82, 3)
    assert np.abs(first[:65, :81].astype(int) - frames[0]).mean() < 12  # lossy, but the same picture
    assert abs(reader.get_avg_fps() - 20.0) < 1e-6


def test_gif_and_bad_inputs(tmp_path, walk):
    frames = render_stick_figure(walk[:5], size=(40, 40))
    path = write_video(frames, tmp_path / "walk.gif", fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 5 and gif.size == (40, 40)
    with pytest.raises(ValueError, match="unsupported video extension"):
        write_video(frames, tmp_path / "walk.avi")
    with pytest.raises(ValueError, match="expected \\(T, 22, 3\\)"):
        render_stick_figure(np.zeros((3, 24, 3)))


def test_preview_cli_on_joints_features_and_bvh(tmp_path, walk, capsys):
    import decord

    np.save(tmp_path / "j.npy", walk)
    np.save(tmp_path / "f.npy", joints_to_features(walk))
    bvh = walking_bvh(tmp_path / "w.bvh", n_frames=15)
    assert main([str(tmp_path / "j.npy"), "-o", str(tmp_path / "j.gif"), "--size", "48"]) == 0
    assert main([str(tmp_path / "f.npy"), "-o", str(tmp_path / "f.mp4"), "--size", "48"]) == 0
    assert main([str(bvh), "-o", str(tmp_path / "w.mp4"), "--size", "48"]) == 0
    with Image.open(tmp_path / "j.gif") as gif:
        assert gif.n_frames == len(walk)
    assert len(decord.VideoReader(str(tmp_path / "f.mp4"))) == len(walk) - 1  # features: T-1 frames
    assert len(decord.VideoReader(str(tmp_path / "w.mp4"))) == 10  # 15 frames at 30 fps -> 20 fps
    np.save(tmp_path / "bad.npy", np.zeros((4, 100)))
    assert main([str(tmp_path / "bad.npy"), "-o", str(tmp_path / "bad.mp4")]) == 1
    err = capsys.readouterr().err
    assert "bad.npy" in err and "neither joints (T, 22, 3) nor features (T, 263)" in err


def test_fixed_camera_shows_travel_and_the_legend_names_the_sides(walk):
    """follow=False: the camera stays, so the figure moves across the frame as the body walks;
    the legend's words are drawn in the sides' colours (left blue, right red)."""
    from render.stick import CHAIN_COLOURS

    frames = render_stick_figure(walk, size=(96, 128), follow=False)
    body = [figure_pixels(f)[figure_pixels(f)[:, 0] > 26] for f in (frames[0], frames[-1])]   # below the legend
    first, last = (np.concatenate([b[:, 1:], b[:, :1]], 1).mean(0) for b in body)
    assert np.linalg.norm(last - first) > 3                                    # pixels: the walk shows
    followed = render_stick_figure(walk, size=(96, 128))
    centres = [figure_pixels(f)[figure_pixels(f)[:, 0] > 26].mean(0) for f in (followed[0], followed[-1])]
    assert np.linalg.norm(body[1].mean(0) - body[0].mean(0)) > np.linalg.norm(centres[1] - centres[0])
    legend = frames[0, :26, :40].reshape(-1, 3)
    for colour in (CHAIN_COLOURS[1], CHAIN_COLOURS[0]):
        assert (np.abs(legend.astype(int) - colour).sum(-1) < 60).any()


def test_cli_start_end_and_fixed_camera(tmp_path, capsys):
    bvh = walking_bvh(tmp_path / "walk.bvh", n_frames=90, fps=30.0)
    out = tmp_path / "piece.mp4"
    assert main([str(bvh), "-o", str(out), "--start", "1.0", "--end", "2.0", "--fixed-camera", "--size", "64"]) == 0
    assert "wrote 20 frames at 20 fps" in capsys.readouterr().out          # one second of the 3 s take
    assert main([str(bvh), "-o", str(out), "--start", "5.0"]) == 1
    assert "leave no frame" in capsys.readouterr().err


def test_convert_a_piece_of_a_take(tmp_path):
    from tools import convert_mocap

    bvh = walking_bvh(tmp_path / "take.bvh", n_frames=90, fps=30.0)
    assert convert_mocap.main([str(bvh), "-o", str(tmp_path / "out"), "--start", "0.5", "--end", "2.5"]) == 0
    joints = np.load(tmp_path / "out" / "take.joints.npy")
    assert len(joints) == 40                                                   # 2 s at 20 fps
    assert convert_mocap.main([str(bvh), "-o", str(tmp_path / "none"), "--start", "4"]) == 1
