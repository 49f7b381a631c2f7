"""The sim's record of the counter values it served: run logic, and every face feeding it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from asyncua.common.node import Node
from pymodbus.client import AsyncModbusTcpClient

from plcsim import ServedLog, ServedRuns, Sim
from plcsim.control import ControlServer, call
from plcsim.modbus_server import Responder
from plcsim.modbus_tcp import ModbusTcpFace
from plcsim.opcua_face import OpcuaFace
from plcsim.registers import Table
from tests.firmware_sim.conftest import Peer, tcp_client_for
from tests.helpers.opcua_client import connected

pytestmark = pytest.mark.sim
WAIT_S = 5.0
COUNTER_NODE = "PumpSkid.Counter"


class Clock:
    """A hand-set epoch clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 0.25) -> float:  # exact in binary: sums compare equal
        self.now += seconds
        return self.now


def served(values: Iterable[int]) -> list[tuple[int, int]]:
    """The (first, last) runs a sequence of served values makes, worked out independently."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1]:
            continue
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def spans(record: dict[str, Any]) -> list[tuple[int, int]]:
    """The (first, last) of each run in a ``/served`` signal record."""
    return [(first, last) for first, last, _t_first, _t_last in record["runs"]]


# -- the run logic ---------------------------------------------------------------------------


def test_consecutive_values_extend_one_run() -> None:
    """first, first + 1, ... make one run; t_last is when the last value was served."""
    clock = Clock()
    runs = ServedRuns(clock=clock)
    start = clock.now
    for value in range(5, 10):
        runs.record(value)
        clock.advance()
    assert runs.runs() == [(5, 9, start, start + 1.0)]
    assert runs.reads == 5


def test_a_repeat_counts_a_read_and_keeps_t_last() -> None:
    """Serving the last value again counts a read; t_last stays when it was first served."""
    clock = Clock()
    runs = ServedRuns(clock=clock)
    runs.record(7)
    first_served = clock.advance()
    runs.record(8)
    clock.advance()
    runs.record(8)
    runs.record(8)
    assert runs.runs() == [(7, 8, clock.now - 0.5, first_served)]
    assert runs.reads == 4


def test_a_skipped_value_starts_a_new_run() -> None:
    """A value not served (a slow client) leaves a gap: the next value opens a new run."""
    runs = ServedRuns(clock=Clock())
    for value in (1, 2, 3, 5, 6, 9):
        runs.record(value)
    assert [run[:2] for run in runs.runs()] == [(1, 3), (5, 6), (9, 9)]


def test_a_restart_at_zero_or_a_wrap_starts_a_new_run() -> None:
    """A reboot (back to 0) and a wrap at 2^32 start a new run; so does going backwards."""
    runs = ServedRuns(clock=Clock())
    for value in (40, 41, 0, 1, 2**32 - 2, 2**32 - 1, 0, 1, 0):
        runs.record(value)
    assert [run[:2] for run in runs.runs()] == [
        (40, 41), (0, 1), (2**32 - 2, 2**32 - 1), (0, 1), (0, 0)]


def test_runs_are_capped_and_the_dropped_counted() -> None:
    """Beyond max_runs the oldest runs go, counted in dropped_runs; the newest still grows."""
    runs = ServedRuns(max_runs=2, clock=Clock())
    for value in (0, 10, 20, 30, 31):
        runs.record(value)
    assert [run[:2] for run in runs.runs()] == [(20, 20), (30, 31)]
    assert runs.as_dict()["dropped_runs"] == 2  # (0, 0) and (10, 10)
    assert runs.reads == 5
    with pytest.raises(ValueError, match="max_runs"):
        ServedRuns(max_runs=0)


def test_a_client_that_keeps_up_keeps_one_run() -> None:
    """Memory stays flat in a long run: a client reading every value leaves a single run."""
    runs = ServedRuns(max_runs=10, clock=Clock())
    for value in range(100_000):
        runs.record(value)
        runs.record(value)
    assert [run[:2] for run in runs.runs()] == [(0, 99_999)]
    assert runs.reads == 200_000


def test_the_log_records_only_the_named_signals() -> None:
    """Only named signals get a recorder; as_dict answers every one, or one by name."""
    log = ServedLog(("counter", "capture_counter"), clock=Clock())
    assert log.names == ("counter", "capture_counter")
    assert log.recorder("speed") is None
    counter = log.recorder("counter")
    assert counter is not None
    counter.record(3)
    assert log.as_dict("counter") == {"counter": {
        "reads": 1, "runs": [[3, 3, 1_700_000_000.0, 1_700_000_000.0]], "dropped_runs": 0}}
    assert set(log.as_dict()) == {"counter", "capture_counter"}
    assert ServedLog().names == ("counter",)
    with pytest.raises(KeyError):
        log.as_dict("speed")


# -- what the Modbus register map records ----------------------------------------------------


def unit1(sim: Sim) -> Any:
    """Unit 1's ModbusDevice on a fresh responder for ``sim``."""
    return Responder(sim, "modbus_tcp", (1, 2), serial=False).devices[1]


