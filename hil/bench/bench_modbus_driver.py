"""The gateway's Modbus polling rate against a bare pymodbus client, on the same device.

Both read the same 33 requests (the 4096-sample vibration block of firmware-sim, holding
1000-5095, 125 registers per request) as fast as the device answers:

- TCP: ``plcsim modbus`` as a subprocess; the raw client loops over the requests; the
  gateway's ``ModbusSource`` polls the block with the shortest interval (0.01 s), so every
  cycle starts as soon as the last one ended. The figure of merit is requests/s, and the
  ratio gateway / raw (goal: at least 80 %).
- RTU at 115,200 baud: ``plcsim rtu --pace`` delivers bytes at the baud rate; the wire
  allows one request every (8 + 255 bytes) x 10 bits / 115,200 + 2 x 1.75 ms (t3.5 above
  19,200 baud) = 26.3 ms. The ratio gateway / wire limit (goal: at least 90 %). The pty
  paces bytes but keeps no inter-frame silence, so the bytes-only limit (22.8 ms) is shown
  too, and the gateway against a bare client on the same line.

Prints one human line per measurement and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import time
from collections.abc import Sequence
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from edgetwin.core.types import Sample
from edgetwin.sources.modbus import ModbusRtuConfig, ModbusSource, ModbusTcpConfig
from plcsim import SimProcess

BLOCK, SAMPLES, PER_REQUEST = 1000, 4096, 125
STARTS = [(a, min(PER_REQUEST, BLOCK + SAMPLES - a))
          for a in range(BLOCK, BLOCK + SAMPLES, PER_REQUEST)]  # 33 requests
REQUEST_BYTES, ANSWER_BYTES = 8, 5 + 2 * PER_REQUEST


class _Health:
    """A SourceHealth that only counts: the benchmark measures reads, not telemetry."""

    def up(self) -> None: ...
    def down(self, error_code: str, error: BaseException | str) -> None: ...
    def point_error(self, point: str, error_code: str, error: BaseException | str) -> None: ...
    def cycle(self, duration_s: float) -> None: ...
    def request(self, outcome: str, duration_s: float) -> None: ...


async def raw_rate(client: Any, seconds: float) -> float:
    """Requests/s of a bare client reading the block's requests back to back."""
    done = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for address, count in STARTS:
            response = await client.read_holding_registers(address, count=count, device_id=1)
            if response.isError() or len(response.registers) != count:
                raise RuntimeError(f"bad answer at {address}: {response}")
            done += 1
    return done / (time.perf_counter() - started)


async def gateway_rate(config: ModbusTcpConfig | ModbusRtuConfig, seconds: float) -> float:
    """Requests/s of the gateway's driver polling the whole block as fast as it can."""
    cycles = 0
    first: float | None = None
    last = 0.0

    async def emit(batch: Sequence[Sample]) -> None:
        nonlocal cycles, first, last
        if batch[0].value is None or len(batch[0].value) != SAMPLES:
            raise RuntimeError(f"the gateway read no whole block: {batch[0]}")
        now = time.perf_counter()
        if first is None:
            first = now  # the clock starts at the first full block, after connecting
        else:
            cycles += 1
        last = now

    task = asyncio.create_task(ModbusSource(config).run(emit, _Health()))
    await asyncio.sleep(seconds)  # the measurement window
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert first is not None, "the gateway never read the block"
    return cycles * len(STARTS) / (last - first)


def point() -> dict[str, Any]:
    return {"id": "pump1/vib_de", "address": BLOCK, "type": "int16", "count": SAMPLES,
            "waveform": {"sample_rate": 12000, "scale": 0.001}}


async def tcp(seconds: float) -> dict[str, Any]:
    sim = await SimProcess.start("modbus", "--port", "0")
    try:
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=2, retries=0,
                                      reconnect_delay=0)
        assert await client.connect()
        raw = await raw_rate(client, seconds)
        client.close()
        config = ModbusTcpConfig.model_validate({
            "name": "bench", "type": "modbus_tcp", "host": "127.0.0.1", "port": sim.port,
            "poll_interval": 0.01, "timeout": 2, "points": [point()]})
        gateway = await gateway_rate(config, seconds)
    finally:
        await sim.stop()
    return {"link": "tcp", "raw_req_per_s": round(raw, 1), "gateway_req_per_s": round(gateway, 1),
            "ratio": round(gateway / raw, 3), "goal": 0.8}


async def rtu(seconds: float, baudrate: int = 115_200) -> dict[str, Any]:
    sim = await SimProcess.start("rtu", "--baudrate", str(baudrate), "--pace")
    device = sim.listening["device"]
    char_bits = 10  # start + 8 data + stop, no parity
    silence_s = 2 * 1.75e-3  # t3.5 before the request and before the answer
    wire_s = (REQUEST_BYTES + ANSWER_BYTES) * char_bits / baudrate + silence_s
    try:
        client = AsyncModbusSerialClient(device, framer=FramerType.RTU, baudrate=baudrate,
                                         parity="N", timeout=2, retries=0, reconnect_delay=0)
        assert await client.connect()
        raw = await raw_rate(client, seconds)
        client.close()
        config = ModbusRtuConfig.model_validate({
            "name": "bench", "type": "modbus_rtu", "port": device, "baudrate": baudrate,
            "parity": "N", "poll_interval": 0.01, "timeout": 2, "points": [point()]})
        gateway = await gateway_rate(config, seconds)
    finally:
        await sim.stop()
    wire = 1 / wire_s
    bytes_only = 1 / (wire_s - silence_s)
    return {"link": f"rtu {baudrate} baud", "wire_req_per_s": round(wire, 1),
            "bytes_only_req_per_s": round(bytes_only, 1),
            "raw_req_per_s": round(raw, 1), "gateway_req_per_s": round(gateway, 1),
            "ratio": round(gateway / wire, 3), "ratio_bytes_only": round(gateway / bytes_only, 3),
            "ratio_to_raw": round(gateway / raw, 3), "goal": 0.9}


async def main(seconds: float) -> None:
    results = [await tcp(seconds), await rtu(seconds)]
    for r in results:
        if r["link"] == "tcp":
            print(f"modbus driver  tcp: raw client {r['raw_req_per_s']:.0f} req/s, gateway "
                  f"{r['gateway_req_per_s']:.0f} req/s: {r['ratio']:.0%} of raw (goal 80 %)")
        else:
            print(f"modbus driver  {r['link']}: wire allows {r['wire_req_per_s']:.1f} req/s"
                  f" ({r['bytes_only_req_per_s']:.1f} bytes only), raw client "
                  f"{r['raw_req_per_s']:.1f}, gateway {r['gateway_req_per_s']:.1f}:"
                  f" {r['ratio']:.0%} of the wire, {r['ratio_bytes_only']:.0%} of the bytes-only"
                  f" limit, {r['ratio_to_raw']:.0%} of the raw client (goal 90 %)")
    print(json.dumps({"bench": "modbus_driver", "python": platform.python_version(),
                      "registers_per_request": PER_REQUEST, "requests_per_cycle": len(STARTS),
                      "results": results}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main(parser.parse_args().seconds))
