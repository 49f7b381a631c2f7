"""The pump skid as an OPC UA server (asyncua): an object tree refreshed every sim tick.

``OpcuaFace(sim, host="127.0.0.1", port=0, namespace="urn:edgetwin:plcsim")``; ``start()``
returns ``{"protocol": "opcua", "endpoint": "opc.tcp://127.0.0.1:<port>/plcsim",
"namespace": <uri>, "namespace_index": <n>}``, plus ``"security"``, ``"server_certificate"``
(a DER file), ``"trusted"`` and ``"login"`` when ``security`` (a ``ServerSecurity``, see
``opcua_security``) asks for more than the default: security None, anonymous login.
Monitored items follow the spec where asyncua's server does not (``opcua_monitoring``):
filters are checked per item, percent deadbands work on the AnalogItems below.

Nodes, all with string NodeIds ``ns=<n>;s=PumpSkid.<path>`` (e.g.
``ns=2;s=PumpSkid.Motor.SpeedSetpoint``; ``<n>`` is ``namespace_index``)::

    PumpSkid                              object
      Motor.Speed              Double     rpm   0..1800   AnalogItem
      Motor.SpeedSetpoint      Double     rpm   0..1800   AnalogItem, writable
      Motor.Current            Double     A     0..25     AnalogItem
      Motor.Temperature        Double     degC  0..150    AnalogItem
      Motor.Running            Boolean
      Pump.Flow                Double     m3/h  0..20     AnalogItem
      Pump.Pressure            Double     bar   0..10     AnalogItem
      Tank.Level               Double     %     0..100    AnalogItem
      Tank.LevelLow            Boolean
      InletValve.Position      Double     %     0..100    AnalogItem, writable
      Run                      Boolean                    writable
      Tripped                  Boolean
      TripReason               String     ("" when not tripped)
      Counter                  UInt32     plant ticks, wraps at 2**32
      VibrationDE.Capture      Double[]   g     -50..50   AnalogItem, latest capture
      VibrationDE.CaptureCounter UInt32   increments with every new capture
      VibrationDE.SampleRateHz Double
      ResetTrip()              method, no arguments

A client Read of ``Counter``'s value and a Publish response carrying a data-change
notification of it are noted in ``Sim.served`` (see ``plcsim.served``), with the value the
client gets.

Every AnalogItem has the standard ``EngineeringUnits`` (EUInformation, UNECE codes RPM,
AMP, CEL, MQH, BAR, P1, K40) and ``EURange`` properties, NodeIds ``<path>.EngineeringUnits``
and ``<path>.EURange``. Values come from ``Sim.signal`` (so sensor faults apply) and are
written into the address space after every sim tick, only when they changed.

Client writes to the three writable variables go through ``Sim.write`` (PLC logic decides,
the write log records them with the NodeId string as target); a refusal answers that
operation with a Bad status (the other operations of the request proceed):
BadOutOfRange for a refused setpoint or valve position, BadInvalidState for a refused
``Run`` or ``ResetTrip`` (trip or interlock), BadOutOfService while the PLC reboots,
BadTypeMismatch for a value of the wrong type (Double, Double, Boolean) and BadNotWritable
for any other node or attribute of our namespace (these two logged with ``Sim.refuse``).

Faults (face name ``opcua``):
- dropout: open connections are frozen at once (the server stops reading them, so requests
  time out; values stop changing; a subscription may still get a keep-alive for a publish
  request sent before), new connections are closed at once; within a tick of the fault
  ending all resumes, and the frozen connections answer their queued requests;
- reboot: every connection is closed and new ones are closed at once until it ends (sessions
  and subscriptions are lost, as on a real restart);
- disconnect: open connections are closed; new ones are accepted;
- latency: Read, Write and Call answers are delayed by ``delay_s`` (Browse and Publish not).
- uncertain: every value of our namespace is served with an Uncertain status (``code``,
  default UncertainLastUsableValue: an input card that doubts its reading), written values
  included; within a tick of the fault ending they are Good again.

asyncua builds its standard address space in ``Server.init``: about 1.5 s of CPU, so
``start`` takes that long (its shelf-file cache is slower still without a gdbm module).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.callback import CallbackService, CallbackType, ServerItemCallback
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AddressSpace, AttributeService
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from plcsim import opcua_monitoring, opcua_security
from plcsim.faults import Fault
from plcsim.opcua_security import ServerSecurity
from plcsim.plant import MAX_SPEED_RPM
from plcsim.served import ServedRuns
from plcsim.sim import Sim

FACE = "opcua"
ENDPOINT_PATH = "/plcsim"
CEFACT_URI = "http://www.opcfoundation.org/UA/units/un/cefact"
ROOT = "PumpSkid"
RESET_TRIP = f"{ROOT}.ResetTrip"
UINT32_MODULUS = 2**32

Unit = tuple[str, str, str]  # UNECE Recommendation 20 common code, symbol, name
RPM: Unit = ("RPM", "r/min", "revolutions per minute")
AMPERE: Unit = ("AMP", "A", "ampere")
CELSIUS: Unit = ("CEL", "°C", "degree Celsius")
CUBIC_METRE_PER_HOUR: Unit = ("MQH", "m³/h", "cubic metre per hour")
BAR: Unit = ("BAR", "bar", "bar [unit of pressure]")
PERCENT: Unit = ("P1", "%", "percent")
STANDARD_GRAVITY: Unit = ("K40", "gn", "standard acceleration of free fall")


@dataclass(frozen=True, slots=True)
class Point:
    """One variable: where it lives, its type, how to read it, and what a write means."""

    path: str  # below PumpSkid, e.g. "Motor.Speed"
    vtype: ua.VariantType
    read: Callable[[Sim], Any]
    unit: Unit | None = None
    eu_range: tuple[float, float] | None = None
    plant_input: str | None = None  # the Sim.write name when writable
    refused_status: int = StatusCodes.BadOutOfRange  # what a PLC refusal answers
    served_as: str | None = None  # its Sim.served name: values handed out are noted there

    @property
    def node_path(self) -> str:
        """The string identifier of its NodeId."""
        return f"{ROOT}.{self.path}"


def _signal(name: str) -> Callable[[Sim], float]:
    return lambda sim: sim.signal(name)


def _vibration_capture(sim: Sim) -> list[float]:
    return [float(x) for x in sim.vibration.capture]


POINTS: tuple[Point, ...] = (
    Point("Motor.Speed", ua.VariantType.Double, _signal("speed"), RPM, (0.0, MAX_SPEED_RPM)),
    Point("Motor.SpeedSetpoint", ua.VariantType.Double, _signal("speed_setpoint"), RPM,
          (0.0, MAX_SPEED_RPM), plant_input="speed_setpoint_rpm"),
    Point("Motor.Current", ua.VariantType.Double, _signal("current"), AMPERE, (0.0, 25.0)),
    Point("Motor.Temperature", ua.VariantType.Double, _signal("motor_temp"), CELSIUS,
          (0.0, 150.0)),
    Point("Motor.Running", ua.VariantType.Boolean, _signal("running")),
    Point("Pump.Flow", ua.VariantType.Double, _signal("flow"), CUBIC_METRE_PER_HOUR,
          (0.0, 20.0)),
    Point("Pump.Pressure", ua.VariantType.Double, _signal("pressure"), BAR, (0.0, 10.0)),
    Point("Tank.Level", ua.VariantType.Double, _signal("tank_level"), PERCENT, (0.0, 100.0)),
    Point("Tank.LevelLow", ua.VariantType.Boolean, _signal("level_low")),
    Point("InletValve.Position", ua.VariantType.Double, _signal("valve_position"), PERCENT,
          (0.0, 100.0), plant_input="valve_position_pct"),
    Point("Run", ua.VariantType.Boolean, _signal("run"), plant_input="run",
          refused_status=StatusCodes.BadInvalidState),
    Point("Tripped", ua.VariantType.Boolean, _signal("tripped")),
    Point("TripReason", ua.VariantType.String, lambda sim: sim.plant.trip_reason or ""),
    Point("Counter", ua.VariantType.UInt32, _signal("counter"), served_as="counter"),
    Point("VibrationDE.Capture", ua.VariantType.Double, _vibration_capture, STANDARD_GRAVITY,
          (-50.0, 50.0)),
    Point("VibrationDE.CaptureCounter", ua.VariantType.UInt32,
          lambda sim: sim.vibration.capture_counter),
    Point("VibrationDE.SampleRateHz", ua.VariantType.Double,
          lambda sim: sim.vibration.sample_rate_hz),
)
OBJECTS = ("Motor", "Pump", "Tank", "InletValve", "VibrationDE")
CAPTURE = "PumpSkid.VibrationDE.Capture"  # rebuilt only when CaptureCounter moves


def unece_unit_id(code: str) -> int:
    """EUInformation.UnitId of a UNECE common code (OPC UA Part 8, EUInformation)."""
    unit_id = 0
    for char in code:
        unit_id = unit_id << 8 | ord(char)
    return unit_id


def _coerce(vtype: ua.VariantType, value: Any) -> Any:
    """A signal (a float, possibly faulty) as the Python value its variant type needs."""
    if vtype is ua.VariantType.Boolean:
        return bool(value >= 0.5)
    if vtype is ua.VariantType.UInt32:
        number = float(value)
        return int(number) % UINT32_MODULUS if math.isfinite(number) else 0
    if vtype is ua.VariantType.Double and not isinstance(value, list):
        return float(value)
    return value


def _free_port(host: str) -> int:
    """A port that is free now: asyncua advertises the port it is given, so not 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# asyncua annotates with int subclasses (ua.Int16, ua.UInt32, ...); these keep mypy content.