def test_only_a_read_of_the_whole_counter_is_recorded(sim: Sim) -> None:
    """Half of the counter serves no value; other entries and unit 2 are not recorded."""
    device = unit1(sim)
    device.read(Table.HOLDING, 1, 1)
    device.read(Table.HOLDING, 0, 1)
    device.read(Table.HOLDING, 400, 6)
    Responder(sim, "modbus_tcp", (1, 2), serial=False).devices[2].read(Table.HOLDING, 0, 125)
    assert sim.served.as_dict()["counter"]["reads"] == 0
    words = device.read(Table.HOLDING, 0, 2)
    assert sim.served.as_dict()["counter"]["reads"] == 1
    assert spans(sim.served.as_dict()["counter"]) == [(words[1], words[1])]


def test_a_stuck_counter_serves_the_same_value_again(sim: Sim) -> None:
    """Under a stuck fault the held value is served again; after it, the jump opens a run."""
    device = unit1(sim)
    held = sim.plant.counter
    fault = sim.faults.add("stuck", "counter")
    for _ in range(3):
        sim.step(sim.tick_s)
        assert device.read(Table.HOLDING, 0, 2) == [0, held]
    sim.faults.clear(fault.id)
    device.read(Table.HOLDING, 0, 2)
    record = sim.served.as_dict()["counter"]
    assert spans(record) == [(held, held), (held + 3, held + 3)]
    assert record["reads"] == 4


# -- over the wire: Modbus TCP and RTU, the control API, the CLI -----------------------------


@pytest.fixture
async def api(sim: Sim) -> AsyncIterator[str]:
    """The control API of ``sim`` on a loopback port."""
    server = ControlServer(sim)
    url = await server.start()
    yield url
    await server.stop()


async def get(url: str, path: str) -> Any:
    return await asyncio.to_thread(call, url, "GET", path)


async def read_counter(client: Any) -> int:
    response = await client.read_holding_registers(0, count=2, device_id=1)
    assert not response.isError(), response
    high, low = response.registers
    return int(high) << 16 | int(low)


async def test_a_client_reading_every_tick_leaves_one_run(peer: Peer, sim: Sim, api: str
                                                          ) -> None:
    """/served shows one run covering exactly the counter values a client read, both faces."""
    before = time.time()
    values: list[int] = []
    for _ in range(5):
        sim.step(sim.tick_s)
        values.append(await read_counter(peer.client))
        values.append(await read_counter(peer.client))  # polling faster than the plant ticks
    answer = await get(api, "/served")
    assert list(answer) == ["counter"]
    record = answer["counter"]
    assert record["reads"] == len(values) == 10
    assert values[-1] - values[0] == 4
    assert spans(record) == [(values[0], values[-1])]
    ((_first, _last, t_first, t_last),) = record["runs"]
    assert before <= t_first <= t_last <= time.time()
    assert record["dropped_runs"] == 0


