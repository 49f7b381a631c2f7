"""Serial line-protocol driver: read a streaming device, split frames, parse records.

How it behaves (README.md has the operator's view):

- The port is opened with pyserial (line settings, exclusive lock) and then read
  without blocking from the event loop: ``loop.add_reader`` on its file descriptor,
  ``os.read`` when it is readable. No threads, no polling loop.
- Bytes go through the splitter (``framing``) and each frame through the parser
  (``parse``). Every record becomes one batch, stamped with the time its bytes arrived.
- Garbage is a link-level nuisance, not a point failure: a dropped frame is counted in
  ``dropped`` (by error code) and reported as ``health.point_error("*", code, ...)``, so it
  shows in ``edgetwin_errors_total`` and is logged once per code per link session. The
  points keep the quality of the last record; the next good record is GOOD again.
  The first frame after (re)opening may be the tail of a record already under way: if it
  does not parse it is counted as ``partial_frame`` and not reported.
- A record with an unusable value (``bad_value``, ``not_finite``...) marks that point BAD
  (``health.point_error(point, ...)``); the other points of the record stay GOOD.
- A lost port (EIO/EOF on read: the pty closed, the USB adapter unplugged) or a port that
  cannot be opened marks every point BAD once per outage, reports ``health.down``, and
  reopens the configured path with jittered backoff until it works; the first good
  record reports ``health.up``. A stable ``/dev/serial/by-id/...`` path (or any symlink)
  follows a replugged adapter because the path is resolved again on every open.
- Staleness (no records for ``stale_after``) is the twin's business; this driver emits
  only what arrives.

No pyserial object leaves this module.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections import Counter

import serial
import structlog

from edgetwin.core.backoff import Backoff
from edgetwin.core.errors import DecodeError, SourceUnavailable
from edgetwin.core.ports import Emit, SourceHealth
from edgetwin.core.types import Quality, Sample, Value, WriteOutcome
from edgetwin.sources.serial.config import SerialConfig
from edgetwin.sources.serial.framing import FRAME_TOO_LONG, FixedSplitter, LineSplitter
from edgetwin.sources.serial.parse import Record, Rejected, parser_for

GARBAGE_POINT = "*"  # the "point" garbage is reported against: it belongs to no point
PARTIAL_FRAME = "partial_frame"
READ_CHUNK_BYTES = 4096
_PARITY = {
    "none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD,
    "mark": serial.PARITY_MARK, "space": serial.PARITY_SPACE,
}
_STOPBITS: dict[float, float] = {
    1: serial.STOPBITS_ONE, 1.5: serial.STOPBITS_ONE_POINT_FIVE, 2: serial.STOPBITS_TWO,
}


class _PortLost(Exception):  # control flow inside this module, never seen outside it
    """Reading the port failed; carries the SourceUnavailable to report."""

    def __init__(self, error: SourceUnavailable) -> None:
        super().__init__(str(error))
        self.error = error


class SerialSource:
    """A serial device streaming records, read into one batch of samples per record.

    Implements ``edgetwin.core.ports.Source``. ``run`` reads until cancelled, reopens the
    port by itself and raises only for bugs.

    Args:
        config: the validated source configuration.
        reopen_initial_s: first reopen delay after the port failed; doubles per failure.
        reopen_max_s: the longest reopen delay.

    Attributes:
        name: the source name from the config (``scale1``).
        config: the validated configuration.
        where: "serial source 'scale1' (/dev/ttyUSB0)", the prefix of its messages.
        dropped: dropped frames by error code since creation (``no_match``,
            ``bad_checksum``, ``frame_too_long``, ``partial_frame``...).
        records: records parsed since creation.
        log: its structlog logger, bound to ``component="serial"`` and ``source=name``.
    """

    def __init__(
        self,
        config: SerialConfig,
        *,
        reopen_initial_s: float = 0.1,
        reopen_max_s: float = 10.0,
    ) -> None:
        self.name: str = config.name
        self.config = config
        self.reopen_initial_s = reopen_initial_s
        self.reopen_max_s = reopen_max_s
        self.where = f"serial source {config.name!r} ({config.port})"
        self.dropped: Counter[str] = Counter()
        self.records = 0
        self.log = structlog.get_logger().bind(component="serial", source=config.name)
        self._parser = parser_for(config)
        self._answered = False  # a good record arrived since the port was last opened

    def resources(self) -> frozenset[str]:
        """The port, e.g. ``{"serial:/dev/ttyUSB0"}``: one source per port."""
        return self.config.resources()

    async def write(self, point: str, value: Value) -> WriteOutcome:
        """Refused: a streaming line device takes no writes."""
        del value
        return WriteOutcome(
            False, f"{self.where}: cannot write {point!r}: serial line devices are read-only"
        )

    async def run(self, emit: Emit, health: SourceHealth) -> None:
        """Read until cancelled; see the module docstring for the failure behaviour.

        Called once per start, never concurrently. Cancellation closes the port before
        this returns.
        """
        backoff = Backoff(self.reopen_initial_s, self.reopen_max_s)
        reported_down = False
        self.log.info("Serial source starting", port=self.config.port,
                      protocol=self.config.protocol, points=len(self.config.points))
        try:
            while True:
                try:
                    port = self._open()
                except SourceUnavailable as err:
                    code = "port_missing" if _missing(err) else "open_failed"
                    health.down(code, err)
                    if not reported_down:
                        await emit(self._all_bad())
                        reported_down = True
                    await asyncio.sleep(backoff.next_delay())
                    continue
                try:
                    await self._read(port, emit, health, backoff)
                except _PortLost as lost:
                    if self._answered:
                        reported_down = False  # a new outage after good records
                    health.down("port_lost", lost.error)
                    if not reported_down:
                        await emit(self._all_bad())
                        reported_down = True
                finally:
                    port.close()
                await asyncio.sleep(backoff.next_delay())
        finally:
            self.log.info("Serial source stopped", dropped=dict(self.dropped),
                          records=self.records)

    def _open(self) -> serial.Serial:
        """The configured port, open, non-blocking, with stale input discarded.

        Raises:
            SourceUnavailable: the path is missing, busy or not a serial port.
        """
        cfg = self.config
        try:
            port = serial.Serial(
                port=cfg.port, baudrate=cfg.baudrate, bytesize=cfg.bytesize,
                parity=_PARITY[cfg.parity], stopbits=_STOPBITS[cfg.stopbits],
                timeout=0, exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise SourceUnavailable(f"{self.where}: cannot open: {err}") from err
        try:
            os.set_blocking(port.fileno(), False)  # read from the loop, never wait in os.read
            port.reset_input_buffer()  # a backlog is old news; the twin wants current values
        except (serial.SerialException, OSError) as err:
            port.close()
            raise SourceUnavailable(f"{self.where}: cannot open: {err}") from err
        self.log.debug("Serial port open")
        return port

    async def _read(
        self, port: serial.Serial, emit: Emit, health: SourceHealth, backoff: Backoff
    ) -> None:
        """Read, split and parse until the port fails.

        Raises:
            _PortLost: reading failed; the port must be reopened.
        """
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        splitter = (
            LineSplitter(self.config.terminator.encode("latin-1"), self.config.max_frame_bytes)
            if self.config.protocol == "line"
            else FixedSplitter(self.config.frame_length or 1, self.config.sync)
        )
        self._answered = False
        first_frame = True
        seen = Counter(splitter.dropped)
        try:
            while True:
                chunk = await _read_ready(loop, fd, self.where)
                ts_ns = time.time_ns()
                started_s = loop.time()
                frames = splitter.feed(chunk)
                if splitter.dropped != seen:
                    for code, count in (splitter.dropped - seen).items():
                        self._garbage(health, code, count, self._split_error(code))
                    seen = Counter(splitter.dropped)
                for frame in frames:
                    result = self._parser.parse(frame)
                    if isinstance(result, Rejected):
                        if first_frame:  # likely the tail of a record sent before we opened
                            self.dropped[PARTIAL_FRAME] += 1
                        else:
                            self._garbage(health, result.code, 1,
                                          f"{self.where}: frame dropped: {result.reason}")
                        first_frame = False
                        continue
                    first_frame = False
                    if not self._answered:  # up before the GOOD batch that proves it
                        self._answered = True
                        backoff.reset()
                        health.up()
                    await emit(self._samples(result, ts_ns, health))
                    self.records += 1
                    health.cycle(loop.time() - started_s)
        finally:
            if splitter.reset():
                self.dropped[PARTIAL_FRAME] += 1

    def _split_error(self, code: str) -> str:
        if code == FRAME_TOO_LONG:
            return (f"{self.where}: frame dropped: over {self.config.max_frame_bytes} bytes "
                    f"without a terminator")
        return f"{self.where}: bytes dropped before a sync byte ({code})"

    def _garbage(self, health: SourceHealth, code: str, count: int, message: str) -> None:
        self.dropped[code] += count
        error = DecodeError(message)
        for _ in range(count):
            health.point_error(GARBAGE_POINT, code, error)

    def _samples(self, record: Record, ts_ns: int, health: SourceHealth) -> list[Sample]:
        samples = [Sample(point, value, Quality.GOOD, ts_ns)
                   for point, value in record.values.items()]
        for failed in record.errors:
            health.point_error(failed.point, failed.code, DecodeError(
                f"{self.where}: point {failed.point!r}: {failed.reason}"
            ))
            samples.append(Sample(failed.point, None, Quality.BAD, ts_ns))
        return samples

    def _all_bad(self) -> list[Sample]:
        ts_ns = time.time_ns()
        return [Sample(p.id, None, Quality.BAD, ts_ns) for p in self.config.points]


def _missing(err: SourceUnavailable) -> bool:
    cause = err.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO)


async def _read_ready(loop: asyncio.AbstractEventLoop, fd: int, where: str) -> bytes:
    """The bytes waiting on ``fd``, waiting for the loop to report it readable first.

    A tty in raw mode with VMIN=0 (as pyserial sets it) reads as empty when nothing is
    there, so an empty read means a hang-up only after the fd was reported readable
    (pyserial's own reading of it).

    Raises:
        _PortLost: the device reported an error or a hang-up.
    """
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            data = os.read(fd, READ_CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as err:
            error = SourceUnavailable(f"{where}: port lost: read failed: {err}")
            error.__cause__ = err
            raise _PortLost(error) from err
        if data:
            return data
        raise _PortLost(SourceUnavailable(f"{where}: port lost: readable but no data (hang-up)"))


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
