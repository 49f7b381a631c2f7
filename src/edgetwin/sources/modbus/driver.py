"""Modbus TCP and RTU driver: one shared link, one deadline-scheduled loop per interval.

How it behaves (README.md has the operator's view):

- Every source on one TCP host:port, or one serial port, shares the link's client
  (``connection.SharedClient``), and requests go out one at a time, so the wire carries
  strict request/response whatever the number of unit ids. pymodbus's own reconnect and
  retries are off (``reconnect_delay=0``, ``retries=0``): the source reconnects with
  exponential backoff and jitter (``core.backoff``, 0.1 s doubling to 30 s).
- A unit that does not answer fails only its own source, which backs off the same way while
  the others keep their schedule; a link error (refused, reset, a malformed answer, the port
  gone) closes the link for all and the next user reopens it. ``connection`` states why a
  timeout may leave a TCP connection open.
- One poll loop per distinct poll interval. Deadlines sit on a fixed grid (start + k x
  interval): a cycle never drifts; a cycle that finishes late runs the next one at once
  and skips (and counts) any deadline that passed entirely.
- Every cycle emits one batch with one sample per point of the loop. An exception
  response marks the points of that block BAD (``modbus_exception_<code>``); other
  blocks carry on. Exceptions 1-3 (illegal function/address/value, a configuration
  problem per FACTS section 3.2) split a merged block into one block per point so the
  neighbours recover in the same cycle, and a single-point block is then re-tried only
  every ``PARK_S`` seconds.
- A lost connection or a timeout marks every point of each loop BAD exactly once (one
  batch per loop per outage, not one per missed cycle: the twin turns quiet points STALE
  by itself), reports ``health.down`` and reconnects; the first answer after that reports
  ``health.up``.
- Every request sent is reported with its outcome and duration (``health.request``).
- A cycle once begun ends: cancelling a loop (the gateway stopping, a reload) sends no new
  request, waits for the one in flight and emits what the device answered, then stops. A
  value the device served is not dropped on the way out, unless the buffer is full and
  blocks sources (``on_full: block_sources``): a stop does not wait for room.

No pymodbus object leaves this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from pymodbus.exceptions import (
    ConnectionException,
    ModbusException,
    ModbusIOException,
    ParameterException,
)

from edgetwin.core.backoff import Backoff
from edgetwin.core.errors import DecodeError, SourceUnavailable
from edgetwin.core.ports import Emit, SourceHealth
from edgetwin.core.tasks import finish_despite_cancel, raise_if_cancelling
from edgetwin.core.types import Quality, Sample, Value, WriteOutcome
from edgetwin.sources.modbus.config import (
    ModbusPoint,
    ModbusRtuConfig,
    ModbusTcpConfig,
    RegisterKind,
)
from edgetwin.sources.modbus.connection import Client, ClientShare, alive
from edgetwin.sources.modbus.decode import decode_point, encode_point
from edgetwin.sources.modbus.plan import PollGroup, ReadBlock, poll_groups

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
TORN_READ_TRIES = 3  # reads of a waveform block before it is given up as torn this cycle
CONFIG_EXCEPTIONS = frozenset({1, 2, 3})  # the request itself is wrong; repeating it won't help
PARK_S = 60.0  # how long a point answering exception 1-3 is left alone before the next try
_MISSED_LOG_EVERY_S = 60.0


def next_deadline(previous_s: float, interval_s: float, now_s: float) -> tuple[float, int]:
    """The deadline after ``previous_s`` on its grid, and how many deadlines were skipped.

    On time: ``previous + interval``. Late: the most recent deadline that has passed (so the
    next cycle starts at once), skipping every older one; the phase never drifts.
    """
    upcoming_s = previous_s + interval_s
    if now_s <= upcoming_s:
        return upcoming_s, 0
    skipped = int((now_s - upcoming_s) // interval_s)
    return upcoming_s + skipped * interval_s, skipped


class LinkState(enum.Enum):
    """State of a source's connection as its poll loops see it."""

    CONNECTING = "connecting"  # the first attempt has not finished yet
    UP = "up"
    DOWN = "down"


