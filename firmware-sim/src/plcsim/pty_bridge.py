"""A simulated serial line made of two pseudo-terminal pairs, bridged in the event loop.

::

    gateway --- B slave (/dev/pts/N) = B master --[bridge]-- A master = A slave --- device
                 (gateway_path)                   faults                (device_path)

The device (pymodbus's serial server) opens ``device_path``, the gateway ``gateway_path``;
the bridge copies bytes between the two masters and is where line faults act: it can drop
what the gateway sends (``drop_requests``), inject bytes towards the gateway (``inject``),
forget bytes in flight (``flush``) and, with ``char_time_s``, deliver each chunk only after
the time its characters take on the wire at the line's baud rate.

The bridge keeps its own descriptor of both slaves open, so a master never sees a hang-up
while the gateway (or the device) closes and reopens its end; both slaves start in raw mode
(no echo, no line editing) until their user configures them.

Linux ptys carry no parity: ``tcsetattr`` with PARENB set fails with EINVAL when it is the
only change (so pyserial, which re-applies its settings when a timeout changes, refuses
``parity="E"`` on a pty), while libmodbus's single ``tcsetattr`` succeeds and the flag is
silently dropped. Clients using pyserial must open the gateway path with parity "N".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import tty
from collections.abc import Callable

log = logging.getLogger(__name__)

READ_CHUNK = 4096

_BAUD = {rate: getattr(termios, f"B{rate}") for rate in (
    1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
    if hasattr(termios, f"B{rate}")}


class _Pair:
    """One pty pair: the bridge reads/writes the master and holds the slave open."""

    def __init__(self, baudrate: int | None) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        tty.setraw(self.slave)
        if baudrate in _BAUD:  # cosmetic: what stty reports until the user configures it
            with contextlib.suppress(termios.error):
                attrs = termios.tcgetattr(self.slave)
                attrs[4] = attrs[5] = _BAUD[baudrate]
                termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        os.set_blocking(self.master, False)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Direction:
    """Delivers chunks to one master, optionally paced at ``char_time_s`` per byte."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, char_time_s: float,
                 label: str) -> None:
        self.loop = loop
        self.fd = fd
        self.char_time_s = char_time_s
        self.label = label
        self.busy_until = 0.0
        self.pending: set[asyncio.TimerHandle] = set()
        self.delivered = 0  # bytes written to the master
        self.lost = 0  # bytes the pty would not take (nobody reading) or flushed

    def send(self, data: bytes) -> None:
        if self.char_time_s <= 0:
            self._write(data)
            return
        start = max(self.loop.time(), self.busy_until)
        self.busy_until = start + len(data) * self.char_time_s
        handle: asyncio.TimerHandle | None = None

        def deliver() -> None:
            assert handle is not None  # set right below, before the loop can run this
            self.pending.discard(handle)
            self._write(data)

        handle = self.loop.call_at(self.busy_until, deliver)
        self.pending.add(handle)

    def _write(self, data: bytes) -> None:
        try:
            written = os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as err:
            log.debug("pty bridge %s: write failed: %s", self.label, err)
            written = 0
        self.delivered += written
        self.lost += len(data) - written

    def flush(self) -> None:
        for handle in self.pending:
            handle.cancel()
        self.pending.clear()
        self.busy_until = 0.0


class PtyBridge:
    """Two pty pairs and the byte pump between their masters (see the module docstring)."""

    def __init__(self, *, char_time_s: float = 0.0, baudrate: int | None = None,
                 drop_requests: Callable[[], bool] | None = None) -> None:
        """Set up (``open`` creates the ptys).

        ``char_time_s``: wire time of one character (0: deliver at once);
        ``drop_requests``: asked for every chunk from the gateway; True discards it.
        """
        self.char_time_s = char_time_s
        self.baudrate = baudrate
        self.drop_requests = drop_requests or (lambda: False)
        self._device: _Pair | None = None
        self._gateway: _Pair | None = None
        self._to_device: _Direction | None = None
        self._to_gateway: _Direction | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0  # bytes from the gateway discarded by drop_requests
        self.injected = 0  # bytes injected towards the gateway

    def open(self) -> None:
        """Create both pty pairs (``device_path``, ``gateway_path`` exist afterwards)."""
        if self._device is not None:
            raise RuntimeError("PtyBridge already open")
        self._device = _Pair(self.baudrate)
        try:
            self._gateway = _Pair(self.baudrate)
        except BaseException:
            self._device.close()
            self._device = None
            raise

    @property
    def device_path(self) -> str:
        """The slave the device opens."""
        assert self._device is not None, "open() first"
        return self._device.path

    @property
    def gateway_path(self) -> str:
        """The slave the gateway opens."""
        assert self._gateway is not None, "open() first"
        return self._gateway.path

    def start(self) -> None:
        """Pump bytes in the running loop."""
        assert self._device is not None, "open() first"
        assert self._gateway is not None, "open() first"
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._to_device = _Direction(loop, self._device.master, self.char_time_s, "to device")
        self._to_gateway = _Direction(loop, self._gateway.master, self.char_time_s,
                                      "to gateway")
        loop.add_reader(self._gateway.master, self._from_gateway)
        loop.add_reader(self._device.master, self._from_device)

    def _read(self, fd: int) -> bytes:
        try:
            return os.read(fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as err:  # EIO: no slave open (cannot happen while we hold them)
            log.debug("pty bridge: read failed: %s", err)
            return b""

    def _from_gateway(self) -> None:
        assert self._gateway is not None
        assert self._to_device is not None
        data = self._read(self._gateway.master)
        if not data:
            return
        if self.drop_requests():
            self.dropped += len(data)
            return
        self._to_device.send(data)

    def _from_device(self) -> None:
        assert self._device is not None
        assert self._to_gateway is not None
        data = self._read(self._device.master)
        if data:
            self._to_gateway.send(data)

    def inject(self, data: bytes) -> None:
        """Send ``data`` towards the gateway as if it came down the line."""
        if data and self._to_gateway is not None:
            self.injected += len(data)
            self._to_gateway.send(data)

    def flush(self) -> None:
        """Forget bytes still on their way (paced chunks not yet delivered)."""
        for direction in (self._to_device, self._to_gateway):
            if direction is not None:
                direction.flush()

    @property
    def stats(self) -> dict[str, int]:
        """Byte counters: delivered each way, dropped, injected, lost."""
        to_device, to_gateway = self._to_device, self._to_gateway
        return {
            "to_device": to_device.delivered if to_device else 0,
            "to_gateway": to_gateway.delivered if to_gateway else 0,
            "dropped": self.dropped,
            "injected": self.injected,
            "lost": (to_device.lost if to_device else 0) + (to_gateway.lost if to_gateway else 0),
        }

    def close(self) -> None:
        """Stop pumping and close all four descriptors."""
        self.flush()
        loop = self._loop
        for pair in (self._device, self._gateway):
            if pair is None:
                continue
            if loop is not None and not loop.is_closed():
                loop.remove_reader(pair.master)
            pair.close()
        self._device = self._gateway = None
        self._to_device = self._to_gateway = None
        self._loop = None
