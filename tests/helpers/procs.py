"""Real peers for tests: a Mosquitto broker and firmware-sim as subprocesses on loopback."""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.helpers.tls import PkiPaths

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """An ephemeral loopback port that is free now (for peers that cannot report theirs)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    """Return once something accepts TCP connections on ``port``; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {LOOPBACK}:{port}") from None
            time.sleep(0.02)  # connect retry pacing while the peer starts


def read_json_line(stream: IO[str], timeout_s: float) -> dict[str, Any]:
    """Read one JSON line from a child's stdout within ``timeout_s``."""
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        raise TimeoutError("no line from the child process")
    line = stream.readline()
    if not line:
        raise RuntimeError("the child process closed its output")
    doc: dict[str, Any] = json.loads(line)
    return doc


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return int(proc.returncode)


class _Child:
    """A peer process that tests stop (politely or with SIGKILL) and start again."""

    proc: subprocess.Popen[Any] | None = None

    def stop(self, *, kill: bool = False) -> None:
        """Stop it; ``kill`` (SIGKILL) gives it no chance to close its connections."""
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        stop_process(self.proc)
        self.proc = None


class Broker(_Child):
    """A private Mosquitto on a loopback port that tests can stop and start again.

    Plain MQTT by default. With ``tls`` the one listener speaks TLS only, with the server
    certificate of that PKI; ``require_certificate`` makes it refuse clients without a
    certificate signed by ``tls.ca`` (mutual TLS).
    """

    def __init__(
        self, workdir: Path, port: int | None = None, users: dict[str, str] | None = None,
        *, persistence: bool = False, tls: PkiPaths | None = None,
        require_certificate: bool = False,
    ) -> None:
        if require_certificate and tls is None:
            raise ValueError("require_certificate needs a tls PKI")
        self.port = port or free_port()
        self.workdir = workdir
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        auth = "allow_anonymous true\n"
        if users:
            passwd = workdir / "mosquitto.passwd"
            for user, password in users.items():
                subprocess.run(  # mosquitto_passwd ships with Debian's mosquitto
                    ["mosquitto_passwd", "-b", *([] if passwd.exists() else ["-c"]),
                     str(passwd), user, password],
                    check=True, capture_output=True, timeout=30,
                )
            auth = f"allow_anonymous false\npassword_file {passwd}\n"
        # With persistence, a graceful stop keeps sessions and their queued messages.
        keep = (f"persistence true\npersistence_location {workdir}/\n" if persistence
                else "persistence false\n")
        listener = ""
        if tls is not None:
            # Per-listener TLS (mosquitto.conf(5), "Certificate based SSL/TLS Support").
            # tls_version is the minimum: TLS 1.2 and 1.3 are both offered, as by default.
            listener = (f"cafile {tls.ca}\ncertfile {tls.server_cert}\nkeyfile {tls.server_key}\n"
                        f"require_certificate {str(require_certificate).lower()}\n"
                        "tls_version tlsv1.2\n")
        self.conf.write_text(
            f"listener {self.port} {LOOPBACK}\n"
            f"{listener}"
            # Started as root, mosquitto drops to user "mosquitto", which cannot read the
            # test's private temp dir; stay the user we are.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"{auth}"
            f"{keep}"
            # The default of 1000 silently drops QoS 1 messages for slow test subscribers.
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"log_dest file {workdir / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )

    @staticmethod
    def binary() -> str:
        """The mosquitto executable (Debian puts it in /usr/sbin)."""
        found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
        if found is None:
            raise RuntimeError("mosquitto is not installed; `make test` installs it")
        return found

    def log(self) -> str:
        """The broker's log so far (errors, warnings and notices such as each connect)."""
        return (self.workdir / "mosquitto.log").read_text()

    def freeze(self) -> None:
        """SIGSTOP: the broker stays connected but answers nothing (a silent link death)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze``."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self.proc = subprocess.Popen([self.binary(), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)


class PlcSim(_Child):
    """firmware-sim's pump skid as a subprocess: its Modbus face, or ``face`` with ``options``."""

    def __init__(self, port: int = 0, face: str = "modbus", *options: str) -> None:
        self.port = port
        self.face = face
        self.options = options
        self.proc: subprocess.Popen[str] | None = None
        self.listening: dict[str, Any] = {}  # its listening line

    def start(self) -> None:
        """Start it (on ``port``, or an ephemeral one it reports) and wait until it listens."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plcsim", self.face, "--host", LOOPBACK, "--port",
             str(self.port), *self.options],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self.proc.stdout is not None
        self.listening = read_json_line(self.proc.stdout, 10.0)
        endpoint = self.listening.get("endpoint")  # OPC UA names its port in the URL
        port = urllib.parse.urlsplit(endpoint).port if endpoint else None
        self.port = int(self.listening.get("port", port or self.port))


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a daemon child: this one, minus systemd's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "INVOCATION_ID",
                        "JOURNAL_STREAM")}
    env.update(extra)
    return env


def plcsim_cli(control: str, *args: str) -> str:
    """Run a `plcsim` control command (fault, writes, state) against a running sim."""
    return subprocess.run([sys.executable, "-m", "plcsim", *args, "--control", control],
                          capture_output=True, text=True, timeout=30, check=True).stdout