class _Session:
    """The source's use of one client, from open to loss; a late loss report is ignored."""

    def __init__(self, client: Client) -> None:
        self.client = client


_OUTCOMES = {"timeout": "timeout"}  # health.request outcome by failure code; else "error"


class _LinkLost(Exception):  # control flow inside this module, never seen outside it
    """The session went away during a cycle; the link already reported why."""

    def __init__(self, error: SourceUnavailable | None = None) -> None:
        super().__init__(error)
        self.error = error  # None when another loop or source saw the failure first
        self.read_before: list[Sample] = []  # what the cycle had read when the link went


@dataclass(slots=True)
class _Scheduled:
    """A block in a poll loop, with the time before which it is not read again."""

    block: ReadBlock
    parked_until_s: float = 0.0  # loop time; set after exception 1-3


@dataclass(frozen=True, slots=True)
class _Refused:
    """The device answered a request with a Modbus exception response."""

    code: int
    address: int
    count: int


class _Link:
    """The source's share of its link, for all its poll loops: connects and reconnects.

    It hands out turns on the client: one request at a time across every source of the link.
    """

    def __init__(
        self,
        share: ClientShare,
        where: str,
        health: SourceHealth,
        log: Any,
        backoff: Backoff,
    ) -> None:
        self._share = share
        self._where = where
        self._health = health
        self._log = log
        self._backoff = backoff  # counts connection failures since the device last answered
        self.state = LinkState.CONNECTING
        self.session: _Session | None = None
        self._changed = asyncio.Event()
        self._lost = asyncio.Event()
        self._answering = False

    async def wait_change(self) -> None:
        """Return after the next state change."""
        await self._changed.wait()

    def _set_state(self, state: LinkState) -> None:
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()

    async def maintain(self) -> None:
        """Task: connect, wait for a loss, back off, reconnect; until cancelled."""
        while True:
            client = await self._share.open()
            if client is not None:
                self._log.debug("Modbus connection open")
                self.session = _Session(client)
                self._lost.clear()
                self._set_state(LinkState.UP)
                await self._lost.wait()
            else:
                self._answering = False
                self._health.down("connect_failed", SourceUnavailable(
                    f"{self._where}: {self._share.failure}"
                ))
                if self.state is not LinkState.DOWN:
                    self._set_state(LinkState.DOWN)
            delay_s = self._backoff.next_delay()
            self._log.debug("Modbus reconnect scheduled", delay_s=round(delay_s, 3))
            await asyncio.sleep(delay_s)

    def lost(self, session: _Session, error_code: str, error: BaseException) -> None:
        """A loop found ``session`` broken: close it, report once, let ``maintain`` retry."""
        if session is not self.session:
            return  # an older connection; its loss was reported already
        self.session = None
        self._share.discard(session.client, link_failed=error_code != "timeout")
        self._answering = False
        self._health.down(error_code, error)
        self._set_state(LinkState.DOWN)
        self._lost.set()

    def answered(self) -> None:
        """The device answered a request (data or exception response)."""
        self._backoff.reset()
        if not self._answering:
            self._answering = True
            self._health.up()

    @contextlib.asynccontextmanager
    async def turn(self, session: _Session) -> AsyncIterator[Client]:
        """The client, for requests no other request may come between; waits for its turn.

        Raises:
            _LinkLost: ``session`` ended, or the shared link was closed since it began.
        """
        async with self._share.lock:
            if session is not self.session:
                raise _LinkLost
            if not self._share.current(session.client):
                error = SourceUnavailable(f"{self._where}: the connection was closed")
                self.lost(session, "connection_lost", error)
                raise _LinkLost(error)
            yield session.client

    async def exchange(
        self, session: _Session, what: str, send: Callable[[], Awaitable[Any]]
    ) -> Any:
        """One request and its answer (data or an exception response), timed and counted.

        Call it inside ``turn(session)``.

        Raises:
            _LinkLost: no answer, or the link failed; the link has been told.
        """
        started_s = time.perf_counter()
        try:
            response = await send()
        except ParameterException:
            raise  # a request outside the spec limits is our bug, not the device's
        except ModbusException as err:
            raise_if_cancelling()  # pymodbus 3.10 turns a cancellation into this exception
            code = _failure_code(err, session.client)
            self._health.request(_OUTCOMES.get(code, "error"), time.perf_counter() - started_s)
            error = SourceUnavailable(f"{self._where}: {what} failed: {err}")
            error.__cause__ = err
            self.lost(session, code, error)
            raise _LinkLost(error) from err
        outcome = "exception" if response.isError() else "ok"
        self._health.request(outcome, time.perf_counter() - started_s)
        return response

    def close(self) -> None:
        """Leave the link; the last of its sources closes it."""
        self.session = None
        self._share.release()


