"""The control API over real HTTP on loopback, and the `plcsim` steering commands."""

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial

import pytest

from plcsim.control import ControlError, ControlServer, call
from plcsim.sim import Sim


@pytest.fixture
async def api() -> AsyncIterator[tuple[Sim, str]]:
    sim = Sim(seed=3)
    server = ControlServer(sim)
    url = await server.start()
    yield sim, url
    await server.stop()


async def request(url: str, method: str, path: str, body: object = None) -> object:
    return await asyncio.to_thread(partial(call, url, method, path, body))


async def test_faults_can_be_added_listed_and_cleared(api: tuple[Sim, str]) -> None:
    """POST/GET/DELETE /faults drive the sim's fault set."""
    sim, url = api
    fault = await request(url, "POST", "/faults", {"kind": "exception", "target": "modbus_tcp",
                                                  "params": {"code": 6}})
    assert isinstance(fault, dict)
    assert sim.faults.exception_code("modbus_tcp") == 6
    assert [f["id"] for f in await request(url, "GET", "/faults")] == [fault["id"]]  # type: ignore[union-attr]
    assert await request(url, "DELETE", f"/faults/{fault['id']}") == {"cleared": 1}
    assert sim.faults.active() == []


async def test_writes_and_state_are_queryable(api: tuple[Sim, str]) -> None:
    """The write log and the true plant state are served as JSON."""
    sim, url = api
    sim.write("modbus_tcp", "holding 200", "speed_setpoint_rpm", 1500)
    result = await request(url, "POST", "/write", {"name": "speed_setpoint_rpm", "value": 9000})
    assert result == {"accepted": False, "reason": "setpoint outside 0..1800 rpm"}
    refused = await request(url, "GET", "/writes?accepted=false")
    assert [w["face"] for w in refused] == ["control"]  # type: ignore[union-attr]
    state = await request(url, "GET", "/state")
    assert state["values"]["speed_setpoint"] == 1500  # type: ignore[index]


async def test_served_values_are_queryable_by_signal(api: tuple[Sim, str]) -> None:
    """GET /served answers every recorded signal, or one with ?name=; others are 404."""
    sim, url = api
    counter = sim.served.recorder("counter")
    assert counter is not None
    for value in (4, 5, 5, 0):
        counter.record(value)
    answer = await request(url, "GET", "/served")
    assert answer == sim.served.as_dict()
    assert isinstance(answer, dict)
    assert [run[:2] for run in answer["counter"]["runs"]] == [[4, 5], [0, 0]]
    assert (answer["counter"]["reads"], answer["counter"]["dropped_runs"]) == (4, 0)
    assert await request(url, "GET", "/served?name=counter") == answer
    with pytest.raises(ControlError) as info:
        await request(url, "GET", "/served?name=speed")
    assert info.value.status == 404
    assert "recorded: counter" in str(info.value)


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/faults", {"kind": "meteor"}, 400),
    ("POST", "/faults", ["not", "a", "mapping"], 400),
    ("GET", "/nowhere", None, 404),
    ("PUT", "/state", None, 405),
    ("POST", "/served", {}, 405),
    ("POST", "/scenario", {"timeline": "soon"}, 400),
])
async def test_bad_requests_get_clear_errors(
    api: tuple[Sim, str], method: str, path: str, body: object, status: int
) -> None:
    """Wrong requests answer 4xx with a reason; the API keeps serving."""
    _sim, url = api
    with pytest.raises(ControlError) as info:
        await request(url, method, path, body)
    assert info.value.status == status
    assert await request(url, "GET", "/faults") == []


async def test_garbage_bytes_do_not_stop_the_api(api: tuple[Sim, str]) -> None:
    """A client sending junk gets 400 and the next request is served."""
    _sim, url = api
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"\x00\xff garbage\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400")
    assert await request(url, "GET", "/state")


async def test_plcsim_commands_steer_a_running_sim(api: tuple[Sim, str]) -> None:
    """`plcsim fault add|list|clear`, `writes` and `state` talk to the API."""
    sim, url = api

    def plcsim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "plcsim", *args, "--control", url],
                              capture_output=True, text=True, timeout=30, check=False)

    added = await asyncio.to_thread(plcsim, "fault", "add", "bearing", "--target", "vib_de",
                                    "--param", "mode=outer", "--param", "severity=0.7")
    assert added.returncode == 0, added.stderr
    (fault,) = sim.faults.active("bearing")
    assert fault.params == {"mode": "outer", "severity": 0.7}
    listed = await asyncio.to_thread(plcsim, "fault", "list")
    assert json.loads(listed.stdout)[0]["kind"] == "bearing"
    refused = await asyncio.to_thread(plcsim, "fault", "add", "meteor")
    assert refused.returncode == 64
    assert "unknown fault kind" in refused.stderr
    cleared = await asyncio.to_thread(plcsim, "fault", "clear")
    assert json.loads(cleared.stdout) == {"cleared": 1}
    state = await asyncio.to_thread(plcsim, "state")
    assert "tank_level" in json.loads(state.stdout)["values"]
