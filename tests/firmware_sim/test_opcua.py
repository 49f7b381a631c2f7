"""plcsim's OPC UA face, driven by a real asyncua client over loopback (no mocks)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from plcsim.opcua_face import OpcuaFace, unece_unit_id
from plcsim.opcua_monitoring import beyond
from plcsim.sim import Sim
from tests.helpers.opcua_client import CONNECTION_FAILED, connected

pytestmark = pytest.mark.sim
WAIT_S = 5.0


@pytest.fixture
def sim(ticking_sim: Sim) -> Sim:
    """These faces follow the plant live: the ticking simulation."""
    return ticking_sim


@pytest.fixture
async def listening(sim: Sim) -> AsyncIterator[dict[str, Any]]:
    """A started OPC UA face on a free loopback port; its listening description."""
    face = OpcuaFace(sim)
    description = await face.start()
    yield description
    await face.stop()


@pytest.fixture
async def client(listening: dict[str, Any]) -> AsyncIterator[Client]:
    async with connected(listening["endpoint"]) as opened:
        yield opened


def node(client: Client, listening: dict[str, Any], path: str) -> Node:
    return client.get_node(f"ns={listening['namespace_index']};s={path}")


async def eventually(read: Callable[[], Awaitable[Any]], check: Callable[[Any], bool]) -> Any:
    """Read until ``check`` holds (the sim ticks every 50 ms)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            value = await read()
            if check(value):
                return value
            await asyncio.sleep(0.05)


async def test_listening_tree_units_and_values(
    sim: Sim, listening: dict[str, Any], client: Client
) -> None:
    """The endpoint, the namespace, the node tree, units and ranges, live values."""
    port = int(listening["endpoint"].rsplit(":", 1)[1].split("/")[0])
    assert listening == {"protocol": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{port}/plcsim",
                         "namespace": "urn:edgetwin:plcsim",
                         "namespace_index": listening["namespace_index"]}
    assert port > 0
    assert await client.get_namespace_index("urn:edgetwin:plcsim") == listening["namespace_index"]

    skid = await client.nodes.objects.get_child(f"{listening['namespace_index']}:PumpSkid")
    names = {(await child.read_browse_name()).Name for child in await skid.get_children()}
    assert names == {"Motor", "Pump", "Tank", "InletValve", "VibrationDE", "Run", "Tripped",
                     "TripReason", "Counter", "ResetTrip"}
    motor = node(client, listening, "PumpSkid.Motor")
    motor_names = {(await c.read_browse_name()).Name for c in await motor.get_children()}
    assert motor_names == {"Speed", "SpeedSetpoint", "Current", "Temperature", "Running"}

    temperature = node(client, listening, "PumpSkid.Motor.Temperature")
    units = await (await temperature.get_child("0:EngineeringUnits")).read_value()
    assert units.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
    assert units.UnitId == unece_unit_id("CEL") == 4408652
    assert units.DisplayName.Text == "°C"
    eu_range = await (await temperature.get_child("0:EURange")).read_value()
    assert (eu_range.Low, eu_range.High) == (0.0, 150.0)
    type_definition = await temperature.read_type_definition()
    assert type_definition is not None and type_definition.Identifier == ObjectIds.AnalogItemType
    flow_units = await node(client, listening, "PumpSkid.Pump.Flow.EngineeringUnits").read_value()
    assert flow_units.UnitId == unece_unit_id("MQH")

    expected = {
        "PumpSkid.Motor.Speed": ("speed", 0.5),
        "PumpSkid.Motor.SpeedSetpoint": ("speed_setpoint", 0.0),
        "PumpSkid.Motor.Current": ("current", 0.1),
        "PumpSkid.Motor.Temperature": ("motor_temp", 0.1),
        "PumpSkid.Pump.Flow": ("flow", 0.2),
        "PumpSkid.Pump.Pressure": ("pressure", 0.1),
        "PumpSkid.Tank.Level": ("tank_level", 0.1),
        "PumpSkid.InletValve.Position": ("valve_position", 0.0),
        "PumpSkid.Counter": ("counter", 3.0),
        "PumpSkid.Run": ("run", 0.0),
        "PumpSkid.Motor.Running": ("running", 0.0),
        "PumpSkid.Tripped": ("tripped", 0.0),
        "PumpSkid.Tank.LevelLow": ("level_low", 0.0),
    }
    for path, (signal, tolerance) in expected.items():
        value = await node(client, listening, path).read_value()
        assert abs(float(value) - sim.signal(signal)) <= tolerance, path
    assert await node(client, listening, "PumpSkid.TripReason").read_value() == ""
    capture = await node(client, listening, "PumpSkid.VibrationDE.Capture").read_value()
    assert len(capture) == sim.vibration.capture_samples
    rate = await node(client, listening, "PumpSkid.VibrationDE.SampleRateHz").read_value()
    assert rate == sim.vibration.sample_rate_hz


