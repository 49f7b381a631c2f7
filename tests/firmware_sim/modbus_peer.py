"""Helpers for the Modbus face tests: independent decoders, the expected map, raw frames.

Everything a test compares against is computed here from first principles (struct, a
bitwise CRC), not with plcsim's own encoders, so a wrong byte order or CRC in plcsim cannot
confirm itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from plcsim import Sim


@dataclass(frozen=True)
class Expected:
    """One value of the register map as the test knows it."""

    kind: str  # holding | input
    address: int
    fmt: str  # struct format of the value: h H i I f d
    order: str  # ABCD CDAB BADC DCBA
    signal: str  # Sim.signal name
    scale: float | None  # counts per engineering unit for integers; None for floats

    @property
    def registers(self) -> int:
        return struct.calcsize(self.fmt) // 2


# Unit 1, written out again from the documented table (skid_map's docstring).
UNIT1_VALUES = (
    Expected("holding", 0, "I", "ABCD", "counter", 1),
    Expected("holding", 100, "f", "ABCD", "motor_temp", None),
    Expected("holding", 200, "H", "ABCD", "speed_setpoint", 1),
    Expected("holding", 201, "H", "ABCD", "valve_position", 0.1),
    Expected("holding", 300, "f", "CDAB", "flow", None),
    Expected("holding", 400, "h", "ABCD", "speed", 1),
    Expected("holding", 401, "H", "ABCD", "current", 0.01),
    Expected("holding", 402, "f", "BADC", "pressure", None),
    Expected("holding", 404, "i", "CDAB", "motor_temp", 0.01),
    Expected("holding", 406, "d", "ABCD", "flow", None),
    Expected("input", 0, "H", "ABCD", "tank_level", 0.1),
    Expected("input", 100, "f", "DCBA", "tank_level", None),
)
UNIT1_COILS = {0: "run"}  # coil 1 (reset_trip) always reads false
UNIT1_DISCRETES = {0: "level_low", 1: "tripped", 2: "running"}
CAPTURE_SAMPLES = 4096
SCALE_G = 0.001


def decode(words: Sequence[int], fmt: str, order: str) -> float:
    """The value in ``words`` for a struct format and a byte order (A = most significant)."""
    regs = list(words)
    if order in ("BADC", "DCBA"):
        regs = [((w & 0xFF) << 8) | (w >> 8) for w in regs]
    if order in ("CDAB", "DCBA"):
        regs.reverse()
    value: float = struct.unpack(f">{fmt}", struct.pack(f">{len(regs)}H", *regs))[0]
    return value


def expected_value(sim: Sim, item: Expected) -> float:
    """What the registers of ``item`` must decode to, from the Sim's signal now."""
    value = sim.signal(item.signal)
    if item.fmt == "f":
        return float(struct.unpack(">f", struct.pack(">f", value))[0])  # float32 precision
    if item.fmt == "d":
        return value
    return round(value / item.scale) if item.scale else round(value)


def waveform(sim: Sim) -> npt.NDArray[np.int16]:
    """The waveform block as the documentation defines it."""
    counts = np.rint(sim.vibration.capture / SCALE_G)
    return np.clip(counts, -32768, 32767).astype(np.int16)


def step(sim: Sim, seconds: float) -> None:
    """Advance the plant by whole ticks."""
    for _ in range(round(seconds / sim.tick_s)):
        sim.step(sim.tick_s)


async def read_all(client: Any, address: int, count: int, device_id: int,
                   per_request: int = 125) -> list[int]:
    """A long holding block, in requests of at most ``per_request`` registers."""
    words: list[int] = []
    for start in range(address, address + count, per_request):
        n = min(per_request, address + count - start)
        response = await client.read_holding_registers(start, count=n, device_id=device_id)
        assert not response.isError(), response
        words.extend(response.registers)
    return words


# -- RTU frames, by hand ----------------------------------------------------------------------

def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS, bit by bit: reflected polynomial 0xA001, initial value 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def frame(unit: int, pdu: bytes) -> bytes:
    """An RTU frame: address, PDU, CRC low byte first."""
    body = bytes([unit]) + pdu
    crc = crc16_modbus(body)
    return body + bytes([crc & 0xFF, crc >> 8])


def crc_ok(data: bytes) -> bool:
    """The last two bytes are the CRC of the rest, low byte first."""
    return len(data) >= 4 and crc16_modbus(data[:-2]) == data[-2] | data[-1] << 8


class RawLine:
    """The gateway's end of the RTU line, opened raw: bytes in, bytes out."""

    def __init__(self, path: str) -> None:
        import termios
        import tty

        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        termios.tcflush(self.fd, termios.TCIOFLUSH)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def read(self, size: int | None = None, timeout_s: float = 0.3) -> bytes:
        """Bytes arriving within ``timeout_s`` (stops early once ``size`` arrived)."""
        data = b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (size is None or len(data) < size):
            with contextlib.suppress(BlockingIOError):
                data += os.read(self.fd, 4096)
                continue
            await asyncio.sleep(0.002)
        return data

    async def drain(self, quiet_s: float = 0.05) -> bytes:
        """Read until the line has been quiet for ``quiet_s``."""
        data = b""
        while chunk := await self.read(timeout_s=quiet_s):
            data += chunk
        return data

    def close(self) -> None:
        os.close(self.fd)


async def mbpoll(*args: str, timeout_s: float = 10.0) -> tuple[int, str]:
    """Run mbpoll (without blocking the loop the face serves from); exit status, stdout."""
    process = await asyncio.create_subprocess_exec(
        "mbpoll", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode()


def mbpoll_values(output: str) -> dict[int, str]:
    """``[address]: value`` lines of mbpoll's output."""
    values: dict[int, str] = {}
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("[") and "]:" in line:
            address, _, value = line[1:].partition("]:")
            values[int(address)] = value.strip()
    return values
