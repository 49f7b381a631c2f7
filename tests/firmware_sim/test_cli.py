"""The `plcsim` command as a gateway's test bench starts it: faces, control API, scenarios."""

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import serial  # pyserial
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from plcsim import SimProcess
from plcsim.control import call
from tests.helpers.waiting import until


async def api(url: str, method: str, path: str, body: object = None) -> object:
    return await asyncio.to_thread(call, url, method, path, body)


async def test_serve_runs_every_face_of_one_plant() -> None:
    """`plcsim serve` puts Modbus TCP, RTU, OPC UA and the scale on one plant."""
    sim = await SimProcess.start("serve", "--modbus", "0", "--opcua", "0", "--rtu", "--line",
                                 "--seed", "5")
    try:
        faces = {f["protocol"]: f for f in sim.listening["faces"]}
        assert set(faces) == {"modbus", "modbus_rtu", "opcua", "line"}
        assert faces["opcua"]["endpoint"].startswith("opc.tcp://127.0.0.1:")
        tcp = AsyncModbusTcpClient("127.0.0.1", port=faces["modbus"]["port"], timeout=2,
                                   retries=0, reconnect_delay=0)
        rtu = AsyncModbusSerialClient(faces["modbus_rtu"]["device"], framer=FramerType.RTU,
                                      baudrate=faces["modbus_rtu"]["baudrate"], parity="N",
                                      timeout=2, retries=0, reconnect_delay=0)
        assert await tcp.connect()
        assert await rtu.connect()
        try:
            over_tcp = await tcp.read_holding_registers(200, count=1, device_id=1)
            over_rtu = await rtu.read_holding_registers(200, count=1, device_id=1)
            assert over_tcp.registers == over_rtu.registers == [1450]
            await tcp.write_register(200, 1500, device_id=1)
            after = await rtu.read_holding_registers(200, count=1, device_id=1)
            assert after.registers == [1500]  # one plant behind both faces
        finally:
            tcp.close()
            rtu.close()
        writes = await api(sim.control or "", "GET", "/writes?face=modbus_tcp")
        assert [(w["name"], w["value"], w["accepted"]) for w in writes] == [  # type: ignore[union-attr]
            ("speed_setpoint_rpm", 1500, True)]

        pattern = re.compile(faces["line"]["format"])
        with serial.Serial(faces["line"]["device"], timeout=3) as scale:
            record = await asyncio.to_thread(scale.read_until, b"\n")
            record = await asyncio.to_thread(scale.read_until, b"\n")  # the first may be cut
        assert pattern.fullmatch(record.decode("ascii")), record
    finally:
        assert await sim.stop() == 0


async def test_scenario_file_plays_from_the_start(tmp_path: Path) -> None:
    """--scenario applies its timeline on plant time; --speedup makes plant time run faster."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("timeline:\n"
                        "  - {at: 2, fault: {kind: dropout, target: modbus_tcp}}\n"
                        "  - {at: 3, write: {name: speed_setpoint_rpm, value: 1300}}\n")
    sim = await SimProcess.start("modbus", "--port", "0", "--speedup", "20", "--scenario",
                                 str(scenario))
    try:
        assert sim.control is not None
        control = sim.control
        await until(lambda: bool(call(control, "GET", "/faults")), what="the dropout starts")
        state = await api(sim.control, "GET", "/state")
        assert state["t_s"] >= 2  # type: ignore[index]
        await until(lambda: bool(call(control, "GET", "/writes?face=scenario")),
                    what="the scenario's write")
        state = await api(sim.control, "GET", "/state")
        assert state["values"]["speed_setpoint"] == 1300  # type: ignore[index]
    finally:
        await sim.stop()


def test_bad_arguments_exit_with_usage_errors(tmp_path: Path) -> None:
    """Bad unit ids, a broken scenario or no face: a message and exit 64, nothing served."""
    def plcsim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "plcsim", *args], capture_output=True,
                              text=True, timeout=60, check=False)

    assert plcsim("rtu", "--units", "0").returncode == 64
    broken = tmp_path / "broken.yaml"
    broken.write_text("timeline: [{at: soon}]\n")
    result = plcsim("modbus", "--port", "0", "--scenario", str(broken))
    assert result.returncode == 64
    assert "timeline[0]" in result.stderr
    assert plcsim("serve").returncode == 64
    steer = plcsim("state", "--control", "http://127.0.0.1:9")
    assert steer.returncode == 69
    assert "no simulator answers" in steer.stderr