async def test_counter_subscription_notifies_every_tick(
    listening: dict[str, Any], client: Client
) -> None:
    """A data-change subscription on Counter sees it count up as the sim ticks."""
    seen: asyncio.Queue[int] = asyncio.Queue()

    class Handler:
        def datachange_notification(self, node: Node, val: int, data: Any) -> None:
            seen.put_nowait(val)

    subscription = await client.create_subscription(50, Handler())
    await subscription.subscribe_data_change(node(client, listening, "PumpSkid.Counter"))
    values: list[int] = []
    async with asyncio.timeout(WAIT_S):
        while len(values) < 5:
            values.append(await seen.get())
    assert values == sorted(values)
    assert values[-1] > values[0]
    await subscription.delete()


async def test_writes_go_through_the_plc(
    sim: Sim, listening: dict[str, Any], client: Client
) -> None:
    """Accepted writes change the plant and are logged; refused ones answer Bad and are logged."""
    setpoint = node(client, listening, "PumpSkid.Motor.SpeedSetpoint")
    await setpoint.write_value(900.0)
    assert await setpoint.read_value() == 900.0
    assert sim.plant.speed_setpoint_rpm == 900.0
    await eventually(node(client, listening, "PumpSkid.Motor.Speed").read_value,
                     lambda rpm: rpm < 1400)
    target = f"ns={listening['namespace_index']};s=PumpSkid.Motor.SpeedSetpoint"
    accepted = sim.writes.query(face="opcua", name="speed_setpoint_rpm", accepted=True)
    assert [(r.target, r.value) for r in accepted] == [(target, 900.0)]

    with pytest.raises(UaStatusCodeError) as refused:
        await setpoint.write_value(5000.0)
    assert refused.value.code == StatusCodes.BadOutOfRange
    assert sim.plant.speed_setpoint_rpm == 900.0
    [record] = sim.writes.query(face="opcua", accepted=False)
    assert (record.target, record.value) == (target, 5000.0)
    assert record.reason is not None and "outside" in record.reason

    with pytest.raises(UaStatusCodeError) as mistyped:
        await setpoint.write_value(ua.Variant(700.0, ua.VariantType.Float))
    assert mistyped.value.code == StatusCodes.BadTypeMismatch
    with pytest.raises(UaStatusCodeError) as read_only:
        await node(client, listening, "PumpSkid.Motor.Speed").write_value(5.0)
    assert read_only.value.code == StatusCodes.BadNotWritable
    assert len(sim.writes.query(face="opcua", accepted=False)) == 3

    await node(client, listening, "PumpSkid.InletValve.Position").write_value(30.0)
    assert sim.plant.valve_position_pct == 30.0
    await node(client, listening, "PumpSkid.Run").write_value(False)
    assert sim.plant.run is False
    await eventually(node(client, listening, "PumpSkid.Motor.Running").read_value,
                     lambda running: running is False)


