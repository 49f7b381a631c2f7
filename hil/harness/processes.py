"""The processes of a HIL run: Mosquitto, firmware-sim and the gateway, each its own process.

The gateway is any command line: the harness only renders its config, starts it, signals
it and watches ``/proc``; it never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from plcsim import SimProcess
from plcsim.control import call

LOOPBACK = "127.0.0.1"
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "INVOCATION_ID", "JOURNAL_STREAM")


def free_port() -> int:
    """A loopback port that is free now (for peers that cannot report the one they took)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


async def wait_port(port: int, timeout_s: float = 10.0) -> None:
    """Return once something accepts TCP connections on ``port``."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                _, writer = await asyncio.open_connection(LOOPBACK, port)
            except OSError:
                await asyncio.sleep(0.02)  # connect retry pacing while the peer starts
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


async def _terminate(process: asyncio.subprocess.Process, timeout_s: float) -> int:
    """SIGTERM, then SIGKILL after ``timeout_s``; the exit status."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a frozen process would not act on SIGTERM
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    assert process.returncode is not None  # waited above
    return process.returncode


class Broker:
    """A private Mosquitto on a loopback port, stopped and started by the timeline.

    With ``persistence`` a graceful stop keeps the recorder's session and its queued QoS 1
    messages, so the recorder misses nothing the broker accepted.
    """

    def __init__(self, workdir: Path, *, persistence: bool = True) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        keep = (f"persistence true\npersistence_location {workdir}/\n" if persistence
                else "persistence false\n")
        self.conf.write_text(
            f"listener {self.port} {LOOPBACK}\n"
            # Started as root, mosquitto would drop to user "mosquitto" and lose the workdir.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "allow_anonymous true\n"
            f"{keep}"
            # The default of 1000 silently drops QoS 1 messages for a slow recorder.
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            f"log_dest file {workdir / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )

    @property
    def running(self) -> bool:
        """The broker process is up."""
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Start it and wait until it accepts connections."""
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
        if binary is None:
            raise RuntimeError("mosquitto is not installed; `make hil` installs it")
        self.process = await asyncio.create_subprocess_exec(
            binary, "-c", str(self.conf), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        await wait_port(self.port)

    async def stop(self) -> None:
        """Stop it gracefully (it saves its persistence file)."""
        if self.process is not None:
            await _terminate(self.process, 10.0)
            self.process = None


class Sim:
    """firmware-sim's pump skid (Modbus TCP face) and its control API."""

    def __init__(self, process: SimProcess) -> None:
        self.process = process
        assert process.control is not None  # every face serves the control API
        self.control: str = process.control
        self.port = process.port

    @classmethod
    async def start(cls, *, seed: int, speedup: float, tick: float) -> Sim:
        """Start ``plcsim modbus`` on an ephemeral loopback port."""
        process = await SimProcess.start(
            "modbus", "--host", LOOPBACK, "--port", "0", "--seed", str(seed),
            "--speedup", str(speedup), "--tick", str(tick))
        return cls(process)

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        """One control API call, off the event loop (the client is blocking urllib)."""
        return await asyncio.to_thread(call, self.control, method, path, body)

    async def stop(self) -> None:
        """Stop the simulator."""
        await self.process.stop()


class Gateway:
    """The gateway under test: any command line, run with its config like systemd would."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], logdir: Path) -> None:
        self.argv = list(argv)
        base = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
        self.env = {**base, **env}
        self.logdir = logdir
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.started_at: float | None = None  # epoch seconds of the last spawn
        self.exits: list[tuple[float, int]] = []  # (epoch, status) of every end seen
        self._ending = False  # the harness is stopping or killing it: not a crash

    @property
    def pid(self) -> int | None:
        """The running process's pid, or None."""
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid

    async def start(self) -> None:
        """Spawn it (its output goes to logs/gateway-<n>.log)."""
        if self.pid is not None:
            return
        self.starts += 1
        log = (self.logdir / f"gateway-{self.starts}.log").open("wb")
        try:
            self.started_at = time.time()
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL)
        finally:
            log.close()  # the child holds its own copy

    async def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM and wait: the clean stop systemd does."""
        if self.process is not None:
            self._ending = True
            try:
                status = await _terminate(self.process, timeout_s)
            finally:
                self._ending = False
            self.exits.append((time.time(), status))
            self.process = None

    async def kill(self) -> None:
        """SIGKILL: nothing is flushed, nothing closed (a crash, an OOM kill, a power cut)."""
        if self.process is not None and self.process.returncode is None:
            self._ending = True
            try:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                status = await self.process.wait()
            finally:
                self._ending = False
            self.exits.append((time.time(), status))
        self.process = None

    def crashed(self) -> int | None:
        """The exit status if it ended by itself (not by the harness), else None."""
        if not self._ending and self.process is not None and self.process.returncode is not None:
            status = self.process.returncode
            self.exits.append((time.time(), status))
            self.process = None
            return status
        return None
