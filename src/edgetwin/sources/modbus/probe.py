"""``edgetwin probe modbus``: read a block of registers and show it in every type and order.

An engineer facing an undocumented device reads a few registers and looks for the column
where the numbers make sense: that column is the point's type and byte order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edgetwin.core.errors import DecodeError, SourceUnavailable
from edgetwin.sources.modbus.config import ByteOrder, DataType
from edgetwin.sources.modbus.decode import decode_value

MAX_READ = 125  # registers per FC3/FC4 request (Modbus Application Protocol, section 6.3)
_WIDE = (
    (DataType.FLOAT32, DataType.INT32, DataType.UINT32),
    (DataType.FLOAT64, DataType.INT64, DataType.UINT64),
)


async def read_registers(host: str, port: int, unit_id: int, address: int, count: int, *,
                         kind: str = "holding", timeout_s: float = 2.0) -> list[int]:
    """``count`` registers from ``address`` (in reads of at most 125).

    Raises:
        SourceUnavailable: no connection, a timeout, or an exception response.
    """
    client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0,
                                  reconnect_delay=0)
    where = f"modbus {host}:{port} unit {unit_id}"
    try:
        if not await client.connect():
            raise SourceUnavailable(f"{where}: cannot connect")
        read = client.read_holding_registers if kind == "holding" else client.read_input_registers
        words: list[int] = []
        for start in range(address, address + count, MAX_READ):
            size = min(MAX_READ, address + count - start)
            try:
                response = await read(start, count=size, device_id=unit_id)
            except ModbusException as err:
                raise SourceUnavailable(f"{where}: read {kind} {start}x{size}: {err}") from err
            if response.isError():
                code = getattr(response, "exception_code", "?")
                raise SourceUnavailable(
                    f"{where}: read {kind} {start}x{size}: exception response {code}")
            words.extend(response.registers[:size])
        return words
    finally:
        client.close()


def _decode(words: Sequence[int], data_type: DataType, order: ByteOrder) -> Any:
    try:
        value = decode_value(words, data_type, order)
    except DecodeError:
        return None  # NaN/inf or not decodable: shown as blank
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def decode_all(address: int, words: Sequence[int]) -> list[dict[str, Any]]:
    """For each register: its 16-bit readings, and every wider value that starts there."""
    rows = []
    for i, word in enumerate(words):
        row: dict[str, Any] = {
            "address": address + i,
            "hex": f"{word:04X}",
            "uint16": word,
            "int16": word - 0x10000 if word & 0x8000 else word,
        }
        for group in _WIDE:
            for data_type in group:
                span = words[i:i + data_type.registers]
                if len(span) == data_type.registers:
                    row[data_type.value] = {order.value: _decode(span, data_type, order)
                                            for order in ByteOrder}
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return ["  ".join(cell.rjust(width) for cell, width in zip(r, widths, strict=True))
            for r in [header, *rows]]


def render(rows: list[dict[str, Any]]) -> str:
    """The decoded block as aligned text tables: 16-bit, then one per wide type."""
    out = _table(["addr", "hex", "uint16", "int16"],
                 [[str(r["address"]), r["hex"], str(r["uint16"]), str(r["int16"])]
                  for r in rows])
    orders = [order.value for order in ByteOrder]
    for group in _WIDE:
        for data_type in group:
            wide = [r for r in rows if data_type.value in r]
            if not wide:
                continue
            out += ["", f"{data_type.value} starting at each address:"]
            out += _table(["addr", *orders],
                          [[str(r["address"]), *(_cell(r[data_type.value][o]) for o in orders)]
                           for r in wide])
    return "\n".join(out)
