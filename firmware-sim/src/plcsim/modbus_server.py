"""Modbus request handling shared by the TCP and RTU faces: register maps served from a Sim.

pymodbus 3.16 does the wire work (framing, PDU decoding and encoding); plcsim answers each
request itself. A pymodbus server is given a connection handler (``FaceRequestHandler``)
that decodes frames with pymodbus's framer, queues the requests of its connection and
answers them one at a time through a ``Responder``:

1. ``sim.faults.silent(face, unit)`` (a dropout of the face or of that unit id, or a PLC
   reboot): no answer at all;
2. RTU only: a unit id not on the line gets no answer (no device has that address);
   unit 0 (broadcast) writes are carried out on every unit, never answered;
3. ``sim.faults.delay_s(face, unit)``: the answer waits that long (and is dropped if the face
   went silent meanwhile); requests on one connection queue behind it, as in a device
   that serves one request at a time;
4. TCP only: a unit id not served answers exception 0x0B (Gateway Target Device Failed to
   Respond), as a TCP-to-RTU gateway does for a device missing on its bus;
5. ``sim.faults.exception_code(face, address)`` for any address of the request: that
   exception (a fault without an address hits every request);
6. otherwise the request runs against the unit's map (``ModbusDevice``): reads render the
   requested range only from ``Sim.signal`` and the vibration sensor; writes go through
   ``Sim.write`` (the PLC logic decides, the write log records).

A read whose range covers a whole recorded entry (``counter``; see ``plcsim.served``) notes
the value it puts in the response in ``Sim.served``, as the client will decode it. It is
noted when rendered, after every fault was applied and just before the response is sent: a
response lost on the way (a client that closed its connection meanwhile, a garbled line)
still counts as served.

Exceptions the map answers, besides those of faults:

- 1 Illegal Function: a function code not served (only 1-6, 15, 16, 22 and 23 are);
- 2 Illegal Data Address: any address of the request not in the map; a write to a
  read-only value or to part of a multi-register value (such writes are logged with
  ``Sim.refuse``);
- 3 Illegal Data Value: a quantity outside the spec's limits (read registers 1-125, read
  bits 1-2000, write registers 1-123, write coils 1-1968, FC23 write 1-121), or any other
  request of a served function that pymodbus cannot decode;
- 4 Server Device Failure: the PLC logic refused a written value (interlock, trip, out of
  range), or an unexpected error inside plcsim.

Exception 4 for refused writes, not 3: the Modbus spec says 3 (Illegal Data Value) is about
the structure of a request and "specifically does NOT mean that a data item submitted for
storage in a register has a value outside the expectation of the application program";
4 is "an unrecoverable error occurred while the server was attempting to perform the
requested action" - the closest match for a PLC program declining a command, and the
answer a gateway should treat as "the device said no" rather than "my request is wrong".
A multi-value write (FC15/16/23) applies each value on its own, in address order, every one
logged; if the PLC refused any of them the answer is exception 4 and the accepted ones stay.

A write to the ``reset_trip`` push button with false does nothing; it is logged as accepted.
A single write (FC5/FC6) is answered with the echo of the request, as the spec wants.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer.socket import FramerSocket
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server.requesthandler import ServerRequestHandler

from plcsim.registers import INTEGER_RANGES, Table, from_words, is_float, to_words
from plcsim.skid_map import (
    SOURCE_CAPTURE,
    SOURCE_CAPTURE_COUNTER,
    SOURCE_PUSH_BUTTON,
    SOURCE_SAMPLE_COUNT,
    SOURCE_SAMPLE_RATE,
    SOURCE_SAMPLE_SCALE,
    UNIT_SKID,
    UNIT_VIBRATION,
    MapEntry,
    unit_maps,
)

if TYPE_CHECKING:
    from pymodbus.server.base import ModbusBaseServer

    from plcsim.sim import Sim

log = logging.getLogger(__name__)

FACE_TCP = "modbus_tcp"
FACE_RTU = "modbus_rtu"
REFUSED_WRITE = ExcCodes.DEVICE_FAILURE

# Function code -> table it addresses (Modbus Application Protocol V1.1b3, section 6).
FC_TABLE = {
    1: Table.COIL, 5: Table.COIL, 15: Table.COIL,
    2: Table.DISCRETE,
    3: Table.HOLDING, 6: Table.HOLDING, 16: Table.HOLDING, 22: Table.HOLDING, 23: Table.HOLDING,
    4: Table.INPUT,
}
READ_LIMITS = {1: 2000, 2: 2000, 3: 125, 4: 125, 23: 125, 5: 1, 6: 1, 22: 1}
WRITE_LIMITS = {15: 1968, 16: 123, 23: 121, 5: 1, 6: 1, 22: 1}
WRITE_FUNCTIONS = frozenset({5, 6, 15, 16, 22, 23})
MAX_PENDING = 64  # requests queued on one connection; more are dropped (device overrun)


class ModbusDevice:
    """One unit id: its register map, rendered from the Sim at each request.

    Reads render only the entries the request touches; the waveform block is converted to
    counts once per capture. Nothing is cached between requests otherwise, so a fault or a
    write shows in the very next read.
    """

    def __init__(self, sim: Sim, unit_id: int, entries: Iterable[MapEntry], *,
                 label: bool | None = None) -> None:
        """``label``: name the unit in write-log targets (default: unless it is unit 1)."""
        self.sim = sim
        self.unit_id = unit_id
        self.label = unit_id != UNIT_SKID if label is None else label
        self.entries = tuple(entries)
        self._index: dict[Table, tuple[list[int], list[MapEntry]]] = {}
        for table in Table:
            ordered = sorted((e for e in self.entries if e.table is table),
                             key=lambda e: e.address)
            for before, after in itertools.pairwise(ordered):
                if after.address < before.end:
                    raise ValueError(f"{before.name} and {after.name} overlap")
            self._index[table] = ([e.address for e in ordered], ordered)
        self._wave_key: tuple[int, int] | None = None
        self._wave: npt.NDArray[np.uint16] = np.zeros(0, dtype=np.uint16)
        # Integer entries whose served values are recorded, by entry name (the counter).
        self._served = {e.name: runs for e in self.entries
                        if not e.table.is_bit and not is_float(e.data_type)
                        and e.source != SOURCE_CAPTURE
                        and (runs := sim.served.recorder(e.name)) is not None}

    # -- lookup ------------------------------------------------------------------------------

    def covering(self, table: Table, address: int, count: int) -> list[MapEntry] | None:
        """The entries that cover every address of the range, or None if one is unmapped."""
        starts, entries = self._index[table]
        i = bisect.bisect_right(starts, address) - 1
        if i < 0:
            return None
        found: list[MapEntry] = []
        position, end = address, address + count
        while position < end:
            if i >= len(entries):
                return None
            entry = entries[i]
            if not entry.address <= position < entry.end:
                return None
            found.append(entry)
            position = entry.end
            i += 1
        return found

    def entry(self, name: str) -> MapEntry:
        """The entry called ``name``.

        Raises:
            KeyError: no such entry.
        """
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def target(self, table: Table, address: int, count: int = 1) -> str:
        """How the write log names an address: ``holding 200``, ``unit 2 holding 0-1``."""
        span = f"{address}" if count == 1 else f"{address}-{address + count - 1}"
        prefix = f"unit {self.unit_id} " if self.label else ""
        return f"{prefix}{table.value} {span}"

    # -- reads -------------------------------------------------------------------------------

    def read(self, table: Table, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        """Registers (or bits) ``address .. address + count - 1``, or exception 2."""
        entries = self.covering(table, address, count)
        if entries is None:
            return ExcCodes.ILLEGAL_ADDRESS
        if table.is_bit:
            return [self.source_value(e) >= 0.5 for e in entries]
        end = address + count
        words: list[int] = []
        for entry in entries:
            lo = max(address, entry.address) - entry.address
            hi = min(end, entry.end) - entry.address
            words.extend(self.entry_words(entry, lo, hi))
        return words

    def entry_words(self, entry: MapEntry, lo: int = 0, hi: int | None = None) -> list[int]:
        """Registers ``lo .. hi - 1`` of an entry (offsets within it), rendered now.

        Rendering the whole of a recorded entry notes its value in ``Sim.served``.
        """
        hi = entry.width if hi is None else hi
        if entry.source == SOURCE_CAPTURE:
            block: list[int] = self._waveform(entry)[lo:hi].tolist()
            return block + [0] * (hi - lo - len(block))  # a shorter capture: zeros after it
        raw = register_value(entry, self.source_value(entry))
        served = self._served.get(entry.name)
        if served is not None and lo == 0 and hi == entry.width:
            served.record(int(raw))
        return to_words(raw, entry.data_type, entry.order)[lo:hi]

    def source_value(self, entry: MapEntry) -> float:
        """The engineering value behind an entry, now (sensor faults applied)."""
        source = entry.source
        if not source.startswith("@"):
            return self.sim.signal(source)
        vibration = self.sim.vibration
        if source == SOURCE_CAPTURE_COUNTER:
            return float(vibration.capture_counter)
        if source == SOURCE_SAMPLE_RATE:
            return float(vibration.sample_rate_hz)
        if source == SOURCE_SAMPLE_COUNT:
            return float(vibration.capture_samples)
        if source == SOURCE_SAMPLE_SCALE:
            return round(self._waveform_scale() * 1e6)
        if source == SOURCE_PUSH_BUTTON:
            return 0.0
        raise ValueError(f"{entry.name}: unknown source {source!r}")

    def _waveform_scale(self) -> float:
        for entry in self.entries:
            if entry.source == SOURCE_CAPTURE:
                return entry.scale
        return 0.001

    def _waveform(self, entry: MapEntry) -> npt.NDArray[np.uint16]:
        vibration = self.sim.vibration
        capture = vibration.capture
        key = (id(capture), vibration.capture_counter)
        if key != self._wave_key:
            self._wave = waveform_counts(capture, entry.scale).view(np.uint16)
            self._wave_key = key
        return self._wave

    # -- writes ------------------------------------------------------------------------------

    def write(self, face: str, table: Table, address: int,
              values: Sequence[int] | Sequence[bool]) -> ExcCodes | None:
        """Apply a client write; None when every value was accepted, else the exception."""
        count = len(values)
        logged: Any = values[0] if count == 1 else list(values)
        entries = self.covering(table, address, count)
        if entries is None:
            self.sim.refuse(face, self.target(table, address, count), logged,
                            "no such address")
            return ExcCodes.ILLEGAL_ADDRESS
        read_only = [e.name for e in entries if not e.writable]
        partial = entries[0].address < address or entries[-1].end > address + count
        if read_only or partial:
            reason = (f"read-only: {', '.join(read_only)}" if read_only
                      else f"{entries[0].name}: write covers only part of the value")
            self.sim.refuse(face, self.target(table, address, count), logged, reason)
            return ExcCodes.ILLEGAL_ADDRESS
        refused = False
        for entry in entries:
            offset = entry.address - address
            chunk = values[offset:offset + entry.width]
            if not self._apply(face, entry, decode(entry, chunk)):
                refused = True
        return REFUSED_WRITE if refused else None

    def _apply(self, face: str, entry: MapEntry, value: float | bool) -> bool:
        assert entry.write is not None  # checked by the caller: writable entries only
        target = self.target(entry.table, entry.address)
        return self.sim.write(face, target, entry.write, value).accepted


def waveform_counts(capture: npt.ArrayLike, scale_g: float) -> npt.NDArray[np.int16]:
    """A capture in g as the int16 counts of the waveform block: rint(g / scale), clipped."""
    counts = np.rint(np.asarray(capture, dtype=np.float64) / scale_g)
    clipped: npt.NDArray[np.int16] = np.clip(np.nan_to_num(counts), -32768, 32767).astype(
        np.int16)
    return clipped


def register_value(entry: MapEntry, value: float) -> float:
    """The number a (non-block) register entry holds for ``value``, as a client decodes it.

    Floats as they are; integers scaled, rounded, and wrapped (counters) or saturated at
    the type's limits.
    """
    if is_float(entry.data_type):
        return value
    low, high = INTEGER_RANGES[entry.data_type]
    if not math.isfinite(value):
        raw = high if value > 0 else low if value < 0 else 0
    else:
        raw = round(value / entry.scale) if entry.scale != 1 else round(value)
    span = high - low + 1
    return (raw - low) % span + low if entry.wraps else min(high, max(low, raw))


def encode(entry: MapEntry, value: float) -> list[int]:
    """One value of a (non-block) register entry as its registers."""
    return to_words(register_value(entry, value), entry.data_type, entry.order)


def decode(entry: MapEntry, values: Sequence[int] | Sequence[bool]) -> float | bool:
    """The engineering value a client wrote into one entry."""
    if entry.data_type == "bool":
        return bool(values[0])
    raw = from_words([int(v) for v in values], entry.data_type, entry.order)
    if is_float(entry.data_type) or entry.scale == 1:
        return raw
    inverse = 1 / entry.scale
    if abs(inverse - round(inverse)) < 1e-9:  # 0.1, 0.01: divide, so 505 gives 50.5 exactly
        return raw / round(inverse)
    return raw * entry.scale


class SkidContext:
    """The datastore pymodbus PDUs run against (``ModbusServerContext``'s interface).

    One per face: writes are logged under the face's name.
    """

    def __init__(self, face: str, devices: Mapping[int, ModbusDevice]) -> None:
        self.face = face
        self.devices = dict(devices)
        self._echo: tuple[int, int, list[int] | list[bool]] | None = None

    def device_ids(self) -> list[int]:
        """Unit ids served."""
        return list(self.devices)

    def device(self, unit: int) -> ModbusDevice | None:
        """The device for ``unit``; a device registered as unit 0 takes every other id."""
        return self.devices.get(unit) or self.devices.get(0)

    def _device(self, unit: int) -> ModbusDevice:
        device = self.device(unit)
        if device is None:
            raise KeyError(f"unit {unit} is not served")
        return device

    async def async_getValues(  # pymodbus's datastore interface
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        """Read for a PDU; an ExcCodes value becomes an exception response."""
        table = FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if not 1 <= count <= READ_LIMITS[func_code]:
            return ExcCodes.ILLEGAL_VALUE
        if address + count > 0x10000:
            return ExcCodes.ILLEGAL_ADDRESS
        if func_code in (5, 6) and self._echo is not None:
            echo, self._echo = self._echo, None
            if echo[:2] == (func_code, address):
                return echo[2]
        return self._device(device_id).read(table, address, count)

    async def async_setValues(  # pymodbus's datastore interface
        self, device_id: int, func_code: int, address: int,
        values: list[int] | list[bool],
    ) -> ExcCodes | None:
        """Write for a PDU; an ExcCodes value becomes an exception response."""
        table = FC_TABLE.get(func_code)
        if table is None or func_code not in WRITE_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        if not 1 <= len(values) <= WRITE_LIMITS[func_code]:
            return ExcCodes.ILLEGAL_VALUE
        if address + len(values) > 0x10000:
            return ExcCodes.ILLEGAL_ADDRESS
        result = self._device(device_id).write(self.face, table, address, values)
        if result is None and func_code in (5, 6):
            # FC5/FC6 answer with the request's echo; pymodbus reads the value back instead
            # (a push button would read back false).
            self._echo = (func_code, address, list(values))
        return result


def request_spans(pdu: ModbusPDU) -> list[tuple[int, int]]:
    """The (address, count) ranges a request touches; empty for one without addresses."""
    code = pdu.function_code
    if code == 23:
        request = cast(Any, pdu)
        return [(int(request.read_address), int(request.read_count)),
                (int(request.write_address), int(request.write_count))]
    if code in (5, 6, 22):
        return [(pdu.address, 1)]
    if code == 15:
        return [(pdu.address, len(pdu.bits))]
    if code in (1, 2, 3, 4, 16):
        return [(pdu.address, pdu.count)]
    return []


@dataclass(slots=True)
class Request:
    """One decoded request waiting for its answer.

    ``pdu`` None: pymodbus could not decode it - an unknown function code, or (``known``)
    a known one whose quantity is outside the spec's limits.
    """

    pdu: ModbusPDU | None
    function_code: int
    unit: int
    transaction_id: int
    addr: tuple[Any, ...] | None
    known: bool = False


class Responder:
    """Answers requests for one face: faults first, then the unit's register map.

    ``unit_ids``: the first is the skid PLC (``skid_plc_map``), the second (if any) the
    vibration module (``vibration_module_map``). On TCP (0..255) an id 0 answers every unit
    id the other does not take (``(0,)``: the PLC on any unit id); on RTU ids are 1..247.
    ``serial``: RTU rules for unknown units and broadcast (see the module docstring).
    """

    def __init__(self, sim: Sim, face: str, unit_ids: Sequence[int], *, serial: bool) -> None:
        if not 1 <= len(unit_ids) <= 2 or len(set(unit_ids)) != len(unit_ids):
            raise ValueError("unit_ids: one or two distinct ids (skid PLC, vibration module)")
        low, high = (1, 247) if serial else (0, 255)
        if not all(low <= u <= high for u in unit_ids):
            raise ValueError(f"unit ids are {low}..{high}"
                             + (" on a serial line (0 is broadcast)" if serial else ""))
        self.sim = sim
        self.face = face
        self.unit_ids = tuple(unit_ids)
        self.serial = serial
        maps = unit_maps(sim.vibration.capture_samples)
        roles = (UNIT_SKID, UNIT_VIBRATION)  # the maps, in the order unit_ids names them
        self.devices = {unit: ModbusDevice(sim, unit, maps[role], label=role != UNIT_SKID)
                        for unit, role in zip(self.unit_ids, roles, strict=False)}
        self.context = SkidContext(face, self.devices)
        self.requests: dict[int, int] = {}  # requests taken up, answered or not, by unit id

    def device(self, unit: int) -> ModbusDevice | None:
        """The device answering ``unit`` (TCP: unit_ids 0 stands for every other id)."""
        return self.context.device(unit)

    def accepts(self, unit: int) -> bool:
        """A request for ``unit`` is worth queueing (RTU: others are not for us)."""
        return not self.serial or unit == 0 or unit in self.devices

    async def answer(self, request: Request) -> ModbusPDU | None:
        """The response to send, or None for no answer at all."""
        faults = self.sim.faults
        if not self.accepts(request.unit):
            return None
        self.requests[request.unit] = self.requests.get(request.unit, 0) + 1
        if faults.silent(self.face, request.unit):
            return None
        delay = faults.delay_s(self.face, request.unit)
        if delay > 0:
            await asyncio.sleep(delay)
            if faults.silent(self.face, request.unit):
                return None
        pdu = request.pdu
        if self.serial and request.unit == 0:
            if pdu is not None and pdu.function_code in WRITE_FUNCTIONS:
                for unit in self.devices:
                    await self._run(pdu, unit)
            return None  # broadcast: never answered
        if pdu is None:
            refusal = ExcCodes.ILLEGAL_VALUE if request.known else ExcCodes.ILLEGAL_FUNCTION
            response: ModbusPDU = ExceptionResponse(request.function_code, refusal)
        elif self.device(request.unit) is None:
            response = ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        elif pdu.function_code not in FC_TABLE:  # diagnostics, identification, files...
            response = ExceptionResponse(pdu.function_code, ExcCodes.ILLEGAL_FUNCTION)
        elif (code := self.fault_exception(pdu)) is not None:
            response = ExceptionResponse(pdu.function_code, code)
        else:
            response = await self._run(pdu, request.unit)
        response.transaction_id = request.transaction_id
        response.dev_id = request.unit
        return response

    def fault_exception(self, pdu: ModbusPDU) -> int | None:
        """The exception an injected fault wants for this request, if any."""
        faults = self.sim.faults
        if not faults.active("exception", self.face):
            return None
        spans = request_spans(pdu)
        if not spans:
            return faults.exception_code(self.face, None)
        for start, count in spans:
            for address in range(start, start + count):
                if (code := faults.exception_code(self.face, address)) is not None:
                    return code
        return None

    async def _run(self, pdu: ModbusPDU, unit: int) -> ModbusPDU:
        try:
            context = cast(ModbusServerContext, self.context)  # the same interface
            return await pdu.datastore_update(context, unit)
        except Exception:
            log.exception("%s: request %s failed", self.face, pdu)
            return ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)


class FaceRequestHandler(ServerRequestHandler):
    """One client connection (TCP) or the serial line (RTU) of a pymodbus server.

    Replaces pymodbus's dispatch: every complete frame in the buffer is decoded (pymodbus
    handles one per data event and keeps only the last), queued, and answered in order by a
    worker task through the ``Responder``.
    """

    def __init__(self, owner: ModbusBaseServer, responder: Responder,
                 max_buffer: int | None = None) -> None:
        super().__init__(owner, None, None, None)  # type: ignore[no-untyped-call]  # unannotated in pymodbus
        self.responder = responder
        self._tcp = isinstance(self.framer, FramerSocket)
        if max_buffer is not None:
            self.max_buffer_size = max_buffer  # room for pipelined TCP requests
        self._queue: asyncio.Queue[Request] = asyncio.Queue(MAX_PENDING)
        self._worker: asyncio.Task[None] | None = None

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        """Decode every complete frame in ``data``; returns the bytes used."""
        used = 0
        while used < len(data):
            try:
                size, pdu = self.framer.handleFrame(data[used:], 0, 0)
            except ModbusIOException as exc:  # an unknown function, or a bad quantity
                frame = data[used:]
                at = 7 if self._tcp else 1  # the function code after the MBAP / address
                code = frame[at] if len(frame) > at else exc.fcode or 0
                self._enqueue(Request(None, code, exc.dev_id, exc.transaction_id, addr,
                                      known=code in self.framer.decoder.pdu_table))
                if not self._tcp or len(frame) < 6:
                    return len(data)
                used += int.from_bytes(frame[4:6], "big") + 6  # the MBAP length: skip it
                continue
            except Exception:  # a malformed frame: a device ignores it
                log.debug("%s: undecodable frame %s", self.responder.face, data.hex())
                return len(data)
            if not size:
                break
            used += size
            if pdu is not None and self.responder.accepts(pdu.dev_id):
                self._enqueue(Request(pdu, pdu.function_code, pdu.dev_id,
                                      pdu.transaction_id, addr))
        return used

    def _enqueue(self, request: Request) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(
                self._serve(), name=f"plcsim.{self.responder.face}.connection")
        with contextlib.suppress(asyncio.QueueFull):  # overrun: the request is lost
            self._queue.put_nowait(request)

    async def _serve(self) -> None:
        while True:
            request = await self._queue.get()
            try:
                response = await self.responder.answer(request)
            except Exception:
                log.exception("%s: answering failed", self.responder.face)
                continue
            if response is not None and self.transport is not None:
                self.pdu_send(response, request.addr)

    def flush(self) -> None:
        """Forget queued requests and the one being answered (a line glitch)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._stop_worker()

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None

    def close(self, reconnect: bool = False) -> None:
        """Close the connection and stop answering."""
        self._stop_worker()
        super().close(reconnect)

    def callback_disconnected(self, exc: Exception | None) -> None:
        """The peer went away: stop answering."""
        self._stop_worker()
        super().callback_disconnected(exc)

