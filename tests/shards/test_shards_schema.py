"""Schema v1: member encoding, validation reasons, the index, and pickle-free decoding."""
import io
import json
import pickle

import numpy as np
import pytest

from shards.schema import (SCHEMA_VERSION, ShardEntry, ShardError, ShardIndex, decode_sample, encode_sample,
                           validate_sample)
from test_shards_common import make_sample


def roundtrip(sample):
    encoded = encode_sample(sample)
    return decode_sample({**encoded, "__url__": "mem"})


def test_encode_decode_roundtrip_is_exact():
    sample = make_sample(3, video=True)
    decoded, ignored = roundtrip(sample)
    assert ignored == []
    assert decoded["key"] == "toy/00003"
    np.testing.assert_array_equal(decoded["motion"], sample["motion"])
    np.testing.assert_array_equal(decoded["joints"], sample["joints"])
    assert decoded["motion"].dtype == np.float32 and decoded["meta"] == sample["meta"]
    assert decoded["video"] == sample["video"]


@pytest.mark.parametrize("change, reason", [
    (lambda s: s.update(key="toy/0.1"), "bad_key"),
    (lambda s: s.update(motion=s["motion"][:, :251]), "bad_shape"),
    (lambda s: s.update(motion=s["motion"].astype(np.int32)), "bad_shape"),
    (lambda s: s["motion"].__setitem__((3, 7), np.nan), "nonfinite"),
    (lambda s: s["joints"].__setitem__((0, 0, 0), np.inf), "nonfinite"),
    (lambda s: s.update(joints=s["joints"][:10]), "bad_shape"),
    (lambda s: s["meta"].update(texts=[{"text": "  ", "start": None, "end": None}]), "empty_caption"),
    (lambda s: s["meta"].update(texts=[{"text": "x", "start": 2.0, "end": 1.0}]), "bad_meta"),
    (lambda s: s["meta"].update(texts=[{"text": "x", "events": "not a list"}]), "bad_meta"),
    (lambda s: s["meta"].pop("split"), "missing_field"),
    (lambda s: s["meta"].update(fps=0), "missing_field"),
    (lambda s: s["meta"].update(moments=[{"text": "x", "start": 1.0}]), "bad_meta"),
])
def test_validate_sample_reasons(change, reason):
    sample = make_sample(1)
    change(sample)
    with pytest.raises(ShardError) as err:
        validate_sample(sample)
    assert err.value.reason == reason
    assert "toy/" in str(err.value) or reason == "bad_key"


def test_localization_sample_with_moments_only_is_valid():
    sample = make_sample(2, texts=[])
    sample["meta"]["moments"] = [{"text": "walks", "start": 0.5, "end": 1.5}]
    validate_sample(sample)


class CreatesFile:
    """Unpickling this calls open(path, 'w'): the file appears iff something unpickled it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_decode_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(CreatesFile(marker))
    object_npy = io.BytesIO()
    np.save(object_npy, np.array([CreatesFile(marker)], dtype=object), allow_pickle=True)
    encoded = encode_sample(make_sample(4))
    raw = {**encoded, "__url__": "mem", "extra.pyd": payload, "meta.pickle": payload}
    decoded, ignored = decode_sample(raw)
    assert sorted(ignored) == ["extra.pyd", "meta.pickle"]
    raw["motion.npy"] = object_npy.getvalue()
    with pytest.raises(ShardError) as err:
        decode_sample(raw)
    assert err.value.reason == "bad_npy"
    assert not marker.exists()


@pytest.mark.parametrize("member, data, reason", [
    ("motion.npy", b"\x93NUMPY garbage", "bad_npy"),
    ("meta.json", b"{not json", "bad_json"),
    ("meta.json", b"\xff\xfe", "bad_json"),
])
def test_decode_reasons(member, data, reason):
    raw = {**encode_sample(make_sample(5)), "__url__": "mem", member: data}
    with pytest.raises(ShardError) as err:
        decode_sample(raw)
    assert err.value.reason == reason


def test_missing_member():
    raw = {**encode_sample(make_sample(5)), "__url__": "mem"}
    del raw["meta.json"]
    with pytest.raises(ShardError, match="meta.json") as err:
        decode_sample(raw)
    assert err.value.reason == "missing_field"


def test_index_roundtrip_and_version_check(tmp_path):
    index = ShardIndex(shards=[ShardEntry("a.tar", 3, 100, 60), ShardEntry("b.tar", 2, 50, 40)], command="cmd")
    path = tmp_path / "shards.json"
    index.save(str(path))
    data = json.loads(path.read_text())
    assert data["total"] == 5 and data["schema_version"] == SCHEMA_VERSION
    assert ShardIndex.from_json(data) == index
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ShardError, match="schema version"):
        ShardIndex.from_json(data)
