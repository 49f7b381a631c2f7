"""The skid on Modbus RTU over a simulated serial line: no socat, no hardware.

``ModbusRtuFace(sim, unit_ids=(1, 2), baudrate=19200, parity="N")``; ``await face.start()``
creates the line (``plcsim.pty_bridge``: two pty pairs bridged in the event loop), runs
pymodbus's serial server with the RTU framer on the device end and returns the gateway end::

    {"protocol": "modbus_rtu", "device": "/dev/pts/N", "baudrate": 19200, "parity": "N",
     "bytesize": 8, "stopbits": 1, "unit_ids": [1, 2]}

Frames are ``address, PDU, CRC-16/MODBUS`` (low byte first); the devices on the line are the
skid PLC and the vibration module (``unit_ids``, see ``plcsim.skid_map``). A request for any
other address gets no answer (no device has it); address 0 is a broadcast: writes are
carried out on both devices and never answered.

Baud rate and parity describe the line; a pty moves bytes at memory speed and has no parity
bit, so they change nothing unless ``pace=True``, which delivers every chunk only after the
time its characters (start + 8 data + parity + stop bits) take at ``baudrate`` - a 125-register
answer (255 bytes) then takes 146 ms at 19200 baud, as on a real line. Parity defaults to
"N" because pyserial cannot open a Linux pty with parity (see ``plcsim.pty_bridge``);
libmodbus clients (mbpoll) may ask for any parity.

Line faults, at the bridge: ``dropout`` and reboots (``sim.faults.silent``) discard what the
gateway sends; ``garbage`` injects ``sim.faults.garbage("modbus_rtu", elapsed)`` random
bytes towards the gateway, checked every ``garbage_period_s`` of wall-clock time (a line
runs in real time, whatever the plant's speed-up); ``disconnect`` (there is no connection to
cut on a serial line) and a reboot's start discard requests and answers in flight. Latency
and exception faults are the ``Responder``'s, as on TCP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer

from plcsim.modbus_server import FACE_RTU, FaceRequestHandler, Responder
from plcsim.modbus_tcp import placeholder_device
from plcsim.pty_bridge import PtyBridge
from plcsim.sim import call_in_loop

if TYPE_CHECKING:
    from plcsim.sim import Sim

PARITIES = ("N", "E", "O")
GARBAGE_PERIOD_S = 0.05


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """An RTU frame: address, PDU, CRC low byte first."""
    body = bytes([unit]) + pdu
    return body + crc16_modbus(body).to_bytes(2, "little")


def char_time_s(baudrate: int, parity: str = "N", stopbits: int = 1, bytesize: int = 8) -> float:
    """Wire time of one character: start bit, data bits, parity bit, stop bits."""
    bits = 1 + bytesize + (parity != "N") + stopbits
    return bits / baudrate


class _SerialServer(ModbusSerialServer):
    def __init__(self, responder: Responder, port: str, baudrate: int) -> None:
        # The device end of a pty: parity "N" (a pty refuses parity), settings are moot.
        super().__init__(placeholder_device(), framer=FramerType.RTU, port=port,
                         baudrate=baudrate, parity="N", timeout=1, reconnect_delay=0.5)
        self.responder = responder
        self.handler: FaceRequestHandler | None = None

    def callback_new_connection(self) -> FaceRequestHandler:
        self.handler = FaceRequestHandler(self, self.responder)
        return self.handler


class ModbusRtuFace:
    """The skid's PLC and vibration module on one simulated RS-485 line."""

    name = FACE_RTU

    def __init__(self, sim: Sim, unit_ids: Sequence[int] = (1, 2), baudrate: int = 19200,
                 parity: str = "N", stopbits: int = 1, *, pace: bool = False,
                 garbage_period_s: float = GARBAGE_PERIOD_S) -> None:
        """``unit_ids``: the skid PLC's address, then (optional) the vibration module's.

        Raises:
            ValueError: bad unit ids or line settings.
        """
        if parity not in PARITIES:
            raise ValueError(f"parity must be one of {', '.join(PARITIES)}")
        if stopbits not in (1, 2) or baudrate <= 0:
            raise ValueError("stopbits 1 or 2 and a positive baud rate")
        self.sim = sim
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.pace = pace
        self.garbage_period_s = garbage_period_s
        self.responder = Responder(sim, FACE_RTU, unit_ids, serial=True)
        self.unit_ids = self.responder.unit_ids
        self.bridge: PtyBridge | None = None
        self._server: _SerialServer | None = None
        self._garbage: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        sim.on_disconnect(self._on_disconnect)
        sim.on_reboot(self._on_reboot)

    @property
    def char_time_s(self) -> float:
        """Wire time of one character at the line's settings."""
        return char_time_s(self.baudrate, self.parity, self.stopbits)

    async def start(self) -> dict[str, Any]:
        """Create the line and serve; returns the listening description.

        Raises:
            OSError: no pty could be created or opened.
            RuntimeError: already started.
        """
        if self.bridge is not None:
            raise RuntimeError("ModbusRtuFace already started")
        bridge = PtyBridge(char_time_s=self.char_time_s if self.pace else 0.0,
                           baudrate=self.baudrate,
                           drop_requests=lambda: self.sim.faults.silent(self.name))
        bridge.open()
        server = _SerialServer(self.responder, bridge.device_path, self.baudrate)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:
            await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in pymodbus
            bridge.close()
            raise OSError(f"cannot open {bridge.device_path}: {err}") from err
        except BaseException:
            bridge.close()
            raise
        bridge.start()
        self.bridge, self._server = bridge, server
        self._loop = asyncio.get_running_loop()
        self._garbage = asyncio.create_task(self._inject_garbage(),
                                            name="plcsim.modbus_rtu.garbage")
        return {"protocol": "modbus_rtu", "device": bridge.gateway_path,
                "baudrate": self.baudrate, "parity": self.parity, "bytesize": 8,
                "stopbits": self.stopbits, "unit_ids": list(self.unit_ids)}

    async def stop(self) -> None:
        """Stop serving and remove the line."""
        if self._garbage is not None:
            self._garbage.cancel()
            await asyncio.wait([self._garbage])  # and a cancel of stop() itself goes through
            self._garbage = None
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in pymodbus
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            bridge.close()

    @property
    def device(self) -> str | None:
        """The gateway's end of the line, once started."""
        return None if self.bridge is None else self.bridge.gateway_path

    async def _inject_garbage(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.garbage_period_s)
            now = time.monotonic()
            data = self.sim.faults.garbage(self.name, now - last)
            last = now
            if data and self.bridge is not None:
                self.bridge.inject(data)

    def glitch(self) -> None:
        """Forget requests and answers in flight on the line."""
        if self.bridge is not None:
            self.bridge.flush()
        if self._server is not None and self._server.handler is not None:
            self._server.handler.flush()

    def _on_disconnect(self, target: str) -> None:
        if target in ("*", self.name):
            self._in_loop()

    def _on_reboot(self) -> None:
        self._in_loop()

    def _in_loop(self) -> None:
        if self.bridge is not None:
            call_in_loop(self._loop, self.glitch)
