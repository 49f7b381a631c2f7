"""The systemd notification protocol (READY, STATUS, STOPPING, WATCHDOG) without libsystemd."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import structlog
from structlog.typing import FilteringBoundLogger

if TYPE_CHECKING:
    from edgetwin.telemetry.metrics import Telemetry

_log: FilteringBoundLogger = structlog.get_logger("edgetwin.telemetry.sdnotify")


def _parse_address(raw: str) -> bytes | None:
    if raw.startswith("/"):
        return os.fsencode(raw)
    if raw.startswith("@") and len(raw) > 1:
        return b"\0" + os.fsencode(raw[1:])
    return None


def _field_value(value: str | int | float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    # One datagram is a list of lines, so a newline in a value would start a bogus key.
    return str(value).replace("\r", " ").replace("\n", " ")


class SystemdNotifier:
    """Sends notifications to the service manager over ``$NOTIFY_SOCKET``.

    Protocol (sd_notify(3)): one AF_UNIX datagram per notification, ``KEY=VALUE`` lines
    separated by newlines. An address starting with ``/`` is a filesystem socket; one
    starting with ``@`` is in Linux's abstract namespace (``@`` becomes NUL). When the
    variable is unset we are not under systemd and every call is a no-op.

    Sending never raises and never blocks: the socket is non-blocking, and a failed send
    (systemd gone, buffer full) is counted every time and logged once until a send
    succeeds again. One socket is kept open for the life of the notifier; addresses are
    given per datagram (``sendto``), so a re-executed systemd that re-binds the socket is
    reached without reconnecting.

    ``vsock:`` addresses (recent systemd, VMs) are not supported: the notifier disables
    itself with one warning.

    Args:
        environ: Where to read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``;
            tests pass a dict instead of changing the process environment.
        telemetry: When given, send failures go through ``Telemetry.emit_error``
            (component ``systemd``) and the watchdog exports its loop-lag metrics.
    """

    def __init__(
        self,
        environ: Mapping[str, str] = os.environ,
        *,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._environ = environ
        self.telemetry = telemetry
        self._raw = environ.get("NOTIFY_SOCKET", "")
        self._address = _parse_address(self._raw) if self._raw else None
        if self._raw and self._address is None:
            _log.warning(
                "NOTIFY_SOCKET is not a Unix socket address; not notifying systemd",
                notify_socket=self._raw,
            )
        self._sock: socket.socket | None = None
        self._closed = False
        self._failing = False
        self.send_errors = 0

    @property
    def enabled(self) -> bool:
        """Whether notifications are sent (a usable address and not closed)."""
        return self._address is not None and not self._closed

    def notify(self, **fields: str | int | float) -> None:
        """Send one datagram with the given fields, e.g. ``notify(READY=1, STATUS="ok")``.

        Newlines in values become spaces; ``True``/``False`` become ``1``/``0``. A no-op
        when disabled, after ``close()``, or with no fields.
        """
        if self._address is None or self._closed or not fields:
            return
        payload = "\n".join(f"{key}={_field_value(v)}" for key, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(payload.encode(), self._address)
        except OSError as err:
            self._send_failed(err, fields)
            return
        if self._failing:
            self._failing = False
            _log.info("Notifications to systemd delivered again", notify_socket=self._raw)

    def _send_failed(self, err: OSError, fields: Mapping[str, object]) -> None:
        self.send_errors += 1
        first = not self._failing
        self._failing = True
        keys = ",".join(fields)
        if self.telemetry is not None:
            self.telemetry.emit_error(
                "systemd",
                "notify_failed",
                "notify",
                err,
                log=first,
                message="Notification to systemd failed",
                notify_socket=self._raw,
                keys=keys,
            )
        elif first:
            _log.error(
                "Notification to systemd failed",
                component="systemd",
                error_code="notify_failed",
                stage="notify",
                error=str(err),
                error_type=type(err).__name__,
                notify_socket=self._raw,
                keys=keys,
            )

    def watchdog_interval_s(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half of ``WATCHDOG_USEC``, in seconds.

        None when no watchdog is configured, the value is unusable, or ``WATCHDOG_PID``
        names another process (the watchdog applies to us only if it is unset or ours).
        """
        raw_usec = self._environ.get("WATCHDOG_USEC")
        if not raw_usec:
            return None
        try:
            usec = int(raw_usec)
        except ValueError:
            _log.warning("WATCHDOG_USEC is not an integer; no watchdog", watchdog_usec=raw_usec)
            return None
        if usec <= 0:
            return None
        raw_pid = self._environ.get("WATCHDOG_PID")
        if raw_pid:
            try:
                pid = int(raw_pid)
            except ValueError:
                _log.warning("WATCHDOG_PID is not an integer; no watchdog", watchdog_pid=raw_pid)
                return None
            if pid != os.getpid():
                return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        """Close the socket; every later ``notify`` is a no-op. Safe to call twice."""
        self._closed = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def run_watchdog(notifier: SystemdNotifier, is_healthy: Callable[[], bool]) -> None:
    """Send ``WATCHDOG=1`` every watchdog interval while the gateway is really working.

    Runs until cancelled, as a task in the daemon's TaskGroup. Returns at once when no
    watchdog is configured or the notifier is disabled. A ping is sent only when

    - the event loop is responsive: the sleep overshot its deadline by no more than half
      the interval (otherwise a warning with ``lag_s`` is logged and the ping skipped), and
    - ``is_healthy()`` is true (the critical loops have heartbeated recently).

    Pinging from the loop, not a thread, is the point: a stuck loop stops the pings and
    systemd restarts us (FACTS 6.2). ``is_healthy`` exceptions propagate; a broken health
    check is a bug and ends the task.
    """
    interval_s = notifier.watchdog_interval_s()
    if interval_s is None or not notifier.enabled:
        return
    max_lag_s = interval_s / 2
    loop = asyncio.get_running_loop()
    lag_gauge = skipped = None
    if notifier.telemetry is not None:
        lag_gauge = notifier.telemetry.gauge(
            "edgetwin_event_loop_lag_seconds",
            "How late the watchdog task woke up, in seconds; high means a blocked loop.",
        )
        skipped = notifier.telemetry.counter(
            "edgetwin_watchdog_skipped_total",
            "Watchdog pings not sent, by reason (loop_lag or unhealthy).",
            labels=("reason",),
        )
    _log.debug("Watchdog started", interval_s=interval_s)
    withheld = False
    while True:
        started = loop.time()
        await asyncio.sleep(interval_s)
        lag_s = max(0.0, loop.time() - started - interval_s)
        if lag_gauge is not None:
            lag_gauge.set(lag_s)
        if lag_s > max_lag_s:
            _log.warning(
                "Watchdog ping skipped: event loop lagging",
                lag_s=round(lag_s, 3),
                max_lag_s=round(max_lag_s, 3),
            )
            if skipped is not None:
                skipped.labels(reason="loop_lag").inc()
            continue
        if not is_healthy():
            if not withheld:
                withheld = True
                _log.warning("Watchdog ping withheld: gateway unhealthy")
            if skipped is not None:
                skipped.labels(reason="unhealthy").inc()
            continue
        if withheld:
            withheld = False
            _log.info("Watchdog pings resumed: gateway healthy")
        notifier.notify(WATCHDOG=1)
