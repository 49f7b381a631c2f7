"""How a Modbus source gets its client: its own TCP connection, or a share of a serial bus.

Invariants:
- a TCP source owns its connection: any failure (timeout included) closes it, because a
  late answer on the stream would be taken for the next request's;
- every RTU source on one serial port shares one ``SerialBus``: one client, so the line
  sees strict request/response from one owner; a slave that does not answer (a timeout)
  fails only its own source, which backs off, while the port stays open for the others;
  a port error (adapter unplugged) closes the port for all and the next user reopens it;
- the bus closes the port when its last source stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from edgetwin.sources.modbus.config import ModbusRtuConfig, ModbusTcpConfig


class Client(Protocol):
    """What the driver uses of a pymodbus TCP or serial client (pymodbus is untyped here)."""

    @property
    def connected(self) -> bool:
        """The connection or port is open."""

    def read_holding_registers(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """The pymodbus request of that name."""

    def read_input_registers(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """The pymodbus request of that name."""

    def read_coils(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """The pymodbus request of that name."""

    def read_discrete_inputs(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """The pymodbus request of that name."""

    def write_coil(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """The pymodbus request of that name."""

    def write_coils(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """The pymodbus request of that name."""

    def write_register(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """The pymodbus request of that name."""

    def write_registers(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """The pymodbus request of that name."""

    def close(self) -> None:
        """Close the connection or port."""


class Connector(Protocol):
    """Gives a source a connected client and takes it back."""

    failure: str  # what a failed ``open`` means, for the source's message

    async def open(self) -> Client | None:
        """A connected client, or None when the device or port cannot be reached now."""

    def discard(self, client: Client, *, port_failed: bool) -> None:
        """The source saw ``client`` fail; ``port_failed`` is False for an unanswered request."""

    def release(self, client: Client | None) -> None:
        """The source stops; ``client`` is the one it held, if any."""


class TcpConnector:
    """One TCP connection per source."""

    def __init__(self, config: ModbusTcpConfig) -> None:
        self._config = config
        self.failure = (f"connect failed (refused, unreachable or no answer within "
                        f"{config.timeout:g} s)")

    async def open(self) -> Client | None:
        """Connect a new client (pymodbus reports failure as False)."""
        config = self._config
        client = AsyncModbusTcpClient(
            config.host, port=config.port, name=f"source[{config.name}]",
            timeout=config.timeout, retries=0,
            reconnect_delay=0,  # our loop reconnects, with jitter and its own telemetry
        )
        try:
            connected = await client.connect()
        except BaseException:
            client.close()  # cancelled mid-connect: leave no half-open transport behind
            raise
        if connected:
            return client
        client.close()
        return None

    def discard(self, client: Client, *, port_failed: bool) -> None:
        """Close it whatever failed: a stream may still carry the late answer."""
        del port_failed
        client.close()

    def release(self, client: Client | None) -> None:
        """Close the connection."""
        if client is not None:
            client.close()


class SerialBus:
    """One serial port and the client every RTU source on it shares."""

    def __init__(self, config: ModbusRtuConfig) -> None:
        self.port = config.port
        self.settings = config.line_settings()
        self._timeout_s = config.timeout
        self.client: Client | None = None
        self.users = 0
        self._opening = asyncio.Lock()

    async def open(self) -> Client | None:
        """The shared client, opening the port if it is closed."""
        async with self._opening:
            if self.client is not None and self.client.connected:
                return self.client
            baudrate, parity, stopbits, bytesize = self.settings
            client = AsyncModbusSerialClient(
                self.port, framer=FramerType.RTU, baudrate=baudrate, parity=parity,
                stopbits=stopbits, bytesize=bytesize, timeout=self._timeout_s, retries=0,
                reconnect_delay=0, name=f"bus[{self.port}]",
            )
            try:
                connected = await client.connect()
            except BaseException:
                client.close()
                raise
            if not connected:
                client.close()
                return None
            self.client = client
            return client

    def port_failed(self, client: Client) -> None:
        """Close the port after a port error; the next ``open`` reopens it."""
        if client is self.client:
            client.close()
            self.client = None


_BUSES: dict[str, SerialBus] = {}


class RtuConnector:
    """A source's share of the ``SerialBus`` for its port."""

    def __init__(self, config: ModbusRtuConfig) -> None:
        bus = _BUSES.get(config.port)
        if bus is None:
            bus = _BUSES[config.port] = SerialBus(config)
        elif bus.settings != config.line_settings():
            # The config check refuses this; a direct construction must not sneak past it.
            msg = (f"serial port {config.port} is already open with settings {bus.settings}, "
                   f"not {config.line_settings()}")
            raise ValueError(msg)
        bus.users += 1
        self.bus = bus
        self.failure = f"cannot open serial port {config.port}"

    async def open(self) -> Client | None:
        """The bus's client."""
        return await self.bus.open()

    def discard(self, client: Client, *, port_failed: bool) -> None:
        """A silent slave leaves the port open; a port error closes it for everyone."""
        if port_failed:
            self.bus.port_failed(client)

    def release(self, client: Client | None) -> None:
        """Leave the bus; the last source closes the port."""
        del client
        bus = self.bus
        bus.users -= 1
        if bus.users <= 0:
            if bus.client is not None:
                bus.client.close()
                bus.client = None
            if _BUSES.get(bus.port) is bus:
                del _BUSES[bus.port]


def connector_for(config: ModbusTcpConfig | ModbusRtuConfig) -> Connector:
    """The connector a source's config calls for."""
    if isinstance(config, ModbusRtuConfig):
        return RtuConnector(config)
    return TcpConnector(config)
