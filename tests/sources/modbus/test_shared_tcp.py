"""Several Modbus TCP unit ids on one connection, against firmware-sim's TCP face in-process.

The face serves the vibration module on unit 2 and the skid PLC on every other unit id, like
a TCP-to-RTU gateway with several devices behind it; it counts the connections it accepts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edgetwin.config import InvalidConfig, parse_config
from edgetwin.core.types import Quality
from edgetwin.sources import source_configs
from edgetwin.sources.modbus import ModbusSource, ModbusTcpConfig
from edgetwin.sources.modbus.connection import _SHARED, SharedClient, alive
from plcsim import Sim
from plcsim.modbus_tcp import ModbusTcpFace
from tests.helpers.recording import RecordingHealth
from tests.helpers.waiting import until
from tests.sources.modbus.conftest import BatchRecorder
from tests.sources.modbus.test_driver import every, running
from tests.sources.modbus.test_rtu import ABSENT, PLC, VIBRATION

pytestmark = pytest.mark.sim

POLL_S, TIMEOUT_S = 0.05, 0.2


@pytest.fixture
async def gateway(ticking_sim: Sim) -> AsyncIterator[ModbusTcpFace]:
    """The vibration module on unit 2, the PLC on any other unit id, on one loopback port."""
    face = ModbusTcpFace(ticking_sim, unit_ids=(0, 2))
    await face.start()
    yield face
    await face.stop()


def tcp(face: ModbusTcpFace, name: str, unit: int, points: list[dict[str, Any]]
        ) -> ModbusTcpConfig:
    return ModbusTcpConfig.model_validate({
        "name": name, "type": "modbus_tcp", "host": "127.0.0.1", "port": face.port,
        "unit_id": unit, "poll_interval": POLL_S, "timeout": TIMEOUT_S, "points": points,
    })


class Unit:
    """One source on the shared connection, with what it emitted and reported."""

    def __init__(self, face: ModbusTcpFace, name: str, unit: int,
                 points: list[dict[str, Any]], health: Any = None, **backoff: float) -> None:
        self.source = ModbusSource(tcp(face, name, unit, points), **backoff)
        self.batches = BatchRecorder()
        self.health = RecordingHealth() if health is None else health

    def running(self) -> Any:
        return running(self.source, self.batches, self.health)


def good_since(unit: Unit, start: int) -> bool:
    return all(s.quality is Quality.GOOD for b in unit.batches.batches[start:] for s in b.values())


async def test_three_unit_ids_share_one_connection(gateway: ModbusTcpFace, ticking_sim: Sim
                                                   ) -> None:
    """Units 1, 2 and 3 poll and write over one connection; the last to stop closes it."""
    plc, vib = Unit(gateway, "plc", 1, PLC), Unit(gateway, "vib", 2, VIBRATION)
    other = Unit(gateway, "other", 3, [{"id": "pump3/setpoint", "address": 200}])
    async with plc.running(), vib.running():
        async with other.running():
            _, first = await plc.batches.wait_for(every(Quality.GOOD))
            _, later = await plc.batches.wait_for(
                lambda b: b["pump1/counter"].value > first["pump1/counter"].value)
            _, vib_batch = await vib.batches.wait_for(every(Quality.GOOD))
            await other.batches.wait_for(every(Quality.GOOD))
            outcome = await plc.source.write("pump1/speed_setpoint", 1520)
            _, other_batch = await other.batches.wait_for(
                lambda b: b["pump3/setpoint"].value == 1520)
            assert (gateway.connections, gateway.connections_total) == (1, 1)
            (shared,) = _SHARED.values()
            assert shared.users == 3
        at = len(vib.batches.batches)
        await vib.batches.wait_for(every(Quality.GOOD), after=at + 2)  # still polling
        assert gateway.connections == 1 and shared.users == 2
    await until(lambda: gateway.connections == 0, 2.0, "the connection closes")
    assert _SHARED == {}
    assert outcome.ok, outcome.reason
    assert ticking_sim.plant.speed_setpoint_rpm == 1520
    assert vib_batch["pump1/samples"].value == ticking_sim.vibration.capture_samples
    assert other_batch["pump3/setpoint"].quality is Quality.GOOD
    assert later["pump1/counter"].quality is Quality.GOOD
    assert set(gateway.responder.requests) == {1, 2, 3}
    assert gateway.connections_total == 1
    for unit in (plc, vib, other):
        assert [e.kind for e in unit.health.events] == ["up"], unit.source.name


async def test_a_silent_unit_fails_alone_and_the_connection_stays(
    gateway: ModbusTcpFace, ticking_sim: Sim
) -> None:
    """Unit 3 stops answering: only its points go BAD, within one poll; 1 and 2 keep their rate."""
    plc, vib = Unit(gateway, "plc", 1, PLC), Unit(gateway, "vib", 2, VIBRATION)
    ghost = Unit(gateway, "ghost", 3, ABSENT, reconnect_initial_s=0.5)
    async with plc.running(), vib.running(), ghost.running():
        await ghost.batches.wait_for(every(Quality.GOOD))
        await plc.batches.wait_for(every(Quality.GOOD))
        await vib.batches.wait_for(every(Quality.GOOD))
        plc_at, vib_at = len(plc.batches.batches), len(vib.batches.batches)
        ghost_at = len(ghost.batches.batches)
        ticking_sim.faults.add("dropout", "modbus_tcp", unit=3)
        bad_at, _ = await ghost.batches.wait_for(every(Quality.BAD), after=ghost_at)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await plc.batches.wait_for(lambda _b: True, after=plc_at + 20)
        elapsed = loop.time() - began
        await ghost.health.wait_for("down", count=2)  # it backed off and tried again
        ticking_sim.faults.clear()
        await ghost.batches.wait_for(every(Quality.GOOD), after=bad_at)
    # The batch in flight when the fault began may still be GOOD; the next one is BAD.
    assert bad_at <= ghost_at + 1
    assert {e.error_code for e in ghost.health.of("down")} == {"timeout"}
    assert good_since(plc, plc_at) and good_since(vib, vib_at)
    assert len(vib.batches.batches) > vib_at + 10
    assert not plc.health.of("down") and not vib.health.of("down")
    # 20 cycles of 0.05 s; the ghost holds the line for 0.2 s at each of its (rare) tries.
    assert elapsed < 20 * POLL_S + 1.5
    assert gateway.connections_total == 1  # a timeout does not cost the others the connection


async def test_a_late_answer_is_never_taken_for_another_units(
    gateway: ModbusTcpFace, ticking_sim: Sim
) -> None:
    """Unit 3 answers after its timeout, while unit 1 waits: unit 1 still reads its own data."""
    plc = Unit(gateway, "plc", 1, [{"id": "pump1/speed_setpoint", "address": 200}])
    slow = Unit(gateway, "slow", 3, [{"id": "pump3/counter", "address": 0, "type": "uint32"}],
                reconnect_initial_s=0.1)
    async with plc.running(), slow.running():
        await plc.batches.wait_for(every(Quality.GOOD))
        await slow.batches.wait_for(every(Quality.GOOD))
        plc_at = len(plc.batches.batches)
        ticking_sim.faults.add("latency", "modbus_tcp", unit=3, delay_s=TIMEOUT_S * 1.5)
        await slow.health.wait_for("down", count=3)
        ticking_sim.faults.clear()
        await slow.batches.wait_for(every(Quality.GOOD), after=len(slow.batches.batches))
    readings = [b["pump1/speed_setpoint"] for b in plc.batches.batches[plc_at:]]
    assert len(readings) > 5
    # A stale answer taken for unit 1's would read the counter's high word here, or be BAD.
    assert {(s.quality, s.value) for s in readings} == {(Quality.GOOD, 1450)}
    assert gateway.connections_total == 1


async def test_a_dropped_connection_is_reopened_once_for_all(
    gateway: ModbusTcpFace, ticking_sim: Sim
) -> None:
    """The gateway cuts the connection: every source recovers, all on one new connection."""
    units = [Unit(gateway, "plc", 1, PLC, reconnect_initial_s=0.05),
             Unit(gateway, "vib", 2, VIBRATION, reconnect_initial_s=0.05),
             Unit(gateway, "other", 3, [{"id": "pump3/setpoint", "address": 200}],
                  reconnect_initial_s=0.05)]
    async with units[0].running(), units[1].running(), units[2].running():
        for unit in units:
            await unit.batches.wait_for(every(Quality.GOOD))
        ticking_sim.faults.add("disconnect", "modbus_tcp")
        for unit in units:
            await unit.health.wait_for("up", count=2)
            await unit.batches.wait_for(every(Quality.GOOD), after=len(unit.batches.batches))
        assert (gateway.connections, gateway.connections_total) == (1, 2)
    for unit in units:
        assert {e.error_code for e in unit.health.of("down")} == {"connection_lost"}


GATEWAY = """\
gateway: {id: gw1, group: g, state_dir: /tmp/x}
sync: {mqtt: {host: 127.0.0.1}}
sources:
"""


def source_yaml(name: str, unit: int, port: int = 502, timeout: float = 1.0) -> str:
    return (f"  - {{name: {name}, type: modbus_tcp, host: 192.0.2.10, port: {port},"
            f" timeout: {timeout}, unit_id: {unit}, points: [{{id: a{name}/x, address: 0}}]}}\n")


def test_connection_sharing_rules_in_the_config() -> None:
    """Distinct unit ids with one timeout share a host:port; one unit id twice is refused."""
    ok = GATEWAY + source_yaml("a", 1) + source_yaml("b", 2) + source_yaml("c", 1, port=5020)
    assert len(parse_config(ok, "gw.yaml", source_configs()).sources) == 3
    for clash in (source_yaml("b", 1), source_yaml("b", 2, timeout=0.5)):
        with pytest.raises(InvalidConfig, match=r"modbus_tcp:192\.0\.2\.10:502 is already used"):
            parse_config(GATEWAY + source_yaml("a", 1) + clash, "gw.yaml", source_configs())


async def test_a_transport_reset_during_connect_is_not_taken_for_an_open_link(
    gateway: ModbusTcpFace,
) -> None:
    """The race the HIL soak found: a peer that resets right after accepting.

    pymodbus's ``connect`` stores the transport after asyncio already closed it, so the
    client claims to be connected over a dead socket. Here that state is made by hand: the
    transport is aborted, and after asyncio told pymodbus, put back as pymodbus would.
    The link must not be handed out; ``open`` must connect afresh.
    """
    shared = SharedClient(tcp(gateway, "s", 1, [{"id": "pump1/counter", "address": 0,
                                                "type": "uint32"}]))
    try:
        client = await shared.open()
        assert client is not None and alive(client)
        transport = client.ctx.transport  # type: ignore[attr-defined]  # pymodbus internals
        transport.abort()
        await until(lambda: not client.connected)  # asyncio reported the loss to pymodbus
        client.ctx.transport = transport  # type: ignore[attr-defined]  # ...and connect() put it back
        assert client.connected  # what pymodbus believes
        assert not alive(client)
        assert not shared.current(client)
        fresh = await shared.open()
        assert fresh is not None and fresh is not client
        answer = await fresh.read_holding_registers(0, count=2, device_id=1)
        assert not answer.isError()
    finally:
        shared.close()
