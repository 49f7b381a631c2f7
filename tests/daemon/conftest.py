"""The daemon as systemd runs it: a subprocess with a config file, a notify socket, signals."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.procs import Broker, PlcSim, child_env, stop_process


def gateway_yaml(state_dir: Path, broker_port: int, sim_port: int, extra_points: str = "") -> str:
    """A gateway config for the pump skid of firmware-sim and the test broker."""
    return f"""\
gateway: {{id: gw-test, group: test, state_dir: {state_dir}, log_format: json}}
sources:
  - name: skid1
    type: modbus_tcp
    host: 127.0.0.1
    port: {sim_port}
    poll_interval: 0.1
    timeout: 0.3
    points:
      - {{id: pump1/counter, address: 0, type: uint32}}
      - {{id: pump1/motor_temp, address: 100, type: float32, deadband: 0.01}}
      - {{id: tank1/level, address: 0, kind: input, type: uint16, scale: 0.1}}
      - {{id: pump1/run, address: 0, kind: coil, type: bool}}
{extra_points}sync:
  mqtt: {{host: 127.0.0.1, port: {broker_port}, keepalive: 5}}
  json: {{snapshot_interval: 0.2}}
health:
  metrics: {{listen: "127.0.0.1:0"}}
"""


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[str] = []

    def wait_for(self, line: str, timeout_s: float = 15.0) -> None:
        """Block until a datagram containing ``line`` (e.g. "READY=1") arrives."""
        deadline = time.monotonic() + timeout_s
        while not any(line in msg.split("\n") for msg in self.received):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {line} within {timeout_s}s; got {self.received}")
            self.sock.settimeout(left)
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self.sock.close()


class GatewayProcess:
    """`edgetwin run -c FILE` in a child process."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify: NotifySocket | None = None

    def start(self, *, watchdog_usec: int | None = None) -> None:
        """Start and wait for READY=1 on the notify socket."""
        sock_path = self.config_path.parent / f"notify-{time.monotonic_ns()}.sock"
        self.notify = NotifySocket(sock_path)
        env = child_env(NOTIFY_SOCKET=str(sock_path))
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgetwin", "run", "-c", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        log.close()
        self.notify.wait_for("READY=1")

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; returns (exit status, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        code = stop_process(self.proc, timeout_s=10.0)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.notify is not None:
            self.notify.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def gateway(tmp_path: Path, broker: Broker, plcsim: PlcSim) -> Iterator[GatewayProcess]:
    """A configured (not yet started) gateway on the test broker and simulator."""
    config = tmp_path / "gateway.yaml"
    config.write_text(gateway_yaml(tmp_path / "state", broker.port, plcsim.port))
    proc = GatewayProcess(config, tmp_path / "edgetwin.log")
    yield proc
    proc.close()
