"""What the simulated PLC handed out: per signal, the values it served to clients, as runs.

The HIL bench judges "no lost samples" by comparing the counter values a gateway published
with the values the device actually served: a value the device never served cannot be
missing from the broker, and every value it did serve should arrive. ``Sim.served`` keeps
that record for the signals named in ``RECORDED_SIGNALS`` (``counter`` for now). The faces
feed it where a value goes into a response, after sensor faults, as the client decodes it:

- Modbus TCP and RTU: a read whose range covers the whole ``counter`` entry, on any unit
  that maps it (a read of one of its two registers alone serves no value and is not noted);
- OPC UA: a client Read of ``Counter``'s Value, and a Publish response carrying a
  data-change notification of a monitored item on it.

A run is ``[first, last, t_first, t_last]``: the values first, first + 1, ..., last were
served in that order with nothing else between them; ``t_first`` is when ``first`` was
served and ``t_last`` when ``last`` was served *for the first time* (``time.time()``,
epoch seconds). Serving ``last`` again (a client polling faster than the plant ticks, a
stuck sensor) only counts a read: ``t_last`` then tells when the newest value first left
the device, which is what a delay judgement compares a broker timestamp with.

The record is the union over every face and client: one signal, one timeline.

Invariants:

- A run grows only by ``last + 1``. Any other new value starts a new run: a reboot
  restarting at 0, a value skipped because no client asked while it was current, a wrap
  at 2^32, a drifting or noisy sensor.
- Memory is bounded: one run while the clients keep up (runs only begin at gaps), and at
  most ``max_runs`` runs; beyond that the oldest run is dropped and counted in
  ``dropped_runs``, so a pathological client cannot grow the record forever.
- Only the event loop the faces run on records. A run is replaced by one store, never
  edited in place, so ``as_dict`` from another thread sees whole runs (at worst one value
  behind).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

RECORDED_SIGNALS = ("counter",)
MAX_RUNS = 100_000  # per signal; about 140 bytes each, so at most ~14 MB per signal

Run = tuple[int, int, float, float]  # first, last, t_first, t_last


class ServedRuns:
    """The values of one signal served to clients, as runs of consecutive values."""

    __slots__ = ("_clock", "_last", "_runs", "dropped_runs", "reads")

    def __init__(self, max_runs: int = MAX_RUNS, clock: Callable[[], float] = time.time
                 ) -> None:
        """``max_runs``: runs kept, the oldest going first beyond it; ``clock``: epoch seconds.

        Raises:
            ValueError: ``max_runs`` is not positive.
        """
        if max_runs < 1:
            raise ValueError("max_runs must be at least 1")
        self.reads = 0  # values served, repeats included
        self.dropped_runs = 0  # runs dropped, oldest first, to stay within max_runs
        self._runs: deque[Run] = deque(maxlen=max_runs)
        self._last: int | None = None  # the value served last; the newest run ends with it
        self._clock = clock

    def record(self, value: int) -> None:
        """Note that ``value`` was just served to a client.

        Called from the hot path of every face: a repeat costs one comparison, an extension
        two and a clock read.
        """
        self.reads += 1
        last = self._last
        if value == last:
            return
        self._last = value
        now = self._clock()
        runs = self._runs
        if last is not None and value == last + 1:
            runs[-1] = (runs[-1][0], value, runs[-1][2], now)
            return
        if len(runs) == runs.maxlen:
            self.dropped_runs += 1
        runs.append((value, value, now, now))

    def runs(self) -> list[Run]:
        """The runs kept, oldest first."""
        return list(self._runs)

    def as_dict(self) -> dict[str, Any]:
        """The record, JSON-ready (times rounded to the microsecond).

        ``{"reads": n, "runs": [[first, last, t_first, t_last], ...], "dropped_runs": n}``
        """
        return {"reads": self.reads,
                "runs": [[first, last, round(t_first, 6), round(t_last, 6)]
                         for first, last, t_first, t_last in self.runs()],
                "dropped_runs": self.dropped_runs}


class ServedLog:
    """The served-value record of every recorded signal, by signal name."""

    def __init__(self, names: Iterable[str] = RECORDED_SIGNALS, max_runs: int = MAX_RUNS,
                 clock: Callable[[], float] = time.time) -> None:
        """``names``: the signals to record; ``max_runs``: runs kept per signal."""
        self._signals = {name: ServedRuns(max_runs, clock) for name in names}

    @property
    def names(self) -> tuple[str, ...]:
        """The signals recorded."""
        return tuple(self._signals)

    def recorder(self, name: str) -> ServedRuns | None:
        """The record a face feeds when it serves ``name``, or None if it is not recorded.

        Faces look their recorders up once, when they are built, so the hot path holds the
        ``ServedRuns`` itself.
        """
        return self._signals.get(name)

    def as_dict(self, name: str | None = None) -> dict[str, dict[str, Any]]:
        """Every signal's record (or only ``name``'s), keyed by signal name.

        Raises:
            KeyError: ``name`` is not recorded.
        """
        if name is not None:
            return {name: self._signals[name].as_dict()}
        return {signal: runs.as_dict() for signal, runs in self._signals.items()}
