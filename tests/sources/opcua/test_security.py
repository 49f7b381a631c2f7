"""Secured sessions against plcsim's OPC UA face as a process, over loopback (no mocks).

One ``plcsim opcua`` per module offers None, Basic256Sha256 and Aes128_Sha256_RsaOaep
(each with Sign and SignAndEncrypt), trusts only the gateway certificate that
``edgetwin opcua-cert`` made, and requires a username login. Certificates are made fresh
in a temporary directory. RSA handshakes take tens of milliseconds; the process is shared.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgetwin.core.types import Quality
from edgetwin.sources.opcua import OpcuaConfig, OpcuaSource
from edgetwin.sources.opcua.certs import CERT_NAME, KEY_NAME
from plcsim.control import call
from tests.helpers.procs import PlcSim
from tests.helpers.recording import RecordingHealth
from tests.sources.opcua.conftest import BatchRecorder, make_config, running

pytestmark = pytest.mark.sim
USER, PASSWORD = "gateway", "s3cret"
COUNTER, TEMP, VALVE = "plc1/counter", "pump1/motor_temp", "valve1/position"
GATEWAY, ROGUE = "gateway", "rogue"  # the trusted gateway certificate, and one nobody trusts


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two gateway certificates from ``edgetwin opcua-cert``, a trust list, users, passwords."""
    root = tmp_path_factory.mktemp("opcua-pki")
    makers = [subprocess.Popen(
        [sys.executable, "-m", "edgetwin", "opcua-cert", "--out", str(root / name),
         "--uri", f"urn:edgetwin:{name}", "--host", socket.gethostname()],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for name in (GATEWAY, ROGUE)]
    for maker in makers:
        _, err = maker.communicate(timeout=60)
        assert maker.returncode == 0, err
    (root / "trusted").mkdir()
    shutil.copy(root / GATEWAY / CERT_NAME, root / "trusted" / "gateway.der")
    (root / "users.txt").write_text(f"# plcsim's users\n{USER}:{PASSWORD}\n")
    (root / "password").write_text(f"{PASSWORD}\n")
    (root / "wrong-password").write_text("guess\n")
    return root


@pytest.fixture(scope="module")
def served(pki: Path) -> Iterator[dict[str, Any]]:
    """The secured plcsim face; its listening line."""
    sim = PlcSim(0, "opcua", "--security", "None", "--security", "Basic256Sha256",
                 "--security", "Aes128_Sha256_RsaOaep", "--trust", str(pki / "trusted"),
                 "--users-file", str(pki / "users.txt"))
    sim.start()
    try:
        yield sim.listening
    finally:
        sim.stop()


def config(served: dict[str, Any], pki: Path, *, policy: str | None = "Basic256Sha256",
           mode: str = "SignAndEncrypt", gateway: str = GATEWAY, pin: bool = True,
           password: str | None = "password", **security: Any) -> OpcuaConfig:
    """A source for counter, temperature and the writable valve of ``served``.

    ``policy=None``: security None. ``password``: the password file's name in ``pki``,
    or None for an anonymous login.
    """
    points: list[dict[str, Any]] = [
        {"id": COUNTER, "node": "PumpSkid.Counter"},
        {"id": TEMP, "node": "PumpSkid.Motor.Temperature"},
        {"id": VALVE, "node": "PumpSkid.InletValve.Position", "writable": True},
    ]
    source: dict[str, Any] = {}
    if policy is not None:
        source["security"] = {
            "policy": policy, "mode": mode, "certificate": str(pki / gateway / CERT_NAME),
            "private_key": str(pki / gateway / KEY_NAME),
            **({"server_certificate": served["server_certificate"]} if pin else {}),
            **security}
    if password is not None:
        source.update(username=USER, password_file=str(pki / password))
    return make_config(served, points, **source)


def retrying(config: OpcuaConfig) -> OpcuaSource:
    """A source that retries quickly: 0.1 s doubling to 0.4 s."""
    return OpcuaSource(config, reconnect_initial_s=0.1, reconnect_max_s=0.4)


def good(batch: list[Any], *points: str) -> bool:
    return {s.point for s in batch if s.quality is Quality.GOOD} >= set(points)


@pytest.mark.parametrize(("policy", "mode"), [
    ("Basic256Sha256", "Sign"), ("Basic256Sha256", "SignAndEncrypt"),
    ("Aes128_Sha256_RsaOaep", "Sign"), ("Aes128_Sha256_RsaOaep", "SignAndEncrypt"),
])
async def test_secured_session_delivers_good_values(
    served: dict[str, Any], pki: Path, batches: BatchRecorder, health: RecordingHealth,
    policy: str, mode: str,
) -> None:
    """Each policy and mode, pinned server certificate, password login: values flow GOOD."""
    source = OpcuaSource(config(served, pki, policy=policy, mode=mode))
    async with running(source, batches, health):
        _, batch = await batches.wait_for(lambda b: good(b, COUNTER, TEMP))
        await health.wait_for("up")
    values = {s.point: s.value for s in batch}
    assert isinstance(values[COUNTER], int) and values[COUNTER] >= 0
    assert isinstance(values[TEMP], float) and 0.0 <= values[TEMP] <= 150.0
    assert health.of("down") == [] and health.of("point_error") == []


async def test_write_over_sign_and_encrypt_is_coerced_and_read_back(
    served: dict[str, Any], pki: Path, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """An int to the Double valve position, encrypted: written as 40.0, read back, logged."""
    source = OpcuaSource(config(served, pki, policy="Aes128_Sha256_RsaOaep"))
    async with running(source, batches, health):
        await health.wait_for("up")
        outcome = await source.write(VALVE, 40)
    assert (outcome.ok, outcome.reason, outcome.read_back) == (True, None, 40.0)
    assert isinstance(outcome.read_back, float)
    writes = call(served["control"], "GET", "/writes?face=opcua&name=valve_position_pct")
    assert [(w["value"], w["accepted"]) for w in writes][-1:] == [(40.0, True)]


async def test_server_certificate_from_endpoint_when_not_pinned(
    served: dict[str, Any], pki: Path, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """Without server_certificate the one the server announces is used."""
    async with running(OpcuaSource(config(served, pki, pin=False)), batches, health):
        await batches.wait_for(lambda b: good(b, COUNTER))
        await health.wait_for("up")


class TimedHealth(RecordingHealth):
    """Also keeps when each ``down`` was reported."""

    def __init__(self) -> None:
        super().__init__()
        self.down_at: list[float] = []

    def down(self, error_code: str, error: BaseException | str) -> None:
        self.down_at.append(time.monotonic())
        super().down(error_code, error)


async def test_untrusted_gateway_certificate_is_refused_with_backoff(
    served: dict[str, Any], pki: Path, batches: BatchRecorder
) -> None:
    """A certificate the server does not trust: certificate_rejected, retried ever slower."""
    health = TimedHealth()
    source = retrying(config(served, pki, gateway=ROGUE))
    async with running(source, batches, health) as task:
        await health.wait_for("down", count=4)
        assert not task.done()  # reported and retried, never raised
    downs = health.of("down")
    assert {d.error_code for d in downs} == {"certificate_rejected"}
    assert downs[0].error == (
        f"opcua source 'line-opcua' ({served['endpoint']}): the server refused the session: "
        f"BadCertificateUntrusted (0x801A0000); it does not accept the gateway's certificate "
        f"'{pki / ROGUE / CERT_NAME}': trust it on the server")
    gaps = [b - a for a, b in zip(health.down_at, health.down_at[1:], strict=False)]
    # jittered delays of at least 0.05, 0.1, 0.2 s: each retry waits longer
    assert gaps[1] >= 0.1 and gaps[2] >= 0.2, gaps
    assert health.of("up") == []
    assert len(batches.batches) == 1  # every point BAD once, not once per attempt
    assert all(s.quality is Quality.BAD for s in batches.batches[0])


async def test_wrong_password_is_refused_with_the_reason(
    served: dict[str, Any], pki: Path, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """A wrong password in password_file: login_rejected naming the user, retried."""
    source = retrying(config(served, pki, password="wrong-password"))
    async with running(source, batches, health) as task:
        await health.wait_for("down", count=2)
        assert not task.done()
    downs = health.of("down")
    assert {d.error_code for d in downs} == {"login_rejected"}
    assert downs[0].error == (
        f"opcua source 'line-opcua' ({served['endpoint']}): the server refused the session: "
        "BadUserAccessDenied (0x801F0000); check username 'gateway' and password_file")
    assert health.of("up") == []


async def test_anonymous_login_is_refused_when_the_server_wants_users(
    served: dict[str, Any], pki: Path, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """No username where the server requires one: login_rejected, saying what to set."""
    source = retrying(config(served, pki, policy=None, password=None))
    async with running(source, batches, health):
        await health.wait_for("down")
    (down, *_) = health.of("down")
    assert down.error_code == "login_rejected"
    assert down.error.endswith(
        "BadIdentityTokenRejected (0x80210000); it refuses anonymous login: set username "
        "and password_file")


async def test_password_file_is_read_at_every_connect(
    served: dict[str, Any], pki: Path, batches: BatchRecorder, health: RecordingHealth,
    tmp_path: Path,
) -> None:
    """Security None, the password file missing at first: reported, then the login works."""
    secret = tmp_path / "opcua.password"
    source = retrying(config(served, pki, policy=None).model_copy(
        update={"password_file": secret}))
    async with running(source, batches, health):
        await health.wait_for("down")
        secret.write_text(f"{PASSWORD}\n")
        await health.wait_for("up")
        index, _ = await batches.wait_for(lambda b: good(b, COUNTER))
    codes = {d.error_code for d in health.of("down")}
    assert codes == {"password_file"}
    assert health.of("down")[0].error.startswith(
        f"opcua source 'line-opcua' ({served['endpoint']}): cannot read password_file "
        f"'{secret}'")
    assert all(s.quality is Quality.BAD for s in batches.batches[0])
    assert index > 0


async def test_mode_the_server_does_not_offer_is_reported_and_retried(
    served: dict[str, Any], pki: Path, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """Aes256_Sha256_RsaPss, which the server does not offer: connect_failed naming it."""
    source = retrying(config(served, pki, policy="Aes256_Sha256_RsaPss", pin=False))
    async with running(source, batches, health):
        await health.wait_for("down", count=2)
    down = health.of("down")[0]
    assert down.error_code == "connect_failed"
    assert down.error.startswith(
        f"opcua source 'line-opcua' ({served['endpoint']}): no Aes256_Sha256_RsaPss/"
        "SignAndEncrypt endpoint available: UaError: No matching endpoints")
    assert health.of("up") == []


async def test_missing_certificate_file_is_reported_and_retried(
    served: dict[str, Any], pki: Path, batches: BatchRecorder, health: RecordingHealth,
    tmp_path: Path,
) -> None:
    """A certificate file that is not there: health.down("certificate"), retried, no crash."""
    missing = tmp_path / "gone.der"
    source = retrying(config(served, pki, certificate=str(missing)))
    async with running(source, batches, health):
        await health.wait_for("down", count=2)
    down = health.of("down")[0]
    assert down.error_code == "certificate"
    assert down.error.startswith(
        f"opcua source 'line-opcua' ({served['endpoint']}): cannot use certificate "
        f"'{missing}' / private_key '{pki / GATEWAY / KEY_NAME}': FileNotFoundError")


async def test_wrong_pinned_server_certificate_never_connects(
    served: dict[str, Any], pki: Path, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """A pin that is not the server's certificate: no session, the link stays down."""
    source = retrying(config(
        served, pki, server_certificate=str(pki / GATEWAY / CERT_NAME)))
    async with running(source, batches, health):
        await health.wait_for("down", count=2)
    assert {d.error_code for d in health.of("down")} == {"connect_failed"}  # no answer
    assert health.of("up") == []
    assert all(s.quality is Quality.BAD for b in batches.batches for s in b)
