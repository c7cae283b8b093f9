"""mp4 encode (PyAV libx264) and uniform-frame decode (PyAV, decord with PyAV fallback)."""
import numpy as np
import pytest

from shards.schema import ShardError
from shards.video_io import decode_mp4, encode_mp4, resize_frames, uniform_indices
from test_shards_common import ramp_video


def brightness_to_index(frames):
    return np.round((frames.reshape(len(frames), -1).mean(1) - 16) / 8).astype(int)


def test_uniform_indices_are_segment_centres():
    for n, k, first in [(20, 8, 0), (7, 8, 3), (100, 8, 10), (1, 4, 0)]:
        expected = [first + int((i + 0.5) * n / k) for i in range(k)]
        assert uniform_indices(n, k, first).tolist() == expected


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_decode_samples_uniformly(backend):
    data = ramp_video(20)
    frames = decode_mp4(data, num_frames=8, size=None, backend=backend)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8
    assert brightness_to_index(frames).tolist() == uniform_indices(20, 8).tolist()
    # a span in seconds: frames [5, 15) at 20 fps
    frames = decode_mp4(data, num_frames=4, size=None, start=0.25, end=0.75, backend=backend)
    assert brightness_to_index(frames).tolist() == uniform_indices(10, 4, 5).tolist()


def test_decord_falls_back_to_pyav_on_odd_width():
    # decord 0.6 fails on widths that are not a multiple of 32; the PyAV fallback must answer
    frames = np.stack([np.full((16, 48, 3), 8 * t + 16, np.uint8) for t in range(10)])
    out = decode_mp4(encode_mp4(frames), num_frames=5, size=None, backend="decord")
    assert out.shape == (5, 16, 48, 3)
    assert brightness_to_index(out).tolist() == uniform_indices(10, 5).tolist()


def test_resize_keeps_constant_frames_constant():
    frames = np.full((2, 32, 48, 3), 77, np.uint8)
    out = resize_frames(frames, (24, 20))
    assert out.shape == (2, 24, 20, 3) and (out == 77).all()


@pytest.mark.parametrize("data", [b"", b"not an mp4 at all" * 10, None])
def test_undecodable_bytes_raise_bad_video(data):
    data = ramp_video(8)[:300] if data is None else data
    with pytest.raises(ShardError) as err:
        decode_mp4(data, backend="pyav")
    assert err.value.reason == "bad_video"


def test_encode_rejects_odd_size():
    with pytest.raises(ShardError, match="even"):
        encode_mp4(np.zeros((2, 15, 16, 3), np.uint8))


def test_single_thread_rgb_conversion_matches_the_default_and_survives_fork():
    """The decoder converts frames to RGB on one thread: the frames must be exactly those of
    PyAV's default conversion, for videos of changing sizes, also in a forked loader worker."""
    import io
    import multiprocessing

    import av

    rng = np.random.default_rng(0)
    videos = [encode_mp4(rng.integers(0, 255, (6, h, w, 3), dtype=np.uint8)) for h, w in
              [(32, 32), (48, 64), (16, 96)]]

    def direct(data):
        with av.open(io.BytesIO(data)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return np.stack([frames[i] for i in uniform_indices(len(frames), 4)])

    for video in videos:
        assert np.array_equal(decode_mp4(video, num_frames=4, size=None), direct(video))
    with multiprocessing.get_context("fork").Pool(1) as pool:
        forked = pool.map_async(_decode_four, videos).get(timeout=60)
    assert all(np.array_equal(f, direct(v)) for f, v in zip(forked, videos))


def _decode_four(data):
    return decode_mp4(data, num_frames=4, size=None)
