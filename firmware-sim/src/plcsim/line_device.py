"""A weighing scale under the skid's tank that streams ASCII records on a pseudo-terminal.

``LineDevice(sim, rate_hz=2.0, kind="scale")``; ``start()`` opens a pty pair and returns
``{"protocol": "line", "device": "/dev/pts/N", "rate_hz": 2.0, "format": RECORD_REGEX}``.
Open ``device`` like a serial port (any baud rate: a pty ignores it).

Records, ``rate_hz`` times a second of real time, each ended by CR LF::

    ST,GS,+1000.123 kg

- ``ST`` stable, ``US`` unstable (moved more than ``STABLE_BAND_KG`` since the previous
  record), ``OL`` overload (beyond the 4+3 digits; the value is clamped);
- ``GS`` gross weight (this scale has no tare);
- the weight of the tank contents: the physical tank level (with any fault injected on
  the ``tank_level`` signal applied) as a fraction of ``TANK_CAPACITY_M3`` of water at
  1000 kg/m³, plus a little Gaussian noise (``NOISE_KG``, seeded from the sim's seed).

Faults (face name ``line``):
- garbage: random bytes (``FaultSet.garbage``) written just before a record, so the record
  they precede arrives on a corrupt line; the next records are clean;
- dropout (``silent``, and a reboot): no records; garbage still arrives (it is line noise);
- latency (``delay_s``): each record is measured on time and written ``delay_s`` later,
  in order.

Writes never block: the master side is non-blocking, and a record (or the rest of one)
that does not fit into the pty's buffer (about 16 KiB unread on Linux) is dropped and
counted in ``dropped``; a record cut short leaves a truncated line. What a late reader then
finds is up to that much old data; pyserial discards it when it opens the port.
"""

from __future__ import annotations

import asyncio
import os
import random
import tty
from collections import deque
from typing import Any

from plcsim.plant import TANK_CAPACITY_M3
from plcsim.sim import Sim

FACE = "line"
KINDS = ("scale",)
RECORD_REGEX = r"(ST|US|OL),GS,([+-]\d{4}\.\d{3}) kg\r\n"
WATER_DENSITY_KG_M3 = 1000.0
NOISE_KG = 0.02
STABLE_BAND_KG = 0.5
MAX_KG = 9999.999  # what "+dddd.ddd" holds


def scale_record(weight_kg: float, previous_kg: float | None) -> bytes:
    """One record for ``weight_kg``; the flag compares it with the previous record."""
    if abs(weight_kg) > MAX_KG:
        flag, weight_kg = "OL", max(-MAX_KG, min(MAX_KG, weight_kg))
    elif previous_kg is not None and abs(weight_kg - previous_kg) > STABLE_BAND_KG:
        flag = "US"
    else:
        flag = "ST"
    return f"{flag},GS,{weight_kg:+09.3f} kg\r\n".encode("ascii")


class LineDevice:
    """A serial instrument on a pty; see the module docstring for records and faults."""

    name = FACE

    def __init__(self, sim: Sim, rate_hz: float = 2.0, kind: str = "scale") -> None:
        if rate_hz <= 0:
            raise ValueError("rate_hz must be positive")
        if kind not in KINDS:
            raise ValueError(f"unknown line device kind {kind!r}; known: {', '.join(KINDS)}")
        self.sim = sim
        self.rate_hz = rate_hz
        self.kind = kind
        self.device = ""
        self.sent = 0  # records written whole
        self.dropped = 0  # records (or their tails) that did not fit
        self.garbage_bytes = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random(sim.seed)  # measurement noise, not cryptography
        self._previous_kg: float | None = None

    async def start(self) -> dict[str, Any]:
        """Create the pty and start streaming.

        Raises:
            RuntimeError: already started.
            OSError: no pty could be allocated.
        """
        if self._master is not None:
            raise RuntimeError("LineDevice already started")
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: bytes as a serial line carries them
        os.set_blocking(master, False)
        self._master, self._slave = master, slave  # the slave stays open: no hangup between readers
        self.device = os.ttyname(slave)
        self._task = asyncio.create_task(self._stream(), name="plcsim.line.stream")
        return {"protocol": "line", "device": self.device, "rate_hz": self.rate_hz,
                "format": RECORD_REGEX}

    async def stop(self) -> None:
        """Stop streaming and close both sides of the pty."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # and a cancel of stop() itself goes through
            self._task = None
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def weight_kg(self) -> float:
        """What the scale measures now: the tank contents as water, plus noise."""
        # The load cell weighs the physical contents (not the level gauge and its noise);
        # faults injected on the tank_level signal still apply.
        level_pct = self.sim.faults.signal("tank_level", self.sim.plant.tank_level_pct)
        return (level_pct / 100.0 * TANK_CAPACITY_M3 * WATER_DENSITY_KG_M3
                + self._rng.gauss(0.0, NOISE_KG))

    async def _stream(self) -> None:
        """Measure on a drift-free grid; write each record once its latency has passed."""
        loop = asyncio.get_running_loop()
        period_s = 1.0 / self.rate_hz
        next_s = loop.time()
        pending: deque[tuple[float, bytes, bool]] = deque()  # (due, data, is_record)
        while True:
            wake_s = min(next_s, pending[0][0]) if pending else next_s
            await asyncio.sleep(max(0.0, wake_s - loop.time()))
            now_s = loop.time()
            if now_s >= next_s:
                next_s += period_s
                last_due_s = pending[-1][0] if pending else now_s
                noise = self.sim.faults.garbage(FACE, period_s)
                if noise:
                    self.garbage_bytes += len(noise)
                    pending.append((last_due_s, noise, False))
                if not self.sim.faults.silent(FACE):
                    weight = self.weight_kg()
                    record = scale_record(weight, self._previous_kg)
                    self._previous_kg = weight
                    due_s = max(last_due_s, now_s + self.sim.faults.delay_s(FACE))
                    pending.append((due_s, record, True))
            while pending and pending[0][0] <= loop.time():
                _, data, is_record = pending.popleft()
                self._write(data, is_record=is_record)

    def _write(self, data: bytes, *, is_record: bool) -> None:
        """Write without blocking; count the records that did not fit whole."""
        if self._master is None:
            return
        try:
            written = os.write(self._master, data)
        except OSError:  # BlockingIOError: the buffer is full, nobody reads
            written = 0
        if is_record:
            if written == len(data):
                self.sent += 1
            else:
                self.dropped += 1
