"""Sequential reading of plain (uncompressed) tar shards: (name, bytes) of each regular member,
from a stream (`iter_tar_members`) or from memory such as a mapped file (`iter_tar_buffer`).

Why not `tarfile` (webdataset's path): in stream mode it reads through 512-byte steps and parses
every header field in Python; with the pax header that webdataset's writer puts before each
member (a float mtime), that was ~60% of the shard reader's time per sample. Here a header is
checked with one `sum` and a few slices, a streamed member is one read and a buffered one a
slice. Compressed shards are not handled here (the reader hands them to tarfile; see `is_compressed`).

Supported, as POSIX/GNU tar define them: ustar `prefix`, pax extended headers (`x`: `path` and
`size` override the next member; `g` is ignored), GNU long names (`L`), base-256 sizes,
checksums (unsigned or signed sum, like tarfile). Directories, links and other non-regular
members are skipped. A bad checksum, a truncated header or member raise `TarReadError`.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

BLOCK = 512
REGULAR = (b"0", b"\0", b"7")
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_SKIP_META = re.compile(r"__[^/]*__($|/)")  # webdataset's rule: `__key__`-style names are not data
_SPACES = b" " * 8


class TarReadError(ValueError):
    """The stream is not a readable tar (bad header checksum or truncated)."""


def is_compressed(first_bytes: bytes) -> bool:
    return first_bytes.startswith(COMPRESSED_MAGIC)


def _read_exact(stream, n: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:  # pipes and network streams may return short reads
        more = stream.read(n - got)
        if not more:
            raise TarReadError(f"unexpected end of data in {what} ({got} of {n} bytes)")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _read_member(stream, n: int, what: str) -> bytearray | bytes:
    """n bytes as a bytearray read in place where the stream can (numpy then views it writable, uncopied)."""
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        return _read_exact(stream, n, what)
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = readinto(view[got:])
        if not k:
            raise TarReadError(f"unexpected end of data in {what} ({got} of {n} bytes)")
        got += k
    return buf


def _number(field: bytes, what: str) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * (len(field) - 1))) if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarReadError(f"bad {what} field {bytes(field)!r} in a tar header") from None


def _checksum_ok(header: bytes) -> bool:
    stored = _number(header[148:156], "checksum")
    field = header[148:156]
    if stored == sum(header) - sum(field) + 256:  # the checksum field counts as 8 spaces
        return True
    signed = sum(b - 256 if b > 127 else b for b in header[:148] + _SPACES + header[156:])
    return stored == signed


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict[str, str]:
    out, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarReadError("bad pax extended header record") from None
        record = data[space + 1:pos + length - 1]  # drop the trailing newline
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _read_upto(stream, n: int) -> bytes:
    """Up to n bytes: fewer only at the end of the stream."""
    data = stream.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _check_header(header: bytes, offset: int, pending: dict[str, str]) -> tuple[bytes, int, bool]:
    """(kind, size, extended?) of a member header, checked; pax `size` overrides the stored one."""
    if not _checksum_ok(header):
        raise TarReadError(f"bad tar header checksum at byte {offset}")
    kind = header[156:157]
    extended = kind in (b"x", b"L", b"g")
    size = int(pending["size"]) if "size" in pending and not extended else _number(header[124:136], "size")
    if size < 0:
        raise TarReadError(f"negative member size at byte {offset}")
    return kind, size, extended


def _extend(kind: bytes, data, pending: dict[str, str], long_name: str | None) -> tuple[dict[str, str], str | None]:
    """The (pax records, GNU long name) an extended header's data sets for the next member."""
    if kind == b"x":
        return _pax_records(bytes(data)), long_name
    if kind == b"L":
        return pending, bytes(data).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    return pending, long_name  # `g`: global pax headers are ignored


def _member_name(header: bytes, pending: dict[str, str], long_name: str | None) -> str:
    name = _text(header[:100])
    if header[257:263] == b"ustar\0" and header[345:346] != b"\0":
        name = _text(header[345:500]) + "/" + name
    return pending.get("path", long_name or name)


def _wanted(kind: bytes, name: str, select) -> bool:
    return kind in REGULAR and not _SKIP_META.match(name) and (select is None or select(name))


def _is_end(header: bytes) -> bool:
    return not header[0] and header.count(0) == BLOCK


def iter_tar_members(stream, select=None, first: bytes = b"") -> Iterator[tuple[str, bytes | bytearray]]:
    """(name, data) of each regular member in order; `select(name)` False skips a member's data.

    Data is a bytearray when the stream has `readinto` (read in place, once), else bytes.
    `first` holds bytes already read from the start of the stream. Each read also takes the
    next header (after an extended header's data, a member's padding), so a member with a pax
    header costs three reads.
    """
    pending: dict[str, str] = {}
    long_name: str | None = None
    offset = 0
    header = first + _read_upto(stream, BLOCK - len(first))
    while True:
        if len(header) < BLOCK:
            if not header:
                if offset == 0:
                    raise TarReadError("empty file")
                return  # the stream ended without the end-of-archive blocks
            raise TarReadError(f"unexpected end of data in a tar header at byte {offset} "
                               f"({len(header)} of {BLOCK} bytes)")
        if _is_end(header):
            return
        kind, size, extended = _check_header(header, offset, pending)
        padded = -(-size // BLOCK) * BLOCK
        offset += BLOCK + padded
        if extended:
            blob = _read_upto(stream, padded + BLOCK)
            if len(blob) < padded:
                raise TarReadError(f"unexpected end of data in an extended header at byte {offset}")
            pending, long_name = _extend(kind, blob[:size], pending, long_name)
            header = blob[padded:]
            continue
        name = _member_name(header, pending, long_name)
        pending, long_name = {}, None
        if not _wanted(kind, name, select):
            blob = _read_upto(stream, padded + BLOCK)
            if len(blob) < padded:
                raise TarReadError(f"unexpected end of data in tar member {name}")
            header = blob[padded:]
            continue
        data = _read_member(stream, size, f"tar member {name}") if size else b""
        trailer = _read_upto(stream, padded - size + BLOCK)
        if len(trailer) < padded - size:
            raise TarReadError(f"unexpected end of data after tar member {name}")
        header = trailer[padded - size:]
        yield name, data


def iter_tar_buffer(buffer, select=None) -> Iterator[tuple[str, memoryview]]:
    """iter_tar_members over a tar held in memory or mapped (an mmap): member data are
    memoryview slices of `buffer`, not copies (a view keeps the buffer alive)."""
    view = memoryview(buffer)
    total = len(view)
    if total == 0:
        raise TarReadError("empty file")
    pending: dict[str, str] = {}
    long_name: str | None = None
    offset = 0
    while offset < total:  # a buffer ending without the end-of-archive blocks ends here
        header = bytes(view[offset:offset + BLOCK])
        if len(header) < BLOCK:
            raise TarReadError(f"unexpected end of data in a tar header at byte {offset} "
                               f"({len(header)} of {BLOCK} bytes)")
        if _is_end(header):
            return
        kind, size, extended = _check_header(header, offset, pending)
        start = offset + BLOCK
        offset = start + -(-size // BLOCK) * BLOCK
        if extended:
            if offset > total:
                raise TarReadError(f"unexpected end of data in an extended header at byte {start}")
            pending, long_name = _extend(kind, view[start:start + size], pending, long_name)
            continue
        name = _member_name(header, pending, long_name)
        pending, long_name = {}, None
        if offset > total:  # the member or its padding is cut off
            raise TarReadError(f"unexpected end of data in tar member {name}")
        if _wanted(kind, name, select):
            yield name, view[start:start + size]