def _node(identifier: str, idx: int) -> ua.NodeId:
    return ua.NodeId(ua.String(identifier), ua.Int16(idx))


def _standard(object_id: int) -> ua.NodeId:
    return ua.NodeId(ua.Int32(object_id))


def _status(code: int = StatusCodes.Good) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def _data_value(variant: ua.Variant, status: int = StatusCodes.Good) -> ua.DataValue:
    now = ua.DateTime.now(UTC)
    return ua.DataValue(variant, _status(status), SourceTimestamp=now, ServerTimestamp=now)


class _PlcAttributeService(AttributeService):
    """asyncua's Write service with our namespace routed through the PLC logic.

    Replacing the service (instead of a PreWrite callback or a value setter, which can only
    fail the whole request) lets each refused operation answer its own Bad status.
    """

    def __init__(self, aspace: AddressSpace, namespace_index: int,
                 write: Callable[[ua.WriteValue], Any]) -> None:
        super().__init__(aspace)
        self._namespace_index = namespace_index
        self._write = write

    async def write(self, params: ua.WriteParameters,
                    user: User = User(role=UserRole.Admin)  # noqa: B008  # asyncua's default
                    ) -> list[ua.StatusCode]:
        """Answer each operation: ours through the PLC, the standard nodes as asyncua does."""
        results: list[ua.StatusCode] = []
        for item in params.NodesToWrite:
            if item.NodeId.NamespaceIndex == self._namespace_index:
                results.append(await self._write(item))
            else:
                single = ua.WriteParameters(NodesToWrite=[item])
                results.extend(await super().write(single, user))
        return results


