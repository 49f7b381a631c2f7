"""`edgetwin probe opcua` browses firmware-sim's OPC UA face."""

import asyncio
import contextlib
import json
import subprocess
import sys

from edgetwin.sources.opcua.probe import browse, render
from plcsim import Sim
from plcsim.opcua_face import OpcuaFace


async def test_probe_lists_the_tree_with_types_and_access() -> None:
    """Variables show their data type, value and whether they can be written."""
    sim = Sim(seed=2)
    face = OpcuaFace(sim, port=0)
    endpoint = (await face.start())["endpoint"]
    try:
        nodes = {n.node_id: n for n in await browse(endpoint)}
        setpoint = nodes["ns=2;s=PumpSkid.Motor.SpeedSetpoint"]
        assert (setpoint.data_type, setpoint.writable, setpoint.value) == ("Double", True, 1450.0)
        assert nodes["ns=2;s=PumpSkid.Motor.Speed"].writable is False
        assert nodes["ns=2;s=PumpSkid.ResetTrip"].node_class == "Method"
        assert "  Motor  [ns=2;s=PumpSkid.Motor]" in render(list(nodes.values()))
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "edgetwin", "probe", "opcua", endpoint,
                             "--node", "ns=2;s=PumpSkid.Tank", "--json"],
            capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert {n["name"] for n in json.loads(result.stdout)} == {"Level", "LevelLow"}
    finally:
        with contextlib.suppress(Exception):
            await face.stop()


def test_probe_of_a_missing_server_exits_69() -> None:
    """Nothing listening: a clear message and exit 69."""
    result = subprocess.run([sys.executable, "-m", "edgetwin", "probe", "opcua",
                             "opc.tcp://127.0.0.1:9/none", "--timeout", "2"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 69
    assert "cannot connect" in result.stderr
