"""The whole gateway as a process: simulator -> twin -> broker, signals, reload, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from hil.harness.samplers import parse_prometheus

from edgetwin.daemon.app import RUN_FILE
from tests.daemon.conftest import GatewayProcess, gateway_yaml
from tests.helpers.mqtt import Received, Recorder
from tests.helpers.procs import Broker, PlcSim

pytestmark = [pytest.mark.daemon, pytest.mark.broker, pytest.mark.sim]
BASE = "edgetwin/v1/gw-test"


def point(name: str, pred: Callable[[dict], bool] = lambda _p: True) -> Callable[[Received], bool]:
    """Matches a reported delta that carries point ``name`` satisfying ``pred``."""
    def match(m: Received) -> bool:
        if not m.topic.endswith("/reported"):
            return False
        p = m.json()["state"].get(name)
        return p is not None and pred(p)
    return match


def test_simulated_pump_reaches_the_broker_and_sigterm_goes_offline(
    gateway: GatewayProcess, recorder_factory: Callable[..., Recorder]
) -> None:
    """Live twin deltas flow; SIGTERM publishes offline, exits 0 within 5 s, tells systemd."""
    rec = recorder_factory(f"{BASE}/#")
    gateway.start(watchdog_usec=400_000)
    first = rec.wait_for(point("counter"))
    rec.wait_for(point("counter", lambda p: p["v"] > first.json()["state"]["counter"]["v"]))
    temp = rec.wait_for(point("motor_temp")).json()["state"]["motor_temp"]
    assert temp["q"] == "GOOD" and 30 < temp["v"] < 90
    level = rec.wait_for(lambda m: m.topic == f"{BASE}/tank1/reported").json()
    assert 0 <= level["state"]["level"]["v"] <= 100
    assert rec.wait_for(lambda m: m.topic == f"{BASE}/status").json()["online"] is True
    assert gateway.notify is not None
    gateway.notify.wait_for("WATCHDOG=1", timeout_s=5)

    code, took_s = gateway.terminate()
    assert code == 0
    assert took_s < 5.0, gateway.log_text()[-3000:]
    rec.wait_for(lambda m: m.topic == f"{BASE}/status" and not m.json()["online"])
    late = recorder_factory(f"{BASE}/status")
    retained = late.wait_for(lambda m: m.retain)
    assert retained.json()["online"] is False
    gateway.notify.wait_for("STOPPING=1", timeout_s=1)
    assert any(msg.startswith("READY=1") and "STATUS=" in msg for msg in gateway.notify.received)


def test_restart_keeps_versions_and_sequence_growing(
    gateway: GatewayProcess, recorder_factory: Callable[..., Recorder]
) -> None:
    """After a restart every twin version and message seq is larger than before it."""
    rec = recorder_factory(f"{BASE}/+/reported")
    gateway.start()
    rec.wait_for(point("counter", lambda p: p["v"] > 0))
    code, _ = gateway.terminate()
    assert code == 0
    before = [m.json() for m in rec.on("/reported")]
    max_v, max_seq = max(d["v"] for d in before), max(d["seq"] for d in before)
    count_before = len(before)

    gateway.start()
    rec.wait_for(lambda m: m.topic.endswith("/reported") and m.json()["seq"] > max_seq)
    after = [m.json() for m in rec.on("/reported")[count_before:]]
    assert after and all(d["v"] > max_v and d["seq"] > max_seq for d in after)
    code, took_s = gateway.terminate()
    assert code == 0
    assert took_s < 5.0, gateway.log_text()[-3000:]


def test_reload_keeps_old_config_when_broken_and_applies_a_valid_one(
    tmp_path: Path, gateway: GatewayProcess, broker: Broker, plcsim: PlcSim,
    recorder_factory: Callable[..., Recorder],
) -> None:
    """SIGHUP with a broken file logs and keeps running; with a valid one, new points appear."""
    rec = recorder_factory(f"{BASE}/+/reported")
    gateway.start()
    assert gateway.proc is not None
    rec.wait_for(point("counter"))

    gateway.config_path.write_text("gateway: [broken\n")
    gateway.proc.send_signal(signal.SIGHUP)
    gateway.notify.wait_for("STATUS=Reload refused: 1 problem(s)")  # type: ignore[union-attr]
    seen = len(rec.messages)
    rec.wait_for(lambda m: rec.messages.index(m) >= seen and m.topic.endswith("/reported"))
    assert gateway.proc.poll() is None
    assert '"error_code": "reload_invalid"' in gateway.log_text()

    extra = "      - {id: pump1/speed_setpoint, address: 200, type: uint16}\n"
    gateway.config_path.write_text(
        gateway_yaml(tmp_path / "state", broker.port, plcsim.port, extra)
    )
    gateway.proc.send_signal(signal.SIGHUP)
    setpoint = rec.wait_for(point("speed_setpoint")).json()["state"]["speed_setpoint"]
    assert setpoint == {**setpoint, "v": 1450, "q": "GOOD"}
    code, _ = gateway.terminate()
    assert code == 0


def test_modbus_server_that_dies_and_comes_back(
    gateway: GatewayProcess, plcsim: PlcSim, recorder_factory: Callable[..., Recorder]
) -> None:
    """The device dying turns its points BAD; when it returns they are GOOD again."""
    rec = recorder_factory(f"{BASE}/+/reported")
    gateway.start()
    rec.wait_for(point("counter", lambda p: p["q"] == "GOOD"))
    plcsim.stop(kill=True)
    rec.wait_for(point("counter", lambda p: p["q"] == "BAD" and p["v"] is None))
    plcsim.start()  # same port: the fixture's sim remembers it
    rec.wait_for(point("counter", lambda p: p["q"] == "GOOD"), timeout_s=30)
    assert gateway.proc is not None and gateway.proc.poll() is None
    code, _ = gateway.terminate()
    assert code == 0


def test_status_command_shows_the_running_daemon(gateway: GatewayProcess) -> None:
    """`edgetwin status --json` reports sources, points, broker and queue of the live daemon."""
    gateway.start()
    cmd = [sys.executable, "-m", "edgetwin", "status", "-c", str(gateway.config_path)]
    doc = {}
    for _ in range(50):  # the source comes up within a few polls
        doc = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True,
                                        check=True, timeout=30).stdout)
        if doc["sources"][0]["state"] == "up" and doc["broker"]["connected"]:
            break
    assert doc["gateway"] == "gw-test"
    assert doc["sources"][0]["name"] == "skid1"
    assert doc["sources"][0]["state"] == "up"
    assert doc["sources"][0]["points"] == 4
    assert doc["broker"]["connected"] is True
    assert doc["outbox"]["depth"] >= 0
    table = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout
    assert "skid1" in table and "modbus_tcp" in table and "connected" in table
    gateway.terminate()
    gone = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    assert gone.returncode == 69


def test_metrics_carry_the_heap_figures(gateway: GatewayProcess) -> None:
    """Glibc's own heap figures, to tell a climbing RSS's use from its fragmentation."""
    gateway.start()
    state_dir = gateway.config_path.parent / "state"
    host, _, port = json.loads((state_dir / RUN_FILE).read_text())["http"].rpartition(":")
    names = ("edgetwin_heap_in_use_bytes", "edgetwin_heap_free_bytes",
             "edgetwin_heap_mapped_bytes", "edgetwin_sqlite_memory_bytes")
    figures: dict[str, float] = {}
    deadline = time.monotonic() + 10.0
    while figures.get(names[0], 0.0) == 0.0 and time.monotonic() < deadline:  # housekeeping
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as answer:
            figures = parse_prometheus(answer.read().decode(), names)
    assert set(figures) == set(names)
    assert figures["edgetwin_heap_in_use_bytes"] > 10 * 2**20  # numpy, onnxruntime, the twin
    assert figures["edgetwin_heap_free_bytes"] > 0
    assert figures["edgetwin_heap_mapped_bytes"] > 0
    assert figures["edgetwin_sqlite_memory_bytes"] > 64 * 1024  # the outbox's open database


def test_sigkill_leaves_the_offline_will_on_the_broker(
    gateway: GatewayProcess, recorder_factory: Callable[..., Recorder]
) -> None:
    """A gateway that dies without a word is reported offline by the broker's last will."""
    rec = recorder_factory(f"{BASE}/status")
    gateway.start()
    rec.wait_for(lambda m: m.json()["online"] is True)
    assert gateway.proc is not None
    os.kill(gateway.proc.pid, signal.SIGKILL)
    will = rec.wait_for(lambda m: m.json()["online"] is False)
    assert will.topic == f"{BASE}/status"