class OpcuaFace:
    """The skid on OPC UA; see the module docstring for nodes, writes and faults."""

    name = FACE

    def __init__(self, sim: Sim, host: str = "127.0.0.1", port: int = 0,
                 namespace: str = "urn:edgetwin:plcsim",
                 security: ServerSecurity | None = None) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.namespace = namespace
        self.namespace_index = 0
        self.security = security or ServerSecurity()
        self.server_certificate: Path | None = None  # DER or PEM; set by start() when secured
        self._generated: tuple[bytes, bytes] | None = None  # made once: a restart keeps it
        self._scratch: Path | None = None  # where a generated certificate is published
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._points = {p.node_path: p for p in POINTS}
        self._served = {p.node_path: runs for p in POINTS if p.served_as is not None
                        and (runs := sim.served.recorder(p.served_as)) is not None}
        self._last: dict[str, Any] = {}
        self._capture_counter = -1
        self._status: int = StatusCodes.Good  # what the values are served with now
        self._frozen: list[asyncio.Transport] = []
        self._max_connections = 0
        self._refusing = False

    @property
    def endpoint(self) -> str:
        """The opc.tcp URL clients connect to."""
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        return f"opc.tcp://{netloc}:{self.port}{ENDPOINT_PATH}"

    def node_id(self, path: str) -> ua.NodeId:
        """NodeId of ``path`` (e.g. ``PumpSkid.Motor.Speed``) in our namespace."""
        return _node(path, self.namespace_index)

    # -- Face --------------------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        """Build the address space, listen, and refresh it after every tick.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("OpcuaFace already started")
        if self.port == 0:
            self.port = _free_port(self.host)
        server = Server()
        opcua_monitoring.install(server.iserver, self._eu_range, self._served_runs)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("plcsim pump skid")
        self.namespace_index = await server.register_namespace(self.namespace)
        if self.security.secured and self.security.certificate is None:
            self._generated = self._generated or opcua_security.self_signed(self.host)
        certificate = await opcua_security.install(server, self.security, self._generated)
        await self._build(server)
        iserver = server.iserver
        iserver.attribute_service = _PlcAttributeService(
            iserver.aspace, self.namespace_index, self._client_write)
        server.subscribe_server_callback(CallbackType.PreRead, self._delay)
        server.subscribe_server_callback(CallbackType.PreWrite, self._delay)
        server.subscribe_server_callback(CallbackType.PostRead, self._note_reads)
        await server.start()
        self._server = server
        if certificate is not None:
            self.server_certificate = self.security.certificate or self._publish(certificate)
        self._max_connections = iserver.max_connections
        self.sim.on_reboot(self._on_reboot)
        self.sim.on_disconnect(self._on_disconnect)
        self.sim.faults.listeners.append(self._on_fault)
        await self._refresh()
        self._task = asyncio.create_task(self._serve(), name="plcsim.opcua.refresh")
        listening: dict[str, Any] = {
            "protocol": "opcua", "endpoint": self.endpoint, "namespace": self.namespace,
            "namespace_index": self.namespace_index, **self.security.describe()}
        if self.server_certificate is not None:
            listening["server_certificate"] = str(self.server_certificate)
        return listening

    async def stop(self) -> None:
        """Stop refreshing, close every connection and the listener."""
        with contextlib.suppress(ValueError):
            self.sim.faults.listeners.remove(self._on_fault)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # and a cancel of stop() itself goes through
            self._task = None
        server, self._server = self._server, None
        if server is not None:
            clock = server.iserver.time_task  # its 1 s sleep would delay stop() by up to 1 s
            if clock is not None:
                clock.cancel()
                await asyncio.wait([clock])
                server.iserver.time_task = None
            await server.stop()
        self._frozen.clear()
        self._refusing = False
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def _publish(self, certificate: bytes) -> Path:
        """Write a generated certificate where clients can pin it.

        The same path after a restart (``stop`` removes the file, ``start`` writes it again).
        """
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="plcsim-opcua-"))
        else:
            self._scratch.mkdir(mode=0o700, exist_ok=True)
        path = self._scratch / "server-cert.der"
        path.write_bytes(certificate)
        return path

    def _eu_range(self, node_id: ua.NodeId) -> tuple[float, float] | None:
        """The EURange of one of our AnalogItems (for percent deadbands)."""
        if node_id.NamespaceIndex != self.namespace_index:
            return None
        point = self._points.get(str(node_id.Identifier))
        return point.eu_range if point is not None else None

    def _served_runs(self, node_id: ua.NodeId) -> ServedRuns | None:
        """The served-value record of one of our nodes, if its values are recorded."""
        if node_id.NamespaceIndex != self.namespace_index:
            return None
        return self._served.get(str(node_id.Identifier))

    def _note_reads(self, event: ServerItemCallback, dispatcher: CallbackService) -> None:
        """PostRead hook: note the recorded values a client's Read response carries."""
        del dispatcher
        if not event.is_external or not self._served:
            return
        params: ua.ReadParameters = event.request_params
        values: list[ua.DataValue] = event.response_params
        for item, value in zip(params.NodesToRead, values, strict=True):
            if item.AttributeId == AttributeIds.Value and not item.IndexRange and (
                    runs := self._served_runs(item.NodeId)) is not None:
                opcua_monitoring.note_served(runs, value)

    # -- address space -----------------------------------------------------------------------

    async def _build(self, server: Server) -> None:
        idx = self.namespace_index
        items = [_object(self.node_id(ROOT), _standard(ObjectIds.ObjectsFolder),
                         ObjectIds.Organizes, ROOT, idx)]
        items += [_object(self.node_id(f"{ROOT}.{name}"), self.node_id(ROOT),
                          ObjectIds.HasComponent, name, idx) for name in OBJECTS]
        for point in POINTS:
            parent, _, name = point.node_path.rpartition(".")
            node = self.node_id(point.node_path)
            value = ua.Variant(_coerce(point.vtype, point.read(self.sim)), point.vtype)
            items.append(_variable(node, self.node_id(parent), name, idx, value, point))
            if point.unit is not None:
                code, symbol, description = point.unit
                units = ua.EUInformation(
                    ua.String(CEFACT_URI), ua.Int32(unece_unit_id(code)),
                    ua.LocalizedText(symbol), ua.LocalizedText(description))
                items.append(_property(self.node_id(f"{point.node_path}.EngineeringUnits"),
                                       node, "EngineeringUnits", units, ObjectIds.EUInformation))
            if point.eu_range is not None:
                low, high = point.eu_range
                items.append(_property(self.node_id(f"{point.node_path}.EURange"), node,
                                       "EURange", ua.Range(ua.Double(low), ua.Double(high)),
                                       ObjectIds.Range))
        for result in await server.iserver.isession.add_nodes(items):
            result.StatusCode.check()
        skid = server.get_node(self.node_id(ROOT))
        await skid.add_method(self.node_id(RESET_TRIP), ua.QualifiedName("ResetTrip", idx),
                              self._reset_trip, [], [])

    async def _refresh(self) -> None:
        """Copy the signals into the address space; only changed values are written."""
        server = self._server
        if server is None:
            return
        status = self._fault_status()
        if status != self._status:  # every value again, with its new status
            self._status = status
            self._last.clear()
            self._capture_counter = -1
        counter = self.sim.vibration.capture_counter
        for path, point in self._points.items():
            if path == CAPTURE:
                if counter == self._capture_counter:
                    continue
                self._capture_counter = counter
            value = _coerce(point.vtype, point.read(self.sim))
            if self._last.get(path) == value:
                continue
            self._last[path] = value
            await server.write_attribute_value(
                self.node_id(path), _data_value(ua.Variant(value, point.vtype), status))

    def _fault_status(self) -> int:
        """The status an ``uncertain`` fault serves values with; Good without one."""
        fault = self.sim.faults.first("uncertain", FACE)
        if fault is None:
            return StatusCodes.Good
        return int(fault.params.get("code", StatusCodes.UncertainLastUsableValue))

    async def _serve(self) -> None:
        """After every tick (or ``tick_s`` when the sim is stepped by hand): faults, values."""
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancel that lands with
            # a tick, and this loop would run on with stop() waiting for it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.sim.tick_s):
                    await self.sim.ticked.wait()
            if self.sim.rebooting:
                self._cut()
                self._refuse_new(True)
            elif self.sim.faults.silent(FACE):
                self._freeze()
            else:
                self._thaw()
                await self._refresh()

    # -- writes and the method ---------------------------------------------------------------

    async def _client_write(self, item: ua.WriteValue) -> ua.StatusCode:
        """One client write into our namespace, decided by the PLC; returns its status."""
        target = item.NodeId.to_string()
        variant = item.Value.Value if item.Value is not None else None
        value = variant.Value if variant is not None else None
        point = self._points.get(str(item.NodeId.Identifier))
        if item.AttributeId != AttributeIds.Value or point is None or not point.plant_input:
            if item.AttributeId != AttributeIds.Value:
                target += f" ({AttributeIds(item.AttributeId).name})"
            self.sim.refuse(FACE, target, value, "not writable")
            return _status(StatusCodes.BadNotWritable)
        if variant is None or variant.VariantType != point.vtype or item.IndexRange:
            got = "an index range" if item.IndexRange else (
                variant.VariantType.name if variant is not None else "no value")
            self.sim.refuse(FACE, target, value, f"expected {point.vtype.name}, got {got}")
            return _status(StatusCodes.BadTypeMismatch)
        value = _coerce(point.vtype, value)
        result = self.sim.write(FACE, target, point.plant_input, value)
        if not result.accepted:
            return _status(self._refusal(point.refused_status))
        self._last[point.node_path] = value
        if self._server is not None:
            await self._server.write_attribute_value(
                item.NodeId, _data_value(ua.Variant(value, point.vtype), self._fault_status()))
        return _status()

    async def _reset_trip(self, parent: ua.NodeId) -> ua.StatusCode | list[ua.Variant]:
        """``PumpSkid.ResetTrip()``: the PLC clears a trip once the motor has cooled."""
        del parent
        await self._sleep_latency()
        result = self.sim.write(FACE, self.node_id(RESET_TRIP).to_string(), "reset_trip", True)
        if not result.accepted:
            return _status(self._refusal(StatusCodes.BadInvalidState))
        return []

    def _refusal(self, status: int) -> int:
        """The Bad status of a refused write (its reason is in the write log)."""
        return StatusCodes.BadOutOfService if self.sim.rebooting else status

    # -- faults ------------------------------------------------------------------------------

    async def _delay(self, event: ServerItemCallback, dispatcher: CallbackService) -> None:
        """PreRead/PreWrite hook: a latency fault delays this connection's answer."""
        del dispatcher
        if event.is_external:
            await self._sleep_latency()

    async def _sleep_latency(self) -> None:
        delay_s = self.sim.faults.delay_s(FACE)
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    def _on_fault(self, fault: Fault) -> None:
        """A dropout freezes connections at once, not at the next tick."""
        if fault.kind == "dropout" and fault.covers(FACE) and self._server is not None:
            self._freeze()

    def _on_reboot(self) -> None:
        if self._server is not None:
            self._cut()
            self._refuse_new(True)

    def _on_disconnect(self, target: str) -> None:
        if target in (FACE, "*") and self._server is not None:
            self._cut()

    def _transports(self) -> list[asyncio.Transport]:
        server = self._server
        if server is None or server.bserver is None:
            return []
        return [c.transport for c in server.bserver.clients if c.transport is not None]

    def _cut(self) -> None:
        """Close every open connection (its session and subscriptions go with it)."""
        for transport in self._transports():
            transport.close()
        self._frozen.clear()

    def _freeze(self) -> None:
        """Stop reading open connections, so their requests time out; refuse new ones."""
        self._refuse_new(True)
        for transport in self._transports():
            if transport not in self._frozen and not transport.is_closing():
                transport.pause_reading()
                self._frozen.append(transport)

    def _thaw(self) -> None:
        self._refuse_new(False)
        for transport in self._frozen:
            if not transport.is_closing():
                transport.resume_reading()
        self._frozen.clear()

    def _refuse_new(self, refuse: bool) -> None:
        """Refuse new connections: asyncua closes them at once beyond ``max_connections``."""
        if self._server is None or refuse == self._refusing:
            return
        self._refusing = refuse
        self._server.iserver.max_connections = 0 if refuse else self._max_connections