async def test_reset_trip_is_refused_while_hot(
    sim: Sim, listening: dict[str, Any], client: Client
) -> None:
    """ResetTrip answers Bad while the motor is hot and clears the trip once it cooled."""
    sim.plant.tripped = True
    sim.plant.trip_reason = "motor over-temperature"
    sim.plant.motor_temp_c = 99.0
    skid = node(client, listening, "PumpSkid")
    method = f"{listening['namespace_index']}:ResetTrip"
    with pytest.raises(UaStatusCodeError) as refused:
        await skid.call_method(method)
    assert refused.value.code == StatusCodes.BadInvalidState
    assert sim.plant.tripped
    with pytest.raises(UaStatusCodeError):  # the trip holds Run off too
        await node(client, listening, "PumpSkid.Run").write_value(True)

    sim.plant.motor_temp_c = 70.0
    await skid.call_method(method)
    assert not sim.plant.tripped
    await eventually(node(client, listening, "PumpSkid.Tripped").read_value,
                     lambda tripped: tripped is False)
    resets = sim.writes.query(face="opcua", name="reset_trip")
    assert [r.accepted for r in resets] == [False, True]
    assert resets[0].target == f"ns={listening['namespace_index']};s=PumpSkid.ResetTrip"


async def test_dropout_times_out_then_the_same_session_recovers(
    sim: Sim, listening: dict[str, Any]
) -> None:
    """Dropout: requests get no answer and new connections fail; clearing it resumes both."""
    async with connected(listening["endpoint"], timeout_s=0.5) as opened:
        counter = node(opened, listening, "PumpSkid.Counter")
        before = await counter.read_value()
        fault = sim.faults.add("dropout", "opcua")
        with pytest.raises(TimeoutError):
            await counter.read_value()
        with pytest.raises(CONNECTION_FAILED):
            async with connected(listening["endpoint"], timeout_s=0.5):
                pass
        sim.faults.clear(fault.id)
        await eventually(counter.read_value, lambda value: value > before)

    latency = sim.faults.add("latency", "opcua", delay_s=0.3)
    async with connected(listening["endpoint"]) as opened:
        started = time.monotonic()
        await node(opened, listening, "PumpSkid.Counter").read_value()
        assert time.monotonic() - started >= 0.3
        sim.faults.clear(latency.id)
        started = time.monotonic()
        await node(opened, listening, "PumpSkid.Counter").read_value()
        assert time.monotonic() - started < 0.3


async def test_uncertain_serves_every_value_uncertain_until_it_ends(
    sim: Sim, listening: dict[str, Any], client: Client
) -> None:
    """An uncertain fault: reads and written values carry its status; clearing it restores Good."""
    temp = node(client, listening, "PumpSkid.Motor.Temperature")
    setpoint = node(client, listening, "PumpSkid.Motor.SpeedSetpoint")

    def read(variable: Node) -> Callable[[], Awaitable[ua.DataValue]]:
        return lambda: variable.read_data_value(raise_on_bad_status=False)

    assert (await read(temp)()).StatusCode.value == StatusCodes.Good
    fault = sim.faults.add("uncertain", "opcua")
    uncertain = await eventually(read(temp), lambda dv: not dv.StatusCode.is_good())
    assert uncertain.StatusCode.value == StatusCodes.UncertainLastUsableValue
    assert uncertain.Value.Value == pytest.approx(sim.signal("motor_temp"), abs=1.0)
    await setpoint.write_value(1100.0)
    written = await read(setpoint)()
    assert (written.Value.Value, written.StatusCode.value) == (
        1100.0, StatusCodes.UncertainLastUsableValue)
    sim.faults.clear(fault.id)
    await eventually(read(setpoint), lambda dv: dv.StatusCode.is_good())
    sim.faults.add("uncertain", "opcua", code=StatusCodes.UncertainSensorNotAccurate)
    await eventually(read(temp),
                     lambda dv: dv.StatusCode.value == StatusCodes.UncertainSensorNotAccurate)


