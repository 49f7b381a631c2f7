"""`edgetwin probe modbus` against firmware-sim: the right column shows the right value."""

import asyncio
import json
import subprocess
import sys

import pytest

from edgetwin.sources.modbus.probe import decode_all, read_registers
from plcsim import SimProcess


def test_decode_all_shows_every_order() -> None:
    """1.0 as float32 shows where its words are read in the right order, and nowhere else."""
    rows = decode_all(10, [0x0000, 0x3F80, 0x0000])
    assert rows[0]["float32"]["CDAB"] == 1.0
    assert rows[0]["float32"]["ABCD"] != 1.0
    assert rows[1]["float32"]["ABCD"] == 1.0  # the same word seen from the next address
    assert "float32" not in rows[2]  # no second register after the last one
    assert rows[1]["int16"] == 0x3F80


async def test_probe_finds_the_sims_layout(modbus_sim: SimProcess) -> None:
    """The sim's pressure (float32 BADC) and temperature (int32 CDAB, 0.01 degC) are found."""
    words = await read_registers("127.0.0.1", modbus_sim.port, 1, 400, 10)
    rows = {r["address"]: r for r in decode_all(400, words)}
    assert 2.0 < rows[402]["float32"]["BADC"] < 4.0
    assert 5000 < rows[404]["int32"]["CDAB"] < 7000
    assert 10.0 < rows[406]["float64"]["ABCD"] < 14.0


@pytest.mark.parametrize("json_output", [False, True])
async def test_probe_command(modbus_sim: SimProcess, json_output: bool) -> None:
    """The command prints tables (or JSON); an unmapped address is a clear error, exit 69."""
    cmd = [sys.executable, "-m", "edgetwin", "probe", "modbus", "--host", "127.0.0.1",
           "--port", str(modbus_sim.port), "--address", "300", "--count", "2"]
    result = await asyncio.to_thread(subprocess.run, [*cmd, "--json"] if json_output else cmd,
                                     capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    if json_output:
        rows = json.loads(result.stdout)
        assert 10.0 < rows[0]["float32"]["CDAB"] < 14.0
    else:
        assert "float32 starting at each address:" in result.stdout
    missing = await asyncio.to_thread(subprocess.run,
                                      [*cmd[:-4], "--address", "50", "--count", "2"],
                                      capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 69
    assert "exception response 2" in missing.stderr
