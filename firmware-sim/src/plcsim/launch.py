"""Start plcsim as a subprocess and learn its port: for test fixtures, HIL scripts and benches.

The child prints one JSON line ``{"event": "listening", ...}`` on stdout once it serves;
``SimProcess.start`` waits for that line (with a timeout) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any


class SimStartError(RuntimeError):
    """The simulator did not report that it listens."""


class SimProcess:
    """One running ``plcsim`` process.

    Use ``await SimProcess.start("modbus", "--port", "0")``; then ``host``/``port`` tell
    where a TCP face listens, ``listening`` holds the whole line (a pty face's ``device``,
    an OPC UA ``endpoint``, ``faces`` for ``serve``) and ``control`` the control API URL.
    Faults: ``kill`` (SIGKILL, the device vanishes), ``pause``/``resume``
    (SIGSTOP/SIGCONT, the device hangs). ``stop`` is the clean end (SIGTERM).
    """

    def __init__(self, process: asyncio.subprocess.Process, listening: dict[str, Any]) -> None:
        self.process = process
        self.listening = listening
        self.host: str = listening.get("host", "127.0.0.1")
        self.port: int = int(listening.get("port", 0))
        self.control: str | None = listening.get("control")

    @classmethod
    async def start(cls, *args: str, timeout_s: float = 15.0) -> SimProcess:
        """Run ``python -m plcsim ARGS...`` and wait until it prints its listening line.

        Raises:
            SimStartError: it exited or stayed silent for ``timeout_s``.
        """
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "plcsim", *args, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None  # stdout=PIPE above
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout_s)
        except TimeoutError:
            await cls._reap(process)
            raise SimStartError(
                f"plcsim {' '.join(args)}: no listening line within {timeout_s} s"
            ) from None
        except BaseException:
            await cls._reap(process)
            raise
        if not line:
            await cls._reap(process, grace_s=5.0)  # stdout closed: it is exiting
            raise SimStartError(
                f"plcsim {' '.join(args)}: exited before listening "
                f"(exit status {process.returncode}; its stderr says why)"
            )
        try:
            listening = json.loads(line)
            if listening.get("event") != "listening":
                raise ValueError(f"unexpected event {listening.get('event')!r}")
        except ValueError as err:
            await cls._reap(process)
            code = process.returncode
            raise SimStartError(
                f"plcsim {' '.join(args)}: expected a listening line, got {line!r} "
                f"(exit status {code}): {err}"
            ) from None
        return cls(process, listening)

    @staticmethod
    async def _reap(process: asyncio.subprocess.Process, grace_s: float = 0.0) -> None:
        """Wait up to ``grace_s`` for the process to end by itself, then SIGKILL it.

        The grace matters for a child that is already exiting: ``Popen.send_signal`` polls
        (and so reaps) it first, and asyncio's child watcher then reports exit status 255
        instead of the real one.
        """
        if grace_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), grace_s)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()

    @property
    def pid(self) -> int:
        """Process id of the simulator."""
        return self.process.pid

    async def kill(self) -> None:
        """SIGKILL: the device vanishes without closing anything; returns once it is gone."""
        await self._reap(self.process)

    def pause(self) -> None:
        """SIGSTOP: the device hangs; connections open but nothing answers (timeouts)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def stop(self, timeout_s: float = 5.0) -> int:
        """SIGTERM and wait for a clean exit (SIGKILL after ``timeout_s``); the exit status."""
        if self.process.returncode is None:
            self.resume()  # a paused process would not act on SIGTERM
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                await self._reap(self.process)
        assert self.process.returncode is not None  # waited above
        return self.process.returncode
