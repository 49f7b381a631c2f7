"""Secured sessions against a real asyncua server with Basic256Sha256, over loopback.

plcsim's face offers security None only, so this module starts its own small asyncua
server with certificates; still a real peer, no mocks.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.server.server import Server
from cryptography.x509.oid import ExtendedKeyUsageOID

from edgetwin.core.types import Quality
from edgetwin.sources.opcua import OpcuaConfig, OpcuaSource
from tests.helpers.recording import RecordingHealth
from tests.sources.opcua.conftest import BatchRecorder, running

pytestmark = pytest.mark.sim
CLIENT_URI = "urn:edgetwin:test-gateway"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def certs(tmp_path: Path) -> dict[str, Path]:
    """Self-signed server and client certificates (DER) with their keys (PEM)."""
    paths = {name: tmp_path / name for name in ("srv.der", "srv.pem", "cli.der", "cli.pem")}
    await setup_self_signed_certificate(paths["srv.pem"], paths["srv.der"], "urn:test:server",
                                        "localhost", [ExtendedKeyUsageOID.SERVER_AUTH], {})
    await setup_self_signed_certificate(paths["cli.pem"], paths["cli.der"], CLIENT_URI,
                                        "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {})
    return paths


@pytest.fixture
async def secured(certs: dict[str, Path]) -> AsyncIterator[dict[str, Any]]:
    """An asyncua server offering only Basic256Sha256 + SignAndEncrypt, with one variable."""
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/secured"
    server = Server()
    await server.init()
    server.set_endpoint(endpoint)
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await server.load_certificate(str(certs["srv.der"]))
    await server.load_private_key(str(certs["srv.pem"]))
    idx = await server.register_namespace("urn:test")
    await server.nodes.objects.add_variable(
        ua.NodeId(ua.String("Oven.Temp"), ua.Int16(idx)), ua.QualifiedName("Temp", idx), 21.5)
    async with server:
        yield {"endpoint": endpoint, "node": f"ns={idx};s=Oven.Temp"}


def config(secured: dict[str, Any], certs: dict[str, Path], **security: Any) -> OpcuaConfig:
    settings: dict[str, Any] = {
        "policy": "Basic256Sha256", "mode": "SignAndEncrypt",
        "certificate": str(certs["cli.der"]), "private_key": str(certs["cli.pem"])}
    settings.update(security)
    return OpcuaConfig.model_validate({
        "name": "line-opcua", "type": "opcua", "endpoint": secured["endpoint"], "timeout": 1.0,
        "security": settings,
        "subscription": {"publishing_interval": 0.1, "watchdog_interval": 0.3},
        "points": [{"id": "oven1/temp", "node": secured["node"]}],
    })


async def test_sign_and_encrypt_session_delivers_values(
    secured: dict[str, Any], certs: dict[str, Path], batches: BatchRecorder,
    health: RecordingHealth,
) -> None:
    """Basic256Sha256/SignAndEncrypt with a pinned server certificate: values flow GOOD."""
    source = OpcuaSource(config(secured, certs, server_certificate=str(certs["srv.der"])))
    async with running(source, batches, health):
        _, batch = await batches.wait_for(lambda b: any(s.point == "oven1/temp" for s in b))
        await health.wait_for("up")
    assert [(s.value, s.quality) for s in batch] == [(21.5, Quality.GOOD)]
    assert health.of("down") == []


async def test_server_certificate_from_endpoint_when_not_pinned(
    secured: dict[str, Any], certs: dict[str, Path], batches: BatchRecorder,
    health: RecordingHealth,
) -> None:
    """Without server_certificate the one the server announces is used."""
    async with running(OpcuaSource(config(secured, certs)), batches, health):
        await health.wait_for("up")


async def test_mode_the_server_does_not_offer_is_reported_and_retried(
    secured: dict[str, Any], certs: dict[str, Path], batches: BatchRecorder,
    health: RecordingHealth,
) -> None:
    """Sign only, against a SignAndEncrypt-only server: connect_failed, naming policy/mode."""
    source = OpcuaSource(config(secured, certs, mode="Sign"), reconnect_initial_s=0.05,
                         reconnect_max_s=0.1)
    async with running(source, batches, health):
        await health.wait_for("down", count=2)
    down = health.of("down")[0]
    assert down.error_code == "connect_failed"
    assert down.error.startswith(
        f"opcua source 'line-opcua' ({secured['endpoint']}): no Basic256Sha256/Sign endpoint "
        "available: UaError: No matching endpoints")
    assert health.of("up") == []


async def test_missing_certificate_file_is_reported_and_retried(
    secured: dict[str, Any], certs: dict[str, Path], batches: BatchRecorder,
    health: RecordingHealth, tmp_path: Path,
) -> None:
    """A certificate file that is not there: health.down("certificate"), retried, no crash."""
    missing = tmp_path / "gone.der"
    source = OpcuaSource(config(secured, certs, certificate=str(missing)),
                         reconnect_initial_s=0.05, reconnect_max_s=0.1)
    async with running(source, batches, health):
        await health.wait_for("down", count=2)
    down = health.of("down")[0]
    assert down.error_code == "certificate"
    assert down.error.startswith(
        f"opcua source 'line-opcua' ({secured['endpoint']}): cannot use certificate "
        f"'{missing}' / private_key '{certs['cli.pem']}': FileNotFoundError")


async def test_wrong_pinned_server_certificate_never_connects(
    secured: dict[str, Any], certs: dict[str, Path], batches: BatchRecorder,
    health: RecordingHealth,
) -> None:
    """A pin that is not the server's certificate: no session, the link stays down."""
    source = OpcuaSource(config(secured, certs, server_certificate=str(certs["cli.der"])),
                         reconnect_initial_s=0.05, reconnect_max_s=0.1)
    async with running(source, batches, health):
        await health.wait_for("down", count=2)
    assert {d.error_code for d in health.of("down")} == {"connect_failed"}  # no answer
    assert health.of("up") == []
    assert all(s.quality is Quality.BAD for b in batches.batches for s in b)