async def test_reboot_and_disconnect_cut_connections(
    sim: Sim, listening: dict[str, Any]
) -> None:
    """A reboot cuts sessions and refuses new ones until it ends; a disconnect only cuts."""
    async with connected(listening["endpoint"], timeout_s=0.5) as opened:
        counter = node(opened, listening, "PumpSkid.Counter")
        sim.plant.counter = 100_000
        await eventually(counter.read_value, lambda value: value >= 100_000)
        sim.faults.add("reboot", duration_s=0.5)
        with pytest.raises(CONNECTION_FAILED):
            await counter.read_value()
        with pytest.raises(CONNECTION_FAILED):
            async with connected(listening["endpoint"], timeout_s=0.5):
                pass
    await asyncio.sleep(0.6)
    async with connected(listening["endpoint"]) as opened:
        assert await node(opened, listening, "PumpSkid.Counter").read_value() < 100  # restarted
        assert await node(opened, listening, "PumpSkid.Run").read_value() is False
        sim.faults.add("disconnect", "opcua")
        with pytest.raises(CONNECTION_FAILED):
            await node(opened, listening, "PumpSkid.Counter").read_value()
    async with connected(listening["endpoint"]) as opened:
        assert await node(opened, listening, "PumpSkid.Counter").read_value() >= 0


# -- monitored items: filters checked per item, deadbands as the spec has them -------------

SETPOINT = "PumpSkid.Motor.SpeedSetpoint"  # AnalogItem, EURange 0..1800 rpm


def item(listening: dict[str, Any], path: str, handle: int,
         deadband_type: int = ua.DeadbandType.None_, deadband: float = 0.0,
         attribute: int = AttributeIds.Value) -> ua.MonitoredItemCreateRequest:
    """A Value item of ``path`` with a DataChangeFilter when ``deadband_type`` is set."""
    params = ua.MonitoringParameters(ClientHandle=ua.UInt32(handle), QueueSize=ua.UInt32(10))
    if deadband_type != ua.DeadbandType.None_:
        params.Filter = ua.DataChangeFilter(
            Trigger=ua.DataChangeTrigger.StatusValue, DeadbandType=ua.UInt32(deadband_type),
            DeadbandValue=ua.Double(deadband))
    node_id = ua.NodeId.from_string(f"ns={listening['namespace_index']};s={path}")
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=node_id, AttributeId=ua.UInt32(attribute)),
        MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params)


class Recorder:
    """Subscription handler keeping each client handle's values, in order."""

    def __init__(self) -> None:
        self.values: dict[int, list[Any]] = {}
        self.changed = asyncio.Event()

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        handle = int(data.monitored_item.ClientHandle)
        self.values.setdefault(handle, []).append(val)
        self.changed.set()

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not check():
                self.changed.clear()
                await self.changed.wait()

    async def until_seen(self, handle: int, value: Any) -> None:
        await self.until(lambda: value in self.values.get(handle, []))


async def test_a_wrong_filter_refuses_only_its_item(
    listening: dict[str, Any], client: Client
) -> None:
    """Each wrong filter answers its own Bad status; the good items are created and report."""
    recorder = Recorder()
    subscription = await client.create_subscription(50, recorder)
    results = await subscription.create_monitored_items([
        item(listening, "PumpSkid.Counter", 1, ua.DeadbandType.Percent, 5.0),  # no EURange
        item(listening, "PumpSkid.Motor.Running", 2, ua.DeadbandType.Absolute, 1.0),  # Boolean
        item(listening, "PumpSkid.Motor.Speed", 3, ua.DeadbandType.Percent, 150.0),  # > 100 %
        item(listening, "PumpSkid.Motor.Speed", 4, ua.DeadbandType.Absolute, -1.0),
        item(listening, "PumpSkid.Motor.Speed", 5, ua.DeadbandType.Absolute, 1.0,
             attribute=AttributeIds.DisplayName),
        item(listening, "PumpSkid.Motor.Temperature", 6, ua.DeadbandType.Percent, 1.0),
        item(listening, "PumpSkid.Counter", 7),
        item(listening, "PumpSkid.NoSuchNode", 8, ua.DeadbandType.Absolute, 1.0),
    ])
    statuses = [r.value if isinstance(r, ua.StatusCode) else "created" for r in results]
    assert statuses == [
        StatusCodes.BadDeadbandFilterInvalid, StatusCodes.BadFilterNotAllowed,
        StatusCodes.BadDeadbandFilterInvalid, StatusCodes.BadDeadbandFilterInvalid,
        StatusCodes.BadFilterNotAllowed, "created", "created", StatusCodes.BadNodeIdUnknown]
    await recorder.until(lambda: 6 in recorder.values)  # its initial value
    counter = await node(client, listening, "PumpSkid.Counter").read_value()
    await recorder.until_seen(7, counter + 3)  # the good items keep reporting
    assert set(recorder.values) == {6, 7}
    await subscription.delete()