def _failure_code(err: ModbusException, client: Client) -> str:
    if isinstance(err, ConnectionException) or not alive(client):
        return "connection_lost"
    if isinstance(err, ModbusIOException):
        return "timeout"
    return "protocol_error"


def _reader(
    client: Client, table: RegisterKind
) -> Callable[..., Awaitable[Any]]:
    if table is RegisterKind.HOLDING:
        return client.read_holding_registers
    if table is RegisterKind.INPUT:
        return client.read_input_registers
    if table is RegisterKind.COIL:
        return client.read_coils
    return client.read_discrete_inputs


class _Poller:
    """One poll loop: the blocks of one interval, read and decoded once per cycle."""

    def __init__(
        self,
        source: ModbusSource,
        group: PollGroup,
        link: _Link,
        emit: Emit,
        health: SourceHealth,
    ) -> None:
        self._source = source
        self._config = source.config
        self._where = source.where
        self._interval_s = group.interval_s
        self._blocks = [_Scheduled(block) for block in group.blocks]
        self._points = group.points()
        self._link = link
        self._emit = emit
        self._health = health
        self._log = source.log.bind(interval_s=group.interval_s)
        self._missed_logged_s = -_MISSED_LOG_EVERY_S

    async def run(self) -> None:
        """Poll until cancelled."""
        loop = asyncio.get_running_loop()
        reported_down = False
        deadline_s = loop.time()
        while True:
            session = self._link.session
            if session is None:
                if self._link.state is LinkState.DOWN and not reported_down:
                    await self._emit(self._all_bad())
                    reported_down = True
                await self._link.wait_change()
                deadline_s = loop.time()  # a new schedule; an outage is not lateness
                continue
            await asyncio.sleep(max(0.0, deadline_s - loop.time()))
            started_s = loop.time()
            owner = asyncio.current_task()
            try:
                batch = await finish_despite_cancel(
                    asyncio.ensure_future(self._cycle(session, owner)))
            except _LinkLost as lost:
                raise_if_cancelling()
                if lost.read_before:  # answered before the link went: data like any other
                    await self._emit(lost.read_before)
                continue
            reported_down = False
            if batch:
                # Not shielded: emit suspends only under backpressure, and a stop does not
                # wait for room in a full buffer.
                await self._emit(batch)
            raise_if_cancelling()  # asked to stop during the cycle: its batch is out; stop
            self._health.cycle(loop.time() - started_s)
            deadline_s, skipped = next_deadline(deadline_s, self._interval_s, loop.time())
            if skipped:
                self._skipped(skipped, loop.time())

    def _skipped(self, skipped: int, now_s: float) -> None:
        self._source.missed_cycles += skipped
        if now_s - self._missed_logged_s >= _MISSED_LOG_EVERY_S:
            self._missed_logged_s = now_s
            self._log.warning(
                "Poll cycles skipped; the cycle takes longer than its interval",
                skipped=skipped, missed_cycles_total=self._source.missed_cycles,
            )

    def _all_bad(self) -> list[Sample]:
        ts_ns = time.time_ns()
        return [Sample(p.id, None, Quality.BAD, ts_ns) for p in self._points]

    async def _cycle(self, session: _Session, owner: asyncio.Task[Any] | None) -> list[Sample]:
        """One sample per point of the loop; fewer when ``owner`` is cancelled meanwhile.

        Runs as its own task, so a cancellation of ``owner`` never interrupts a request:
        the blocks not yet requested are left out, the one in flight is read to its end.
        """
        batch: list[Sample] = []
        now_s = asyncio.get_running_loop().time()
        index = 0
        while index < len(self._blocks):
            if owner is not None and owner.cancelling():
                break
            scheduled = self._blocks[index]
            block = scheduled.block
            if scheduled.parked_until_s > now_s:
                ts_ns = time.time_ns()
                batch.extend(Sample(s.point.id, None, Quality.BAD, ts_ns) for s in block.slots)
                index += 1
                continue
            try:
                result, ts_ns = await self._read_consistent(session, block)
            except _LinkLost as lost:
                lost.read_before = batch
                raise
            self._link.answered()
            if result is None:
                batch.extend(self._torn(block, ts_ns))
            elif isinstance(result, _Refused):
                if result.code in CONFIG_EXCEPTIONS and len(block.slots) > 1:
                    self._blocks[index : index + 1] = [_Scheduled(b) for b in block.split()]
                    self._log.info(
                        "Read block split after an exception response",
                        block=block.describe(), exception_code=result.code,
                    )
                    continue  # re-read the parts in this same cycle
                if result.code in CONFIG_EXCEPTIONS:
                    scheduled.parked_until_s = now_s + PARK_S
                batch.extend(self._refused(block, result, ts_ns))
            else:
                batch.extend(self._decode(block, result, ts_ns))
            index += 1
        return batch

    async def _read_consistent(
        self, session: _Session, block: ReadBlock
    ) -> tuple[list[int] | list[bool] | _Refused | None, int]:
        """``_read``, bracketed by the capture counter when a waveform in the block has one.

        None when the counter moved during every one of ``TORN_READ_TRIES`` reads.
        """
        waveform = next((s.point.waveform for s in block.slots
                         if s.point.waveform is not None
                         and s.point.waveform.counter_address is not None), None)
        if waveform is None or waveform.counter_address is None:
            return await self._read(session, block)
        width = 2 if waveform.counter_type == "uint32" else 1
        counter = ReadBlock(block.table, waveform.counter_address, width, ())
        for _ in range(TORN_READ_TRIES):
            before, _ts = await self._read(session, counter)
            result, ts_ns = await self._read(session, block)
            after, _ts = await self._read(session, counter)
            if isinstance(before, _Refused):
                return before, ts_ns
            if isinstance(result, _Refused) or before == after:
                return result, ts_ns
            self._source.torn_reads += 1
        return None, ts_ns

    def _torn(self, block: ReadBlock, ts_ns: int) -> list[Sample]:
        error = DecodeError(
            f"{self._where}: read {block.describe()}: a new capture replaced the block during"
            f" each of {TORN_READ_TRIES} reads"
        )
        for slot in block.slots:
            self._health.point_error(slot.point.id, "waveform_torn", error)
        return [Sample(slot.point.id, None, Quality.BAD, ts_ns) for slot in block.slots]

    async def _read(
        self, session: _Session, block: ReadBlock
    ) -> tuple[list[int] | list[bool] | _Refused, int]:
        """The block's data (or the exception response) and the read time.

        Raises:
            _LinkLost: the connection failed; the link has been told.
        """
        data: list[Any] = []
        unit = self._config.unit_id
        for address, count in block.requests():
            async with self._link.turn(session) as client:
                read = _reader(client, block.table)
                response = await self._link.exchange(
                    session, f"read {block.table.value} {address}x{count}",
                    lambda: read(address, count=count, device_id=unit),  # noqa: B023  # awaited at once
                )
            if response.isError():
                return _Refused(int(response.exception_code), address, count), time.time_ns()
            if block.table.is_bit:
                data.extend(bool(bit) for bit in response.bits[:count])
            else:
                data.extend(int(word) for word in response.registers)
        return data, time.time_ns()

    def _refused(self, block: ReadBlock, refused: _Refused, ts_ns: int) -> list[Sample]:
        name = EXCEPTION_NAMES.get(refused.code, "unknown exception")
        error = DecodeError(
            f"{self._where}: read {block.table.value} {refused.address}x{refused.count} "
            f"failed: exception {refused.code} ({name})"
        )
        code = f"modbus_exception_{refused.code}"
        samples = []
        for slot in block.slots:
            self._health.point_error(slot.point.id, code, error)
            samples.append(Sample(slot.point.id, None, Quality.BAD, ts_ns))
        return samples

    def _decode(self, block: ReadBlock, data: Sequence[Any], ts_ns: int) -> list[Sample]:
        samples = []
        for slot in block.slots:
            point = slot.point
            try:
                value = decode_point(
                    point, data[slot.offset : slot.offset + point.width], self._config.byte_order
                )
            except DecodeError as err:
                self._health.point_error(point.id, "decode_error", self._decode_error(point, err))
                samples.append(Sample(point.id, None, Quality.BAD, ts_ns))
            else:
                samples.append(Sample(point.id, value, Quality.GOOD, ts_ns))
        return samples

    def _decode_error(self, point: ModbusPoint, err: DecodeError) -> DecodeError:
        error = DecodeError(
            f"{self._where}: point {point.id!r} at {point.kind} {point.address}: {err}"
        )
        error.__cause__ = err
        return error


