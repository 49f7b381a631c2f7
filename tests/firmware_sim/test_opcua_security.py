"""plcsim's OPC UA face with security: endpoints, its certificate, trusted clients, logins.

One ``plcsim opcua`` process per module (its command-line flags are part of what is
tested) offers Basic256Sha256/SignAndEncrypt and Aes128_Sha256_RsaOaep/Sign, trusts one
client certificate file and requires the user ``op``; a plain asyncua client talks to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from plcsim.__main__ import _opcua_security, _parser
from plcsim.opcua_security import SERVER_URI, ServerSecurity, parse_security, parse_users
from tests.helpers.opcua_client import connected
from tests.helpers.procs import PlcSim

pytestmark = pytest.mark.sim
USER, PASSWORD = "op", "pw:with:colons"
BASIC = security_policies.SecurityPolicyBasic256Sha256
AES128 = security_policies.SecurityPolicyAes128Sha256RsaOaep


@dataclass(frozen=True)
class ClientCert:
    """A client application certificate (DER) and key (PEM) on disk."""

    uri: str
    cert: Path
    key: Path


def client_cert(directory: Path, name: str) -> ClientCert:
    """A self-signed CLIENT_AUTH certificate for ``urn:test:<name>``."""
    key = generate_private_key()
    uri = f"urn:test:{name}"
    cert = generate_self_signed_app_certificate(
        key, uri, {}, [x509.UniformResourceIdentifier(uri), x509.DNSName(socket.gethostname())],
        [ExtendedKeyUsageOID.CLIENT_AUTH])
    made = ClientCert(uri, directory / f"{name}.der", directory / f"{name}.pem")
    made.cert.write_bytes(cert.public_bytes(Encoding.DER))
    made.key.write_bytes(dump_private_key_as_pem(key))
    return made


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClientCert]:
    """Two client certificates: ``trusted`` (given to the server) and ``stranger``."""
    directory = tmp_path_factory.mktemp("opcua-clients")
    return {name: client_cert(directory, name) for name in ("trusted", "stranger")}


@pytest.fixture(scope="module")
def served(clients: dict[str, ClientCert]) -> Iterator[dict[str, Any]]:
    """The secured face as a process; its listening line."""
    sim = PlcSim(0, "opcua", "--security", "Basic256Sha256:SignAndEncrypt",
                 "--security", "Aes128_Sha256_RsaOaep:Sign",
                 "--trust", str(clients["trusted"].cert), "--user", f"{USER}:{PASSWORD}")
    sim.start()
    try:
        yield sim.listening
    finally:
        sim.stop()


@contextlib.asynccontextmanager
async def session(served: dict[str, Any], policy: type[security_policies.SecurityPolicy],
                  mode: ua.MessageSecurityMode, client: ClientCert,
                  login: tuple[str, str] | None = (USER, PASSWORD), *, pin: bool = True,
                  ) -> AsyncIterator[Client]:
    """A connected asyncua client; ``pin``: the server certificate from the listening line.

    Unpinned, asyncua looks the endpoint up first (and fails when there is none).
    """
    async def prepare(opened: Client) -> None:
        opened.application_uri = client.uri
        await opened.set_security(
            policy, certificate=str(client.cert), private_key=str(client.key),
            server_certificate=served["server_certificate"] if pin else None, mode=mode)
        if login is not None:
            opened.set_user(login[0])
            opened.set_password(login[1])

    async with connected(served["endpoint"], prepare=prepare) as opened:
        yield opened


async def test_listening_line_and_endpoints_describe_the_security(
    served: dict[str, Any], clients: dict[str, ClientCert]
) -> None:
    """The line names endpoints, trust list, login and a certificate the endpoints carry."""
    assert served["security"] == ["Basic256Sha256:SignAndEncrypt", "Aes128_Sha256_RsaOaep:Sign"]
    assert served["trusted"] == [str(clients["trusted"].cert)]
    assert served["login"] == "username"
    der = await asyncio.to_thread(Path(served["server_certificate"]).read_bytes)
    cert = x509.load_der_x509_certificate(der)
    alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt_names.get_values_for_type(x509.UniformResourceIdentifier) == [SERVER_URI]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage

    endpoints = await Client(served["endpoint"], timeout=2.0).connect_and_get_server_endpoints()
    assert {(e.SecurityPolicyUri, e.SecurityMode) for e in endpoints} == {
        (BASIC.URI, ua.MessageSecurityMode.SignAndEncrypt),
        (AES128.URI, ua.MessageSecurityMode.Sign)}
    assert all(e.ServerCertificate == der for e in endpoints)
    assert all(e.Server.ApplicationUri == SERVER_URI for e in endpoints)
    assert all([t.TokenType for t in e.UserIdentityTokens] == [ua.UserTokenType.UserName]
               for e in endpoints)


@pytest.mark.parametrize(("policy", "mode"), [
    (BASIC, ua.MessageSecurityMode.SignAndEncrypt), (AES128, ua.MessageSecurityMode.Sign)])
async def test_trusted_client_with_password_reads_and_writes(
    served: dict[str, Any], clients: dict[str, ClientCert],
    policy: type[security_policies.SecurityPolicy], mode: ua.MessageSecurityMode,
) -> None:
    """Trusted certificate, right password: reads and PLC-checked writes as without security."""
    idx = served["namespace_index"]
    async with session(served, policy, mode, clients["trusted"]) as client:
        counter = await client.get_node(f"ns={idx};s=PumpSkid.Counter").read_value()
        assert isinstance(counter, int) and counter >= 0
        valve = client.get_node(f"ns={idx};s=PumpSkid.InletValve.Position")
        await valve.write_value(35.0)
        assert await valve.read_value() == 35.0
        with pytest.raises(UaStatusCodeError) as refused:
            await valve.write_value(250.0)
        assert refused.value.code == StatusCodes.BadOutOfRange


@pytest.mark.parametrize(("client_name", "login", "status"), [
    ("stranger", (USER, PASSWORD), StatusCodes.BadCertificateUntrusted),
    ("trusted", (USER, "guess"), StatusCodes.BadUserAccessDenied),
    ("trusted", ("intruder", PASSWORD), StatusCodes.BadUserAccessDenied),
    ("trusted", None, StatusCodes.BadIdentityTokenRejected),
], ids=["untrusted-certificate", "wrong-password", "unknown-user", "anonymous"])
async def test_session_is_refused_with_the_reason(
    served: dict[str, Any], clients: dict[str, ClientCert], client_name: str,
    login: tuple[str, str] | None, status: int,
) -> None:
    """An untrusted client certificate, a wrong login or none: the session is refused."""
    with pytest.raises(UaStatusCodeError) as refused:
        async with session(served, BASIC, ua.MessageSecurityMode.SignAndEncrypt,
                           clients[client_name], login):
            pass
    assert refused.value.code == status


async def test_no_unsecured_endpoint_unless_asked(
    served: dict[str, Any], clients: dict[str, ClientCert]
) -> None:
    """Only the endpoints asked for: not Aes128 with SignAndEncrypt, not security None."""
    with pytest.raises(UaError, match="No matching endpoints"):
        async with session(served, AES128, ua.MessageSecurityMode.SignAndEncrypt,
                           clients["trusted"], pin=False):
            pass
    with pytest.raises(UaError, match="No matching endpoints"):
        async with session(served, security_policies.SecurityPolicyNone,
                           ua.MessageSecurityMode.None_, clients["trusted"], pin=False):
            pass


def test_security_specs_and_user_files_parse() -> None:
    """Policy names expand to both modes; users are NAME:PASSWORD lines."""
    assert parse_security("None") == ("None",)
    assert parse_security("Aes128_Sha256_RsaOaep") == (
        "Aes128_Sha256_RsaOaep:Sign", "Aes128_Sha256_RsaOaep:SignAndEncrypt")
    assert parse_security("Basic256Sha256:Sign") == ("Basic256Sha256:Sign",)
    with pytest.raises(ValueError, match="policy is one of None, Basic256Sha256"):
        parse_security("Basic128Rsa15")
    with pytest.raises(ValueError, match="mode is one of Sign, SignAndEncrypt"):
        parse_security("Basic256Sha256:Encrypt")
    assert parse_users("# users\n\nop:a:b\nviewer:\n", "users.txt") == {"op": "a:b", "viewer": ""}
    with pytest.raises(ValueError, match=r"^users.txt:2: expected NAME:PASSWORD$"):
        parse_users("op:x\nnobody\n", "users.txt")
    with pytest.raises(ValueError, match=r"^users.txt:2: user 'op' given twice$"):
        parse_users("op:x\nop:y\n", "users.txt")


def test_command_line_builds_the_security(tmp_path: Path) -> None:
    """Flags become one ServerSecurity; contradictions are refused before anything starts."""
    users = tmp_path / "users.txt"
    users.write_text("op:pw\n")
    args = _parser().parse_args([
        "opcua", "--security", "Basic256Sha256", "--security", "Basic256Sha256:Sign",
        "--security", "None", "--trust", str(tmp_path), "--user", "admin:secret",
        "--users-file", str(users)])
    assert _opcua_security(args) == ServerSecurity(
        ("Basic256Sha256:Sign", "Basic256Sha256:SignAndEncrypt", "None"), None, None,
        (tmp_path,), {"admin": "secret", "op": "pw"})
    plain = _opcua_security(_parser().parse_args(["opcua"]))
    assert plain == ServerSecurity() and plain.describe() == {}
    with pytest.raises(ValueError, match="need a secured endpoint"):
        _opcua_security(_parser().parse_args(["opcua", "--trust", str(tmp_path)]))
    with pytest.raises(ValueError, match="certificate and its private key together"):
        _opcua_security(_parser().parse_args(
            ["opcua", "--security", "Basic256Sha256", "--certificate", str(users)]))
    with pytest.raises(ValueError, match="user 'op' given twice"):
        _opcua_security(_parser().parse_args(
            ["opcua", "--user", "op:x", "--users-file", str(users)]))
    with pytest.raises(ValueError, match="policy is one of"):
        _opcua_security(_parser().parse_args(["opcua", "--security", "Basic128Rsa15"]))
    with pytest.raises(ValueError, match=r"^--users-file: .*No such file"):
        _opcua_security(_parser().parse_args(
            ["opcua", "--users-file", str(tmp_path / "nobody.txt")]))


def test_unusable_security_exits_with_usage_status(tmp_path: Path) -> None:
    """A certificate file that holds none: exit 64 with the reason, never a traceback."""
    junk = tmp_path / "junk.der"
    junk.write_bytes(b"not a certificate")
    done = subprocess.run(
        [sys.executable, "-m", "plcsim", "opcua", "--port", "0", "--security", "Basic256Sha256",
         "--certificate", str(junk), "--private-key", str(junk)],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 64, done.stderr
    assert done.stderr.startswith("plcsim opcua: ")
    assert "Traceback" not in done.stderr
