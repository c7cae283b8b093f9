"""shards.tar_members reads what tarfile writes (ustar, GNU, pax; long and non-ASCII names) from a
stream and from memory alike, and the shard reader groups members like webdataset, for mapped
local shards, streamed ones and gzip shards, which go through tarfile."""
import gzip
import io
import tarfile

import numpy as np
import pytest

from shards.reader import iter_raw_shard
from shards.schema import load_npy_bytes
from shards.tar_members import TarReadError, iter_tar_buffer, iter_tar_members

LONG = "deep/" * 30 + "sample.motion.npy"  # > 100 characters: needs a long-name extension


def make_tar(fmt, members, mtime=0):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, "a.txt"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


MEMBERS = [("dir", b"", "dir"), ("a.txt", b"hello", "file"), ("empty.bin", b"", "file"),
           ("lnk", b"", "link"), (LONG, bytes(range(256)) * 3, "file"), ("x/\u00e9t\u00e9.json", b"{}", "file"),
           ("__meta__", b"skip me", "file"), ("block.bin", b"z" * 512, "file")]
READERS = {"stream": lambda data, **kw: iter_tar_members(io.BytesIO(data), **kw),
           "buffer": lambda data, **kw: iter_tar_buffer(data, **kw)}
EXPECTED = [("a.txt", b"hello"), ("empty.bin", b""), (LONG, bytes(range(256)) * 3), ("x/\u00e9t\u00e9.json", b"{}"),
            ("block.bin", b"z" * 512)]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_match_tarfile(fmt, reader):
    read = READERS[reader]
    members = MEMBERS if fmt != tarfile.USTAR_FORMAT else [m for m in MEMBERS if len(m[0]) < 100 or "/" in m[0][:155]]
    data = make_tar(fmt, members, mtime=0.5)  # a float mtime makes tarfile write pax headers
    got = [(name, bytes(body)) for name, body in read(data)]
    direct = [(m.name, tarfile.open(fileobj=io.BytesIO(data)).extractfile(m.name).read())
              for m in tarfile.open(fileobj=io.BytesIO(data)) if m.isreg() and m.name != "__meta__"]
    assert got == direct
    assert [n for n, _ in got] == [n for n, _ in EXPECTED if n in {m[0] for m in members}]
    # select skips a member's data without losing the position in the stream
    assert [n for n, _ in read(data, select=lambda n: n.endswith(".bin"))] == \
        ["empty.bin", "block.bin"]


@pytest.mark.parametrize("reader", READERS)
def test_damage_raises_instead_of_returning_garbage(reader):
    read = READERS[reader]
    data = bytearray(make_tar(tarfile.PAX_FORMAT, MEMBERS, mtime=0.5))
    with pytest.raises(TarReadError, match="empty file"):
        list(read(b""))
    flipped = bytearray(data)
    flipped[5] ^= 1  # inside the first header: its checksum no longer matches
    with pytest.raises(TarReadError, match="checksum"):
        list(read(bytes(flipped)))
    cut = bytes(data[:len(data) // 2 + 100])
    names = []
    with pytest.raises(TarReadError, match="unexpected end of data"):
        for name, _ in read(cut):
            names.append(name)
    assert names and names == [n for n, _ in EXPECTED][:len(names)]


def test_reader_groups_members_and_reads_gzip_shards(tmp_path):
    members = [("s/0001.motion.npy", b"m1", "file"), ("s/0001.meta.json", b"j1", "file"),
               ("s/0002.MOTION.NPY", b"m2", "file"), ("s/0002.motion.npy", b"dup", "file"),
               ("s/0003.meta.json", b"j3", "file")]
    plain = make_tar(tarfile.PAX_FORMAT, members, mtime=0.5)
    (tmp_path / "a.tar").write_bytes(plain)
    (tmp_path / "a.tar.gz").write_bytes(gzip.compress(plain))
    plain_path = tmp_path / "a.tar"
    # mapped (a local path, file://), streamed (pipe:) and through tarfile (gzip)
    for url in (str(plain_path), f"file://{plain_path}", f"pipe:cat {plain_path}", str(tmp_path / "a.tar.gz")):
        errors = []
        raws = list(iter_raw_shard(url, errors))
        assert [{k: v if k.startswith("__") else bytes(v) for k, v in r.items()} for r in raws] == [
            {"__key__": "s/0001", "__url__": url, "motion.npy": b"m1", "meta.json": b"j1"},
            {"__key__": "s/0002", "__url__": url, "motion.npy": b"m2"},
            {"__key__": "s/0003", "__url__": url, "meta.json": b"j3"}]
        assert len(errors) == 1 and "duplicate file name" in errors[0]
    errors = []
    assert list(iter_raw_shard(str(tmp_path / "missing.tar"), errors)) == []
    assert len(errors) == 1 and "missing.tar" in errors[0] and "No such file" in errors[0]
    errors = []
    raws = list(iter_raw_shard(str(tmp_path / "a.tar"), errors, members=("meta.json",)))
    assert [sorted(r) for r in raws] == [["__key__", "__url__", "meta.json"], ["__key__", "__url__", "meta.json"]]


def test_arrays_of_a_mapped_shard_are_writable_copies_on_write(tmp_path):
    """Decoded arrays view the mapped shard without a copy, like np.load they are writable, and
    writing to one never reaches the file."""
    motion = np.arange(40 * 263, dtype=np.float32).reshape(40, 263)
    buf = io.BytesIO()
    np.save(buf, motion, allow_pickle=False)
    path = tmp_path / "m.tar"
    path.write_bytes(make_tar(tarfile.USTAR_FORMAT, [("k/1.motion.npy", buf.getvalue(), "file")]))
    before = path.read_bytes()
    raw = next(iter_raw_shard(str(path)))
    assert isinstance(raw["motion.npy"], memoryview)
    array = load_npy_bytes(raw["motion.npy"], "test")
    np.testing.assert_array_equal(array, motion)
    assert not array.flags.owndata and array.flags.writeable
    array[:] = -1
    assert path.read_bytes() == before
    assert (load_npy_bytes(next(iter_raw_shard(str(path)))["motion.npy"], "test") == motion).all()
