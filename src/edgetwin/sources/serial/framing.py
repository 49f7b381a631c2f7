"""Frame splitters for serial byte streams: pure, fed arbitrary chunks, never raising.

Invariants (the property tests check them):

- the frames and the drop counts depend only on the bytes fed, never on how they were
  chunked;
- no frame is longer than ``max_frame_bytes`` (a fixed frame is exactly ``frame_length``);
- every byte fed ends up in exactly one place: a frame, a terminator, a drop count or
  ``pending``.
"""

from __future__ import annotations

from collections import Counter

FRAME_TOO_LONG = "frame_too_long"
UNSYNCED_BYTES = "unsynced_bytes"


class LineSplitter:
    """Splits a stream at ``terminator``; frames are returned without it.

    A frame longer than ``max_frame_bytes`` is dropped and counted once
    (``frame_too_long``); its bytes are discarded as they arrive, up to the next
    terminator, so a device that never sends one cannot grow the buffer.

    Attributes:
        dropped: drop counts by error code, since creation.
        dropped_bytes: bytes dropped (over-long frames, partial frames on ``reset``).
    """

    def __init__(self, terminator: bytes, max_frame_bytes: int) -> None:
        if not terminator:
            raise ValueError("terminator must not be empty")
        self._terminator = terminator
        self._max = max_frame_bytes
        self._buffer = bytearray()
        self._discarding = False  # inside an over-long frame: drop until the next terminator
        self.dropped: Counter[str] = Counter()
        self.dropped_bytes = 0

    @property
    def pending(self) -> int:
        """Bytes held for a frame whose terminator has not arrived."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The frames completed by ``chunk``, in order."""
        self._buffer += chunk
        frames: list[bytes] = []
        term = self._terminator
        start = 0
        while True:
            end = self._buffer.find(term, start)
            if end < 0:
                break
            if self._discarding:
                self._discarding = False
                self.dropped_bytes += end - start
            elif end - start > self._max:
                self.dropped[FRAME_TOO_LONG] += 1
                self.dropped_bytes += end - start
            else:
                frames.append(bytes(self._buffer[start:end]))
            start = end + len(term)
        del self._buffer[:start]
        # Keep a possible terminator prefix at the end; anything before it is frame data.
        keep = len(term) - 1
        data_len = len(self._buffer) - keep
        if self._discarding and data_len > 0:
            self.dropped_bytes += data_len
            del self._buffer[:data_len]
        elif data_len > self._max:
            self.dropped[FRAME_TOO_LONG] += 1
            self.dropped_bytes += data_len
            del self._buffer[:data_len]
            self._discarding = True
        return frames

    def reset(self) -> int:
        """Forget a partial frame (the port was lost or reopened); returns its length."""
        partial = len(self._buffer)
        self.dropped_bytes += partial
        self._buffer.clear()
        self._discarding = False
        return partial


class FixedSplitter:
    """Cuts a stream into frames of ``frame_length`` bytes.

    With ``sync`` (the value of every frame's first byte) bytes before a sync byte are
    dropped and counted (``unsynced_bytes``, once per run of skipped bytes). Without it,
    frames are cut back to back from the first byte after (re)opening.

    Attributes:
        dropped: drop counts by error code, since creation.
        dropped_bytes: bytes dropped.
    """

    def __init__(self, frame_length: int, sync: int | None = None) -> None:
        if frame_length < 1:
            raise ValueError("frame_length must be at least 1")
        self._length = frame_length
        self._sync = sync
        self._buffer = bytearray()
        self._skipping = False  # a run of unsynced bytes is being counted
        self.dropped: Counter[str] = Counter()
        self.dropped_bytes = 0

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The frames completed by ``chunk``, in order."""
        self._buffer += chunk
        frames: list[bytes] = []
        start = 0
        while True:
            if self._sync is not None:
                found = self._buffer.find(self._sync, start)
                skip_to = len(self._buffer) if found < 0 else found
                if skip_to > start:
                    if not self._skipping:
                        self.dropped[UNSYNCED_BYTES] += 1
                        self._skipping = True
                    self.dropped_bytes += skip_to - start
                    start = skip_to
                if found < 0:
                    break
                self._skipping = False
            if len(self._buffer) - start < self._length:
                break
            frames.append(bytes(self._buffer[start : start + self._length]))
            start += self._length
        del self._buffer[:start]
        return frames

    def reset(self) -> int:
        """Forget a partial frame (the port was lost or reopened); returns its length."""
        partial = len(self._buffer)
        self.dropped_bytes += partial
        self._buffer.clear()
        self._skipping = False
        return partial
