"""Serves a pump skid over Modbus TCP with the pymodbus server; the wiring, no physics.

The pymodbus 3.16 datastore (``SimDevice`` with one ``SimData`` per mapped value, four
separate tables) answers exception 2 for any register outside a ``SimData`` by itself.
Its ``action`` hook runs before every access: we use it to copy the live register image
into the datastore, to route writes into the plant, and to refuse bit addresses the map
does not hold (the datastore itself only knows bits in groups of 16).

Requests for another unit id answer exception 0x0B (Gateway Target Device Failed to
Respond), as a TCP-to-RTU gateway would for a device that is not on its bus.

Known gap: for coils and discrete inputs the hook is told the first bit and the number of
16-bit words, not the number of bits, so a read that starts at a mapped bit and runs on
into unmapped bits of the same 16-bit group returns false for them instead of exception 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from plcsim.plant import PumpSkid
from plcsim.registers import RegisterImage, Table
from plcsim.skid_map import SKID_MAP, apply_write, render, writable_span

DEFAULT_TICK_S = 0.1

# Function code -> table it addresses (Modbus Application Protocol V1.1b3, section 6).
_FC_TABLE = {
    1: Table.COIL, 5: Table.COIL, 15: Table.COIL,
    2: Table.DISCRETE,
    3: Table.HOLDING, 6: Table.HOLDING, 16: Table.HOLDING, 22: Table.HOLDING, 23: Table.HOLDING,
    4: Table.INPUT,
}
_TABLE_ORDER = (Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT)  # SimDevice's tuple order


def _device(unit_id: int, action: object) -> SimDevice:
    tables: dict[Table, list[SimData]] = {table: [] for table in Table}
    for entry in SKID_MAP:
        if entry.table.is_bit:
            data = SimData(entry.address, values=False, datatype=DataType.BITS,
                           readonly=not entry.writable)
        else:
            data = SimData(entry.address, count=entry.width, values=0,
                           datatype=DataType.REGISTERS, readonly=not entry.writable)
        tables[entry.table].append(data)
    simdata = tuple(tables[table] for table in _TABLE_ORDER)
    return SimDevice(unit_id, simdata=simdata, action=action)  # type: ignore[arg-type]  # the 4-tuple is what SimDevice documents for separate tables


async def _absent_unit(*_hook_args: object) -> ExcCodes | None:
    """Datastore hook for unit ids nobody answers to."""
    return ExcCodes.GATEWAY_NO_RESPONSE


class ModbusSkidServer:
    """A pump skid on Modbus TCP: the plant ticks in the background, clients read its image.

    Call ``start`` once, then ``stop`` once; ``port`` is the bound port after ``start``
    (useful with port 0).
    """

    def __init__(
        self,
        plant: PumpSkid,
        *,
        host: str = "127.0.0.1",
        port: int = 502,
        unit_id: int = 1,
        tick_s: float = DEFAULT_TICK_S,
    ) -> None:
        self.plant = plant
        self.image = RegisterImage()
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.tick_s = tick_s
        render(plant, self.image)
        self._server: ModbusTcpServer | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port.

        Raises:
            OSError: the address cannot be bound.
        """
        devices = [_device(self.unit_id, self._on_access)]
        if self.unit_id != 0:  # pymodbus: device id 0 catches every unit not listed
            devices.append(_device(0, _absent_unit))
        server = ModbusTcpServer(devices, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:  # pymodbus reports a failed bind this way
            raise OSError(f"cannot listen on {self.host}:{self.port}: {err}") from err
        self._server = server
        sockets: list[socket.socket] = list(getattr(server.transport, "sockets", ()) or ())
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._ticker = asyncio.create_task(self._tick_forever(), name="plcsim.modbus.tick")
        return self.port

    async def stop(self) -> None:
        """Stop ticking, close the listener and every client connection."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in pymodbus 3.16
            self._server = None

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.tick_s
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            self.plant.tick(self.tick_s)
            render(self.plant, self.image)

    async def _on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Pymodbus datastore hook: check the address, apply writes, refresh ``registers``.

        ``registers`` is the datastore's live table starting at ``start_address`` (for bit
        tables: 16 bits per word, ``start_address`` counted in words).
        """
        table = _FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        span = len(set_values) if set_values is not None else (1 if table.is_bit else count)
        if any((table, a) not in self.image for a in range(address, address + span)):
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is not None:
            if not writable_span(table, address, span):
                return ExcCodes.ILLEGAL_ADDRESS
            apply_write(self.plant, table, address, set_values)
            render(self.plant, self.image)
        self._copy_image(table, start_address, registers)
        return None

    def _copy_image(self, table: Table, start_address: int, registers: list[int]) -> None:
        for address, value in self.image.items(table):
            if table.is_bit:
                index, bit = address // 16 - start_address, address % 16
                registers[index] = (registers[index] & ~(1 << bit)) | (value << bit)
            else:
                registers[address - start_address] = value
