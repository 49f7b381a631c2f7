"""Fixtures for the telemetry tests: captured JSON logs and a real notify socket."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgetwin.telemetry import configure_logging, reset_logging


class LogCapture:
    """JSON log lines written to an in-memory stream, parsed on demand."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[dict[str, Any]]:
        """Every line so far, parsed; fails the test if one is not a JSON object."""
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]

    def events(self, event: str) -> list[dict[str, Any]]:
        """The lines whose ``event`` is exactly ``event``."""
        return [line for line in self.lines() if line.get("event") == event]


@contextlib.contextmanager
def captured_logs(
    level: str = "debug", environ: dict[str, str] | None = None
) -> Iterator[LogCapture]:
    """Configure JSON logging into a buffer for the duration of the block."""
    stream = io.StringIO()
    configure_logging(fmt="json", level=level, stream=stream, environ=environ or {})
    try:
        yield LogCapture(stream)
    finally:
        reset_logging()


@pytest.fixture
def capture_logs() -> Callable[..., contextlib.AbstractContextManager[LogCapture]]:
    """``captured_logs`` itself, for tests (Hypothesis) that need a fresh capture per example."""
    return captured_logs


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """JSON logs of the test, off systemd (lines carry timestamps)."""
    with captured_logs() as capture:
        yield capture


class DatagramPeer:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str) -> None:
        self.address = address  # as it would appear in NOTIFY_SOCKET
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.sock.setblocking(False)

    def recv_now(self) -> str | None:
        """A datagram already queued, or None."""
        try:
            return self.sock.recv(65536).decode()
        except BlockingIOError:
            return None

    def recv_sync(self, timeout_s: float = 2.0) -> str:
        """Wait (blocking) for the next datagram."""
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(65536).decode()
        finally:
            self.sock.setblocking(False)

    async def recv(self, timeout_s: float = 2.0) -> str:
        """Wait on the event loop for the next datagram; TimeoutError if none comes."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), timeout_s)
        return data.decode()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_peer(tmp_path: Path) -> Iterator[DatagramPeer]:
    """A notify socket on the filesystem, in the test's temporary directory."""
    peer = DatagramPeer(str(tmp_path / "notify.sock"))
    yield peer
    peer.close()


@pytest.fixture
def abstract_notify_peer() -> Iterator[DatagramPeer]:
    """A notify socket in Linux's abstract namespace (``@name``), unique per test."""
    peer = DatagramPeer(f"@edgetwin-test-{uuid.uuid4().hex}")
    yield peer
    peer.close()


@pytest.fixture
def bind_peer() -> Iterator[Callable[[str], DatagramPeer]]:
    """Bind a notify socket at a given address later in the test; closed at teardown."""
    peers: list[DatagramPeer] = []

    def bind(address: str) -> DatagramPeer:
        peer = DatagramPeer(address)
        peers.append(peer)
        return peer

    yield bind
    for peer in peers:
        peer.close()
