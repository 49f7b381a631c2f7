"""SystemdNotifier and run_watchdog against real AF_UNIX datagram sockets."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from edgetwin.telemetry import SystemdNotifier, Telemetry, run_watchdog


def test_ready_and_status_in_one_datagram(notify_peer) -> None:
    """notify(READY=1, STATUS=...) sends exactly one datagram with both lines."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_peer.address})
    assert notifier.enabled
    notifier.notify(READY=1, STATUS="polling 3 sources")
    notifier.notify(STOPPING=1)
    notifier.close()

    assert notify_peer.recv_sync() == "READY=1\nSTATUS=polling 3 sources"
    assert notify_peer.recv_sync() == "STOPPING=1"
    assert notify_peer.recv_now() is None


def test_abstract_namespace_address(abstract_notify_peer) -> None:
    """An "@name" address reaches a socket bound in the abstract namespace."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": abstract_notify_peer.address})
    notifier.notify(READY=1)
    notifier.notify(STOPPING=1)
    notifier.close()
    assert abstract_notify_peer.recv_sync() == "READY=1"
    assert abstract_notify_peer.recv_sync() == "STOPPING=1"


def test_values_are_single_lines(notify_peer) -> None:
    """Newlines in values become spaces and booleans become 1/0."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_peer.address})
    notifier.notify(STATUS="line one\nline two\r\nthree", READY=True)
    notifier.close()
    assert notify_peer.recv_sync() == "STATUS=line one line two  three\nREADY=1"


def test_unset_socket_is_a_no_op() -> None:
    """Without NOTIFY_SOCKET (not under systemd) nothing is sent and nothing fails."""
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    notifier.notify(READY=1)
    notifier.close()
    assert notifier.send_errors == 0


@pytest.mark.parametrize("address", ["vsock:2:1234", "relative/socket", "@"])
def test_unsupported_address_disables_with_one_warning(logs, address: str) -> None:
    """An address we cannot use disables the notifier and is logged once."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})
    notifier.notify(READY=1)
    notifier.notify(STATUS="x")
    assert not notifier.enabled
    (line,) = logs.lines()
    assert line["level"] == "warning"
    assert line["notify_socket"] == address


def test_send_failures_are_counted_logged_once_and_never_raised(logs, tmp_path, bind_peer) -> None:
    """A missing socket is counted on every send, logged once, and recovery is logged."""
    path = tmp_path / "later.sock"
    telemetry = Telemetry()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)}, telemetry=telemetry)
    notifier.notify(READY=1)
    notifier.notify(WATCHDOG=1)
    assert notifier.send_errors == 2
    assert telemetry.errors_count("systemd", "notify_failed") == 2
    (failed,) = logs.events("Notification to systemd failed")
    assert failed["component"] == "systemd"
    assert failed["keys"] == "READY"

    peer = bind_peer(str(path))  # systemd is back
    notifier.notify(WATCHDOG=1)
    notifier.close()
    assert peer.recv_sync() == "WATCHDOG=1"
    assert len(logs.events("Notifications to systemd delivered again")) == 1


def test_send_failure_without_telemetry_is_logged(logs, tmp_path) -> None:
    """Without a Telemetry the notifier still logs the first failure and counts them."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    notifier.notify(READY=1)
    notifier.notify(READY=1)
    notifier.close()
    assert notifier.send_errors == 2
    (line,) = logs.lines()
    assert line["event"] == "Notification to systemd failed"
    assert line["level"] == "error"


def test_close_stops_sending(notify_peer) -> None:
    """After close() the notifier is disabled and sends nothing; close is idempotent."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_peer.address})
    notifier.close()
    notifier.close()
    notifier.notify(STOPPING=1)
    assert not notifier.enabled
    assert notify_peer.recv_now() is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    """Half of WATCHDOG_USEC in seconds, only when WATCHDOG_PID is unset or ours."""
    assert SystemdNotifier(environ).watchdog_interval_s() == expected


async def test_watchdog_returns_at_once_without_watchdog(notify_peer) -> None:
    """No WATCHDOG_USEC, another process's watchdog, or no socket: run_watchdog returns."""
    other_pid = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}
    for environ in (
        {"NOTIFY_SOCKET": notify_peer.address},
        {"NOTIFY_SOCKET": notify_peer.address, **other_pid},
        {"WATCHDOG_USEC": "200000"},
    ):
        await asyncio.wait_for(run_watchdog(SystemdNotifier(environ), lambda: True), 1.0)
    assert notify_peer.recv_now() is None


async def test_watchdog_pings_at_half_the_timeout(notify_peer) -> None:
    """With WATCHDOG_USEC=200000, WATCHDOG=1 arrives about every 0.1 s."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_peer.address, "WATCHDOG_USEC": "200000"})
    task = asyncio.create_task(run_watchdog(notifier, lambda: True))
    try:
        start = time.monotonic()
        for _ in range(5):
            assert await notify_peer.recv(timeout_s=1.0) == "WATCHDOG=1"
        elapsed = time.monotonic() - start
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notifier.close()
    # Five sleeps of 0.1 s; generous upper bound for a loaded CI machine.
    assert 0.45 <= elapsed < 2.0


async def test_watchdog_withholds_pings_while_unhealthy(notify_peer, logs) -> None:
    """No WATCHDOG=1 while is_healthy() is false; pings resume when it turns true."""
    telemetry = Telemetry()
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": notify_peer.address, "WATCHDOG_USEC": "200000"}, telemetry=telemetry
    )
    healthy = False
    task = asyncio.create_task(run_watchdog(notifier, lambda: healthy))
    try:
        with pytest.raises(TimeoutError):
            await notify_peer.recv(timeout_s=0.35)
        healthy = True
        assert await notify_peer.recv(timeout_s=1.0) == "WATCHDOG=1"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notifier.close()

    assert len(logs.events("Watchdog ping withheld: gateway unhealthy")) == 1
    assert len(logs.events("Watchdog pings resumed: gateway healthy")) == 1
    skipped = telemetry.registry.get_sample_value(
        "edgetwin_watchdog_skipped_total", {"reason": "unhealthy"}
    )
    assert skipped is not None
    assert skipped >= 2


async def test_watchdog_skips_a_ping_when_the_loop_lags(notify_peer, logs) -> None:
    """A blocked event loop skips the next ping and logs the measured lag."""
    telemetry = Telemetry()
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": notify_peer.address, "WATCHDOG_USEC": "200000"}, telemetry=telemetry
    )
    task = asyncio.create_task(run_watchdog(notifier, lambda: True))
    try:
        assert await notify_peer.recv(timeout_s=1.0) == "WATCHDOG=1"
        time.sleep(0.25)  # noqa: ASYNC251  # deliberately block the loop: the case under test
        assert await notify_peer.recv(timeout_s=1.0) == "WATCHDOG=1"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notifier.close()

    (lagging,) = logs.events("Watchdog ping skipped: event loop lagging")
    assert lagging["level"] == "warning"
    assert lagging["lag_s"] >= 0.05
    assert lagging["max_lag_s"] == 0.05
    skipped = telemetry.registry.get_sample_value(
        "edgetwin_watchdog_skipped_total", {"reason": "loop_lag"}
    )
    assert skipped == 1