class ModbusSource:
    """A Modbus TCP device (or TCP-to-RTU gateway) polled into batches of samples.

    Implements ``edgetwin.core.ports.Source``. Build it from a validated config; ``run``
    polls until cancelled, reconnects by itself and raises only for bugs.

    Args:
        config: the validated source configuration.
        reconnect_initial_s: first reconnect delay after an outage; doubles per failure.
        reconnect_max_s: the longest reconnect delay.

    Attributes:
        name: the source name from the config (``skid1``).
        config: the validated configuration.
        groups: the read plan, one poll group per distinct interval.
        missed_cycles: poll deadlines skipped because a cycle ran late, since creation.
        where: "modbus source 'skid1' (tcp host:port, unit 1)", the prefix of its messages.
        log: its structlog logger, bound to ``component="modbus"`` and ``source=name``.
    """

    def __init__(
        self,
        config: ModbusTcpConfig | ModbusRtuConfig,
        *,
        reconnect_initial_s: float = 0.1,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.name: str = config.name
        self.config = config
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.groups = poll_groups(
            config.points, default_interval_s=config.poll_interval, max_gap=config.max_read_gap
        )
        link_name = (f"rtu {config.port}" if isinstance(config, ModbusRtuConfig)
                     else f"tcp {config.host}:{config.port}")
        self.where = f"modbus source {config.name!r} ({link_name}, unit {config.unit_id})"
        self.missed_cycles = 0
        self.torn_reads = 0  # waveform reads repeated because a new capture replaced the block
        self.log = structlog.get_logger().bind(component="modbus", source=config.name)
        self._points = {p.id: p for p in config.points}
        self._link: _Link | None = None  # set while run() is active; write() needs it

    def resources(self) -> frozenset[str]:
        """Its link (``modbus_tcp:host:port`` or ``serial:<port>``), shared with other unit ids."""
        return self.config.resources()

    async def write(self, point: str, value: Value) -> WriteOutcome:
        """Encode with the point's codec, write (FC 5, 6, 15 or 16), read back, compare.

        Success means the registers (or the coil) read back equal, word for word, what was
        written: the read-back goes through the same codec as the write, so a byte-order
        mistake cannot pass. The request lock keeps polls from interleaving.
        """
        spec = self._points.get(point)
        if spec is None:
            return WriteOutcome(False, f"{self.where}: {point!r} is not a point of this source")
        if not spec.writable:
            return WriteOutcome(False, f"{self.where}: {point!r} is not writable")
        order = self.config.byte_order
        try:
            data = encode_point(spec, value, order)
        except (ValueError, DecodeError) as err:
            return WriteOutcome(False, f"{self.where}: {err}")
        link = self._link
        if link is None:
            return WriteOutcome(False, f"{self.where}: the source is not running")
        what = f"{self.where}: write {spec.kind} {spec.address}"
        session = link.session
        try:
            if session is None:
                raise _LinkLost
            async with link.turn(session) as client:  # no poll between write and read-back
                back = await self._write_and_read_back(link, session, client, spec, data)
        except _LinkLost as lost:
            return WriteOutcome(False, str(lost.error) if lost.error else f"{what}: not connected")
        if isinstance(back, _Refused):
            name = EXCEPTION_NAMES.get(back.code, "unknown exception")
            return WriteOutcome(False, f"{what}: exception {back.code} ({name})")
        read_back = decode_point(spec, back, order)
        if isinstance(read_back, np.ndarray):
            read_back = read_back.tolist()
        if list(back) != list(data):
            return WriteOutcome(False, f"{what}: read back {read_back!r}, wrote {value!r}",
                                read_back)
        return WriteOutcome(True, None, read_back)

    async def _write_and_read_back(
        self, link: _Link, session: _Session, client: Client, spec: ModbusPoint,
        data: list[int] | list[bool],
    ) -> list[int] | list[bool] | _Refused:
        unit, address = self.config.unit_id, spec.address
        send: Callable[[], Awaitable[Any]]
        if spec.table is RegisterKind.COIL and len(data) > 1:
            bits = [bool(b) for b in data]
            send = lambda: client.write_coils(address, bits, device_id=unit)  # noqa: E731
        elif spec.table is RegisterKind.COIL:
            send = lambda: client.write_coil(address, bool(data[0]), device_id=unit)  # noqa: E731
        elif len(data) == 1:
            send = lambda: client.write_register(address, int(data[0]), device_id=unit)  # noqa: E731
        else:
            words = [int(w) for w in data]
            send = lambda: client.write_registers(address, words, device_id=unit)  # noqa: E731
        where = f"{spec.kind} {address}"
        response = await link.exchange(session, f"write {where}", send)
        if response.isError():
            return _Refused(int(response.exception_code), spec.address, len(data))
        read = _reader(client, spec.table)
        back = await link.exchange(session, f"read back {where}",
                                   lambda: read(address, count=spec.width, device_id=unit))
        if back.isError():
            return _Refused(int(back.exception_code), spec.address, spec.width)
        if spec.table.is_bit:
            return [bool(bit) for bit in back.bits[:spec.width]]
        return [int(word) for word in back.registers]

    async def run(self, emit: Emit, health: SourceHealth) -> None:
        """Poll until cancelled; see the module docstring for the failure behaviour.

        Called once per start, never concurrently. Cancellation closes the connection
        before this returns.
        """
        backoff = Backoff(self.reconnect_initial_s, self.reconnect_max_s)
        link = _Link(ClientShare(self.config), self.where, health, self.log, backoff)
        self._link = link
        self.log.info(
            "Modbus source starting",
            link=self.where, unit_id=self.config.unit_id,
            points=len(self.config.points),
            blocks=sum(len(g.blocks) for g in self.groups),
            intervals_s=[g.interval_s for g in self.groups],
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(link.maintain(), name=f"source[{self.name}].connect")
                for group in self.groups:
                    tasks.create_task(
                        _Poller(self, group, link, emit, health).run(),
                        name=f"source[{self.name}].poll[{group.interval_s:g}s]",
                    )
        finally:
            self._link = None
            link.close()
            self.log.info("Modbus source stopped")
