"""Frame splitters: chunking never changes the result; over-long frames are dropped."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from edgetwin.sources.serial.framing import (
    FRAME_TOO_LONG,
    UNSYNCED_BYTES,
    FixedSplitter,
    LineSplitter,
)

TERMINATORS = st.sampled_from([b"\n", b"\r\n", b"\x03", b"END"])


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given positions (taken modulo its length, any order)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def split_all(splitter: LineSplitter | FixedSplitter, chunks: list[bytes]) -> list[bytes]:
    frames: list[bytes] = []
    for chunk in chunks:
        frames.extend(splitter.feed(chunk))
    return frames


def reference_lines(data: bytes, terminator: bytes, max_bytes: int) -> tuple[list[bytes], int]:
    """What a line splitter must produce: complete lines up to ``max_bytes``, and the drops."""
    *complete, _tail = data.split(terminator)
    kept = [line for line in complete if len(line) <= max_bytes]
    return kept, len(complete) - len(kept)


@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=30),
       terminator=TERMINATORS, max_bytes=st.integers(1, 40))
def test_line_frames_do_not_depend_on_chunking(
    data: bytes, cuts: list[int], terminator: bytes, max_bytes: int
) -> None:
    """Any chunking yields the frames and drop count of one whole feed, and of str.split."""
    whole = LineSplitter(terminator, max_bytes)
    in_pieces = LineSplitter(terminator, max_bytes)
    expected = whole.feed(data)
    assert split_all(in_pieces, chunked(data, cuts)) == expected
    assert in_pieces.dropped == whole.dropped
    frames, too_long = reference_lines(data, terminator, max_bytes)
    if len(data.split(terminator)[-1]) <= max_bytes:  # a long tail counts before its end
        assert (expected, whole.dropped[FRAME_TOO_LONG]) == (frames, too_long)
    assert all(len(frame) <= max_bytes for frame in expected)


@given(records=st.lists(st.binary(min_size=1, max_size=20).filter(lambda b: b"\n" not in b),
                        max_size=10),
       garbage=st.lists(st.binary(max_size=60), max_size=10),
       cuts=st.lists(st.integers(0, 600), max_size=20))
def test_line_records_survive_interleaved_garbage(
    records: list[bytes], garbage: list[bytes], cuts: list[int]
) -> None:
    """Every record on its own line comes out whole, whatever garbage lies between them."""
    stream = b"".join(g + b"\n" + r + b"\n" for g, r in zip(garbage, records, strict=False))
    frames = split_all(LineSplitter(b"\n", 20), chunked(stream, cuts))
    wanted = records[: len(garbage)]
    position = 0
    for record in wanted:  # the records appear in order among the frames
        position = frames.index(record, position) + 1


def test_over_long_line_is_dropped_and_counted_once() -> None:
    """A line over the limit is discarded up to its terminator; the next line is fine."""
    splitter = LineSplitter(b"\r\n", 10)
    assert splitter.feed(b"x" * 25) == []
    assert splitter.pending <= 1  # the buffer does not grow with the over-long line
    assert splitter.feed(b"yyy\r\nok\r\n") == [b"ok"]
    assert splitter.dropped == {FRAME_TOO_LONG: 1}
    assert splitter.dropped_bytes == 28


def test_reset_drops_the_partial_frame() -> None:
    """A partial frame is forgotten when the port is lost."""
    splitter = LineSplitter(b"\n", 100)
    assert splitter.feed(b"abc\nde") == [b"abc"]
    assert splitter.reset() == 2
    assert splitter.feed(b"f\n") == [b"f"]


@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=30),
       length=st.integers(1, 12), sync=st.none() | st.integers(0, 255))
def test_fixed_frames_do_not_depend_on_chunking(
    data: bytes, cuts: list[int], length: int, sync: int | None
) -> None:
    """Any chunking yields the same fixed frames and drop counts as one whole feed."""
    whole = FixedSplitter(length, sync)
    in_pieces = FixedSplitter(length, sync)
    expected = whole.feed(data)
    assert split_all(in_pieces, chunked(data, cuts)) == expected
    assert (in_pieces.dropped, in_pieces.dropped_bytes) == (whole.dropped, whole.dropped_bytes)
    assert all(len(f) == length and (sync is None or f[0] == sync) for f in expected)
    assert len(expected) * length + whole.dropped_bytes + whole.pending == len(data)


def test_fixed_frames_resync_after_garbage() -> None:
    """Bytes before a sync byte are dropped and counted once per run."""
    splitter = FixedSplitter(4, sync=0xAA)
    assert splitter.feed(b"\x01\x02") == []
    assert splitter.feed(b"\x03\xaa\x10\x11\x12\xaa\x20") == [b"\xaa\x10\x11\x12"]
    assert splitter.feed(b"\x21\x22") == [b"\xaa\x20\x21\x22"]
    assert splitter.dropped == {UNSYNCED_BYTES: 1}
    assert splitter.dropped_bytes == 3