async def test_a_reboot_starts_a_new_run_at_zero(
    sim: Sim, tcp_face: tuple[ModbusTcpFace, dict[str, Any]], api: str
) -> None:
    """After a PLC reboot the counter is served from 0 again, in a run of its own."""
    _face, listening = tcp_face
    client = tcp_client_for(listening)
    assert await client.connect()
    try:
        values = []
        for _ in range(3):
            sim.step(sim.tick_s)
            values.append(await read_counter(client))
    finally:
        client.close()
    reboot = sim.faults.add("reboot")  # cuts the connection; no answers while it lasts
    sim.faults.clear(reboot.id)
    client = tcp_client_for(listening)
    assert await client.connect()
    try:
        after = [await read_counter(client)]
        sim.step(sim.tick_s)
        after.append(await read_counter(client))
    finally:
        client.close()
    assert after == [0, 1]
    record = await get(api, "/served?name=counter")
    assert spans(record["counter"]) == served(values + after) == [(values[0], values[-1]), (0, 1)]
    assert record["counter"]["reads"] == 5


def plcsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plcsim", *args], capture_output=True,
                          text=True, timeout=30, check=False)


async def test_plcsim_served_prints_the_api_answer(
    tcp_client: AsyncModbusTcpClient, sim: Sim, api: str
) -> None:
    """`plcsim served [--name counter]` prints what GET /served answers; unknown names exit 64."""
    for _ in range(3):
        sim.step(sim.tick_s)
        await read_counter(tcp_client)
    answer = await get(api, "/served")
    printed = await asyncio.to_thread(plcsim, "served", "--control", api)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == answer
    named = await asyncio.to_thread(plcsim, "served", "--name", "counter", "--control", api)
    assert json.loads(named.stdout) == answer
    unknown = await asyncio.to_thread(plcsim, "served", "--name", "speed", "--control", api)
    assert unknown.returncode == 64
    assert "'speed' is not recorded" in unknown.stderr


# -- OPC UA: client Reads and subscription notifications -------------------------------------


@pytest.fixture
async def opcua(ticking_sim: Sim) -> AsyncIterator[dict[str, Any]]:
    """An OPC UA face on the live (ticking) plant; its listening description."""
    face = OpcuaFace(ticking_sim)
    listening = await face.start()
    yield listening
    await face.stop()


async def test_opcua_reads_of_counter_are_recorded(ticking_sim: Sim, opcua: dict[str, Any]
                                                   ) -> None:
    """Each client Read of Counter is recorded with the value it returned."""
    async with connected(opcua["endpoint"]) as client:
        counter = client.get_node(f"ns={opcua['namespace_index']};s={COUNTER_NODE}")
        await client.get_node(f"ns={opcua['namespace_index']};s=PumpSkid.Motor.Speed"
                              ).read_value()
        values = [int(await counter.read_value()) for _ in range(20)]
    record = ticking_sim.served.as_dict("counter")["counter"]
    assert record["reads"] == 20
    assert spans(record) == served(values)


@pytest.mark.parametrize(("publishing_ms", "queue_size"), [(50, 0), (200, 1)],
                         ids=["every-value", "overwritten-in-queue"])
async def test_opcua_notifications_of_counter_are_recorded(
    ticking_sim: Sim, opcua: dict[str, Any], publishing_ms: int, queue_size: int
) -> None:
    """Notifications are recorded as delivered: a value overwritten in a queue is a gap."""
    received: list[int] = []
    arrived = asyncio.Event()

    class Handler:
        def datachange_notification(self, node: Node, val: int, data: Any) -> None:
            received.append(int(val))
            arrived.set()

    async def until(check: Any) -> None:
        async with asyncio.timeout(WAIT_S):
            while not check():
                arrived.clear()
                await arrived.wait()

    async with connected(opcua["endpoint"]) as client:
        counter = client.get_node(f"ns={opcua['namespace_index']};s={COUNTER_NODE}")
        subscription = await client.create_subscription(publishing_ms, Handler())
        await subscription.subscribe_data_change(counter, queuesize=queue_size)
        await until(lambda: len(received) >= 5)
        # Hold the counter: the last notification is then the held value; wait for it.
        fault = ticking_sim.faults.add("stuck", "counter")
        await until(lambda: received[-1] == fault.state["value"])
        await subscription.delete()
    record = ticking_sim.served.as_dict("counter")["counter"]
    assert spans(record) == served(received)
    assert record["reads"] == len(received)
    if queue_size == 1:  # 4 ticks per publish: each notification carries only the newest
        assert len(record["runs"]) > 1