async def test_percent_deadband_compares_with_the_last_reported_value(
    sim: Sim, listening: dict[str, Any], client: Client
) -> None:
    """2 % of 0..1800 rpm is 36 rpm: steps of 20 pass only once they add up beyond it."""
    recorder = Recorder()
    subscription = await client.create_subscription(50, recorder)
    created = await subscription.create_monitored_items([
        item(listening, SETPOINT, 1, ua.DeadbandType.Percent, 2.0), item(listening, SETPOINT, 2)])
    assert all(isinstance(mid, int) for mid in created)
    target = f"ns={listening['namespace_index']};s={SETPOINT}"
    for rpm in (1000.0, 1020.0, 1040.0, 1050.0, 1300.0):
        assert sim.write("test", target, "speed_setpoint_rpm", rpm).accepted
        await recorder.until_seen(2, rpm)  # the unfiltered item has seen it: so has the other
    await recorder.until_seen(1, 1300.0)
    first = recorder.values[2][0]
    assert recorder.values[2] == [first, 1000.0, 1020.0, 1040.0, 1050.0, 1300.0]
    assert recorder.values[1] == [first, 1000.0, 1040.0, 1300.0]  # 1040 is 40 from 1000
    await subscription.delete()


def test_deadband_comparison_of_numbers_arrays_and_nan() -> None:
    """Numbers by distance, arrays element-wise or by length, NaN on entering or leaving."""
    assert beyond(1.0, 1.6, 0.5) and not beyond(1.0, 1.5, 0.5)
    assert beyond([1.0, 2.0], [1.0, 2.6], 0.5) and not beyond([1.0, 2.0], [1.4, 1.6], 0.5)
    assert beyond([1.0], [1.0, 1.0], 0.5) and beyond(1.0, [1.0], 0.5)
    assert beyond(1.0, math.nan, 0.5) and beyond(math.nan, 1.0, 0.5)
    assert not beyond(math.nan, math.nan, 0.5)
    assert beyond(True, False, 5.0) and not beyond("a", "a", 0.0)


async def test_stop_ends_when_a_tick_lands_with_it() -> None:
    """A tick waking the refresh loop as stop() cancels it must not swallow the cancel.

    (On 3.11 ``asyncio.wait_for`` returns the result instead: the loop ran on and stop()
    waited forever, a test teardown hanging about once in a hundred.)
    """
    quiet = Sim(seed=1, tick_s=60.0)  # not ticking: the refresh loop sits in its wait
    face = OpcuaFace(quiet)
    await face.start()
    refresh = face._task
    assert refresh is not None
    try:
        await asyncio.sleep(0)  # one turn: the new refresh loop runs into its wait
        assert quiet.ticked._waiters, "the refresh loop is not waiting for a tick"
        quiet.ticked.set()  # the wake and the cancel in the same turn of the loop
        quiet.ticked.clear()
        async with asyncio.timeout(WAIT_S) as deadline:
            await face.stop()
        assert not deadline.expired()  # ended by its own cancel, not by the deadline's
        assert refresh.done()
    finally:
        refresh.cancel()  # so a failure here leaves no loop running
        await face.stop()