# -- AddNodes items ------------------------------------------------------------------------


def _object(node_id: ua.NodeId, parent: ua.NodeId, reference: int, name: str,
            idx: int) -> ua.AddNodesItem:
    attrs = ua.ObjectAttributes(DisplayName=ua.LocalizedText(name),
                                Description=ua.LocalizedText(name))
    return ua.AddNodesItem(
        ParentNodeId=parent, ReferenceTypeId=_standard(reference), RequestedNewNodeId=node_id,
        BrowseName=ua.QualifiedName(name, idx), NodeClass=ua.NodeClass.Object,
        NodeAttributes=attrs, TypeDefinition=_standard(ObjectIds.BaseObjectType))


def _variable(node_id: ua.NodeId, parent: ua.NodeId, name: str, idx: int,
              value: ua.Variant, point: Point) -> ua.AddNodesItem:
    access = ua.AccessLevel.CurrentRead.mask
    if point.plant_input:
        access |= ua.AccessLevel.CurrentWrite.mask
    attrs = ua.VariableAttributes(
        DisplayName=ua.LocalizedText(name), Description=ua.LocalizedText(point.node_path),
        Value=value, DataType=_standard(point.vtype.value),
        AccessLevel=ua.Byte(access), UserAccessLevel=ua.Byte(access), Historizing=False)
    if isinstance(value.Value, list):
        attrs.ValueRank = ua.Int32(ua.ValueRank.OneDimension)
        attrs.ArrayDimensions = [ua.UInt32(0)]
    else:
        attrs.ValueRank = ua.Int32(ua.ValueRank.Scalar)
    analog = point.eu_range is not None
    return ua.AddNodesItem(
        ParentNodeId=parent, ReferenceTypeId=_standard(ObjectIds.HasComponent),
        RequestedNewNodeId=node_id, BrowseName=ua.QualifiedName(name, idx),
        NodeClass=ua.NodeClass.Variable, NodeAttributes=attrs,
        TypeDefinition=_standard(ObjectIds.AnalogItemType if analog
                                 else ObjectIds.BaseDataVariableType))


def _property(node_id: ua.NodeId, parent: ua.NodeId, name: str, value: Any,
              data_type: int) -> ua.AddNodesItem:
    read_only = ua.Byte(ua.AccessLevel.CurrentRead.mask)
    attrs = ua.VariableAttributes(
        DisplayName=ua.LocalizedText(name), Description=ua.LocalizedText(name),
        Value=ua.Variant(value, ua.VariantType.ExtensionObject),
        DataType=_standard(data_type), ValueRank=ua.Int32(ua.ValueRank.Scalar),
        AccessLevel=read_only, UserAccessLevel=read_only)
    return ua.AddNodesItem(
        ParentNodeId=parent, ReferenceTypeId=_standard(ObjectIds.HasProperty),
        RequestedNewNodeId=node_id, BrowseName=ua.QualifiedName(name, 0),  # standard names
        NodeClass=ua.NodeClass.Variable, NodeAttributes=attrs,
        TypeDefinition=_standard(ObjectIds.PropertyType))
