"""The state directory at start: one gateway per directory, clear errors, damage survived."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon.conftest import GatewayProcess, gateway_yaml
from tests.helpers.mounts import mount_tmpfs, unmount
from tests.helpers.mqtt import Recorder
from tests.helpers.procs import Broker, PlcSim, child_env

pytestmark = pytest.mark.daemon

EX_CANTCREAT = 73


def run_once(config: Path) -> subprocess.CompletedProcess[str]:
    """`edgetwin run` that is expected to refuse to start."""
    return subprocess.run([sys.executable, "-m", "edgetwin", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=30, env=child_env())


def test_a_second_gateway_on_the_same_state_dir_is_refused(gateway: GatewayProcess) -> None:
    """Two gateways on one outbox would replay each other's entries: the second one stops."""
    gateway.start()
    second = run_once(gateway.config_path)
    assert second.returncode == EX_CANTCREAT
    assert "in use by pid" in second.stdout + second.stderr
    assert gateway.proc is not None and gateway.proc.poll() is None  # the first runs on


def test_a_read_only_state_dir_is_a_clear_error(tmp_path: Path, broker: Broker,
                                                plcsim: PlcSim) -> None:
    """A read-only filesystem under state_dir: exit 73 and say why, no traceback."""
    state = tmp_path / "ro-state"
    mount_tmpfs(state, 512, readonly=True)
    try:
        config = tmp_path / "gateway.yaml"
        config.write_text(gateway_yaml(state, broker.port, plcsim.port))
        result = run_once(config)
    finally:
        unmount(state)
    assert result.returncode == EX_CANTCREAT
    output = result.stdout + result.stderr
    assert "Read-only file system" in output and "Traceback" not in output


def test_a_damaged_outbox_raises_an_alarm_and_the_gateway_runs_on(
    gateway: GatewayProcess, recorder_factory: Callable[..., Recorder]
) -> None:
    """Garbage in outbox.db: moved aside, alarm on the alarms topic, data flows again."""
    state = gateway.config_path.parent / "state"
    state.mkdir()
    (state / "outbox.db").write_bytes(b"\x00garbage" * 4096)
    alarms = recorder_factory("edgetwin/v1/gw-test/alarms", "edgetwin/v1/gw-test/+/reported")
    gateway.start()
    alarm = alarms.wait_for(lambda m: m.topic.endswith("/alarms"))
    assert alarm.json()["alarm"] == "outbox_database_damaged" and alarm.json()["active"]
    alarms.wait_for(lambda m: m.topic.endswith("/reported"))
    assert list(state.glob("outbox.db.damaged-*"))
