"""How Modbus sources reach their devices: a share of one TCP connection or of one serial bus.

Every source whose config names the same link (``ModbusTcpConfig.link()``: one TCP
``host:port``; ``ModbusRtuConfig.link()``: one serial port) shares one ``SharedClient``: one
pymodbus client and one request lock. A TCP-to-RTU gateway or a PLC answering on several unit
ids sees one connection, as many of them require, and an RTU line sees one master.

Invariants:

- one request at a time per link: every request (read, write, read-back) holds the link's
  ``lock`` from sending to the answer or the timeout, so the wire carries strict request and
  response and the sources take turns in FIFO order;
- a unit id that does not answer (a timeout) fails only its own source, which backs off; the
  link stays open and the other sources keep their schedule. A late answer is never taken
  for another unit's: pymodbus (3.10 and later) skips a frame whose unit id differs from the
  outstanding request's, and drops an answer that comes while no request is outstanding. On
  TCP it also gives each request a new MBAP transaction id and skips a frame with another
  one, so not even the same unit's next request takes it. Two gaps remain, both rare. Before
  pymodbus fixed its issue #2933, a stale frame arriving in the same TCP read as the next
  answer hides that answer too: that request times out once (no wrong data). And a device
  that answers with transaction id 0 (pymodbus does not check 0) is guarded by the unit id
  only: its late answer can go to nobody else (the config refuses one unit id twice on a
  link), but it could answer the same unit's next request, after the backoff;
- when no unit answers at all, the link itself is dead: pymodbus closes a TCP connection
  after five unanswered requests in a row (with ``retries=0``), and the sources reopen it;
- any other failure (connection refused, reset or closed by the peer, a malformed answer, the
  serial adapter gone) closes the link for all: each source meets it at its next request,
  reports it and backs off, and the first to come back reopens the link;
- the link is closed when its last source stops;
- sources that share a link agree on its settings (``link_settings()``: the timeout, and the
  line settings of a bus), since one pymodbus client has one timeout; the config check
  refuses anything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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

    async def connect(self) -> bool:
        """Open the connection or port; False when it cannot (pymodbus's way to fail)."""


def alive(client: Client) -> bool:
    """The client is connected and its transport is really open.

    pymodbus's ``connected`` only says it holds a transport. Its ``connect`` assigns the
    transport after the connection is made, so a peer that accepts and resets at once can
    close that transport before the assignment, which then brings the dead transport back
    (pymodbus 3.16). Writes then vanish and every request times out; as timeouts keep a link
    open, the link would stay dead until five timeouts in a row, minutes with backoff. The
    HIL soak found it: 80 s back after a 10 s PLC link cut. asyncio's ``is_closing()`` on the
    transport tells the truth.
    """
    if not client.connected:
        return False
    transport = getattr(getattr(client, "ctx", None), "transport", None)
    closing = getattr(transport, "is_closing", None)
    return not (callable(closing) and closing())


class SharedClient:
    """One link's pymodbus client, opened on demand, and the lock its sources take turns with.

    Attributes:
        link: the config's ``link()``, e.g. ``modbus_tcp:192.0.2.10:502``.
        settings: the ``link_settings()`` every user agreed on.
        failure: what a failed ``open`` means, for the sources' messages.
        client: the open client, or None.
        users: sources holding a share.
        lock: held for each request and its answer: one request at a time on the link.
    """

    def __init__(self, config: ModbusTcpConfig | ModbusRtuConfig) -> None:
        self.link = config.link()
        self.settings = config.link_settings()
        self._new_client = _client_factory(config)
        if isinstance(config, ModbusRtuConfig):
            self.failure = f"cannot open serial port {config.port}"
        else:
            self.failure = (f"connect failed (refused, unreachable or no answer within "
                            f"{config.timeout:g} s)")
        self.client: Client | None = None
        self.users = 0
        self.lock = asyncio.Lock()
        self._opening = asyncio.Lock()  # one connect at a time, whoever asks first

    async def open(self) -> Client | None:
        """The open client, connecting a new one if there is none; None if that fails."""
        async with self._opening:
            old = self.client
            if old is not None and alive(old):
                return old
            if old is not None:
                old.close()  # closed by the peer: let its users find out, and start afresh
                self.client = None
            client = self._new_client()
            try:
                connected = await client.connect()
            except BaseException:
                client.close()  # cancelled mid-connect: leave no half-open transport behind
                raise
            if not connected or not alive(client):
                client.close()
                return None
            self.client = client
            return client

    def current(self, client: Client) -> bool:
        """``client`` is still the link's open client (not closed since it was handed out)."""
        return client is self.client and alive(client)

    def failed(self, client: Client) -> None:
        """Close the link after a link failure; the next ``open`` reopens it."""
        if client is self.client:
            client.close()
            self.client = None

    def close(self) -> None:
        """Close the client, if open."""
        if self.client is not None:
            self.client.close()
            self.client = None


def _client_factory(config: ModbusTcpConfig | ModbusRtuConfig) -> Callable[[], Client]:
    """How to make the link's client: no pymodbus retries or reconnects, our loop has them."""
    if isinstance(config, ModbusRtuConfig):
        baudrate, parity, stopbits, bytesize = config.line_settings()
        port, timeout_s = config.port, config.timeout
        return lambda: AsyncModbusSerialClient(
            port, framer=FramerType.RTU, baudrate=baudrate, parity=parity, stopbits=stopbits,
            bytesize=bytesize, timeout=timeout_s, retries=0, reconnect_delay=0,
            name=f"bus[{port}]",
        )
    host, tcp_port, timeout_s = config.host, config.port, config.timeout
    return lambda: AsyncModbusTcpClient(
        host, port=tcp_port, timeout=timeout_s, retries=0, reconnect_delay=0,
        name=f"tcp[{host}:{tcp_port}]",
    )


_SHARED: dict[str, SharedClient] = {}  # by link; an entry lives while a source holds a share


class ClientShare:
    """A source's share of the ``SharedClient`` its config's link names.

    Attributes:
        shared: the link's ``SharedClient``.
    """

    def __init__(self, config: ModbusTcpConfig | ModbusRtuConfig) -> None:
        link = config.link()
        shared = _SHARED.get(link)
        if shared is None:
            shared = _SHARED[link] = SharedClient(config)
        elif shared.settings != config.link_settings():
            # The config check refuses this; a direct construction must not sneak past it.
            msg = (f"{link} is already open with settings {shared.settings}, "
                   f"not {config.link_settings()}")
            raise ValueError(msg)
        shared.users += 1
        self.shared = shared

    @property
    def failure(self) -> str:
        """What a failed ``open`` means, for the source's message."""
        return self.shared.failure

    @property
    def lock(self) -> asyncio.Lock:
        """The link's request lock."""
        return self.shared.lock

    async def open(self) -> Client | None:
        """The link's open client (opening it if needed), or None when it cannot be reached."""
        return await self.shared.open()

    def current(self, client: Client) -> bool:
        """``client`` is still the link's open client."""
        return self.shared.current(client)

    def discard(self, client: Client, *, link_failed: bool) -> None:
        """The source saw ``client`` fail: a silent unit leaves the link open, else it closes."""
        if link_failed:
            self.shared.failed(client)

    def release(self) -> None:
        """Leave the link; the last source closes it."""
        shared = self.shared
        shared.users -= 1
        if shared.users <= 0:
            shared.close()
            if _SHARED.get(shared.link) is shared:
                del _SHARED[shared.link]
