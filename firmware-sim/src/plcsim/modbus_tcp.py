"""The skid on Modbus TCP: a pymodbus TCP server whose connections plcsim answers itself.

``ModbusTcpFace(sim, host="127.0.0.1", port=0, unit_ids=(1, 2))``; ``await face.start()``
returns ``{"protocol": "modbus", "host": host, "port": bound_port}``. The face never ticks
the plant: whoever owns the ``Sim`` runs ``sim.run()`` (or steps it in a test).

What the face saw is in ``sim.state()["faces"]["modbus_tcp"]`` (and ``GET /state``):
``connections_open`` now, ``connections_total`` accepted since it started, and ``requests``
taken up per unit id - so a test can tell how a gateway uses the device.

Connection faults: a ``disconnect`` fault for ``modbus_tcp`` (or ``*``) and every PLC
reboot close each open connection at once (the client sees the peer close); new
connections are accepted right away, but during a reboot nothing is answered. Request
faults (dropout, latency, exception) are the ``Responder``'s: see ``plcsim.modbus_server``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice

from plcsim.modbus_server import FACE_TCP, FaceRequestHandler, Responder
from plcsim.sim import call_in_loop

if TYPE_CHECKING:
    from plcsim.sim import Sim

TCP_BUFFER = 8192  # bytes of pipelined requests one connection may have outstanding


def placeholder_device() -> SimDevice:
    """A datastore pymodbus insists on at construction; plcsim's handler never uses it."""
    return SimDevice(0, simdata=[SimData(0)])


class _TcpServer(ModbusTcpServer):
    def __init__(self, responder: Responder, address: tuple[str, int],
                 on_connection: Callable[[], None]) -> None:
        super().__init__(placeholder_device(), address=address)
        self.responder = responder
        self.on_connection = on_connection

    def callback_new_connection(self) -> FaceRequestHandler:
        self.on_connection()
        return FaceRequestHandler(self, self.responder, max_buffer=TCP_BUFFER)


class ModbusTcpFace:
    """The skid's PLC (and its vibration module) on Modbus TCP."""

    name = FACE_TCP

    def __init__(self, sim: Sim, host: str = "127.0.0.1", port: int = 0,
                 unit_ids: Sequence[int] = (1, 2)) -> None:
        """``unit_ids``: the skid PLC's unit id, then (optional) the vibration module's.

        Raises:
            ValueError: bad unit ids.
        """
        self.sim = sim
        self.host = host
        self.port = port
        self.responder = Responder(sim, FACE_TCP, unit_ids, serial=False)
        self.unit_ids = self.responder.unit_ids
        self._server: _TcpServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connections_total = 0  # connections accepted, over every start()
        sim.on_disconnect(self._on_disconnect)
        sim.on_reboot(self._on_reboot)
        sim.report_face(self.name, self.describe)

    async def start(self) -> dict[str, Any]:
        """Bind and serve; returns the listening description.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: already started.
        """
        if self._server is not None:
            raise RuntimeError("ModbusTcpFace already started")
        server = _TcpServer(self.responder, (self.host, self.port), self._accepted)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:  # pymodbus reports a failed bind this way
            await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in pymodbus
            raise OSError(f"cannot listen on {self.host}:{self.port}: {err}") from err
        self._server = server
        self._loop = asyncio.get_running_loop()
        sockets: list[socket.socket] = list(getattr(server.transport, "sockets", ()) or ())
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return {"protocol": "modbus", "host": self.host, "port": self.port}

    async def stop(self) -> None:
        """Close the listener and every connection."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in pymodbus

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return 0 if self._server is None else len(self._server.active_connections)

    def describe(self) -> dict[str, Any]:
        """What the face saw, JSON-ready: connections open and accepted, requests by unit."""
        return {"connections_open": self.connections,
                "connections_total": self.connections_total,
                "requests": {str(unit): n for unit, n in sorted(self.responder.requests.items())}}

    def _accepted(self) -> None:
        self.connections_total += 1

    def cut_connections(self) -> None:
        """Close every open client connection (the listener stays)."""
        if self._server is None:
            return
        for connection in list(self._server.active_connections.values()):
            connection.close()

    def _on_disconnect(self, target: str) -> None:
        if target in ("*", self.name):
            self._in_loop(self.cut_connections)

    def _on_reboot(self) -> None:
        self._in_loop(self.cut_connections)

    def _in_loop(self, action: Callable[[], None]) -> None:
        if self._server is not None:
            call_in_loop(self._loop, action)
