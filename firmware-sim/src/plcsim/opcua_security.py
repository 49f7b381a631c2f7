"""What the OPC UA face offers and whom it lets in: policies, its certificate, clients, users.

``ServerSecurity`` holds the settings (``plcsim opcua --security ... --trust ... --user ...``);
``install`` applies them to an asyncua ``Server`` before it starts, through asyncua's own
API: ``set_security_policy``, ``load_certificate``/``load_private_key``,
``set_certificate_validator`` with a ``CertificateValidator`` over a ``TrustStore``, a
``UserManager`` and ``set_identity_tokens``.

- Without a certificate a fresh self-signed one (RSA 2048, one year, SERVER_AUTH, the
  application URI ``SERVER_URI``) is made in memory; no network, no files.
- With trusted client certificates, a client whose certificate is not among them (or not
  issued by one of them) is refused at CreateSession with BadCertificateUntrusted; the
  validator also checks validity dates, the application URI, key usages and CLIENT_AUTH.
  Without them any client certificate is accepted.
- With users, only UserName tokens are offered (anonymous is refused with
  BadIdentityTokenRejected) and a wrong name or password is BadUserAccessDenied.
"""

from __future__ import annotations

import hmac
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

NONE = "None"
MODES = ("Sign", "SignAndEncrypt")
SERVER_URI = "urn:edgetwin:plcsim:server"  # not the namespace URI: that one must stay apart
_TYPES: dict[str, ua.SecurityPolicyType] = {
    NONE: ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256:Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256:SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Aes128_Sha256_RsaOaep:Sign": ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    "Aes128_Sha256_RsaOaep:SignAndEncrypt":
        ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    "Aes256_Sha256_RsaPss:Sign": ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    "Aes256_Sha256_RsaPss:SignAndEncrypt": ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
}
POLICIES = tuple(dict.fromkeys(name.partition(":")[0] for name in _TYPES if name != NONE))


def parse_security(spec: str) -> tuple[str, ...]:
    """``None``, ``POLICY`` (both modes) or ``POLICY:MODE`` as endpoint names.

    Raises:
        ValueError: an unknown policy or mode.
    """
    if spec == NONE:
        return (NONE,)
    policy, _, mode = spec.partition(":")
    if policy not in POLICIES:
        raise ValueError(f"security {spec!r}: policy is one of None, {', '.join(POLICIES)}")
    if mode and mode not in MODES:
        raise ValueError(f"security {spec!r}: mode is one of {', '.join(MODES)}")
    return tuple(f"{policy}:{m}" for m in ((mode,) if mode else MODES))


def parse_users(text: str, origin: str) -> dict[str, str]:
    """``NAME:PASSWORD`` per line (``#`` comments and blank lines skipped).

    Raises:
        ValueError: a line without ``:`` or a name given twice; ``origin`` names the source.
    """
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, password = line.partition(":")
        if not sep or not name:
            raise ValueError(f"{origin}:{number}: expected NAME:PASSWORD")
        if name in users:
            raise ValueError(f"{origin}:{number}: user {name!r} given twice")
        users[name] = password
    return users


@dataclass(frozen=True, slots=True)
class ServerSecurity:
    """The endpoints offered and the logins accepted; the default is None and anonymous.

    Attributes:
        endpoints: ``None`` and/or ``POLICY:MODE`` names (see ``parse_security``).
        certificate: the server certificate (DER or PEM); None: a fresh self-signed one.
        private_key: its unencrypted key (PEM or DER); given with ``certificate`` only.
        trusted: client certificates, or directories of them, to let in; empty: any.
        users: name -> password; empty: anonymous login only.
    """

    endpoints: tuple[str, ...] = (NONE,)
    certificate: Path | None = None
    private_key: Path | None = None
    trusted: tuple[Path, ...] = ()
    users: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [e for e in self.endpoints if e not in _TYPES]
        if not self.endpoints or unknown:
            raise ValueError(f"endpoints: unknown {unknown}; known: {', '.join(_TYPES)}")
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ValueError(f"endpoints: given twice in {list(self.endpoints)}")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("give the server certificate and its private key together")
        if self.trusted and not self.secured:
            raise ValueError("trusted client certificates need a secured endpoint "
                             "(with security None no client certificate is sent)")

    @property
    def secured(self) -> bool:
        """Whether an endpoint with Sign or SignAndEncrypt is offered."""
        return any(e != NONE for e in self.endpoints)

    def describe(self) -> dict[str, Any]:
        """What the listening line adds; nothing for the default (None, anonymous)."""
        line: dict[str, Any] = {}
        if self.secured:
            line["security"] = list(self.endpoints)
        if self.trusted:
            line["trusted"] = [str(p) for p in self.trusted]
        if self.users:
            line["login"] = "username"
        return line


class PasswordUsers(UserManager):
    """Lets in the configured users with their password; nobody else."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {name: password.encode() for name, password in users.items()}

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        """The user, or None (asyncua answers BadUserAccessDenied)."""
        del iserver, certificate
        expected = self._users.get(username or "")
        if expected is None or password is None:
            return None
        if not hmac.compare_digest(expected, password.encode()):
            return None
        return User(role=UserRole.User, name=username)


class TrustList(TrustStore):
    """asyncua's TrustStore, taking single certificate files as well as directories."""

    async def _load_trust_location(self, location: Path) -> list[x509.Certificate]:
        if location.is_dir():  # noqa: ASYNC240  # once, at server start
            return await super()._load_trust_location(location)
        return [_certificate(location.read_bytes())]  # noqa: ASYNC240  # as above


def _certificate(data: bytes) -> x509.Certificate:
    """A certificate from DER or PEM bytes (asyncua guesses the format by file suffix)."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _application_uri(der: bytes) -> str | None:
    """The first URI in a certificate's subjectAltName."""
    try:
        alt_names = _certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = alt_names.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def self_signed(host: str) -> tuple[bytes, bytes]:
    """A fresh server certificate (DER) for ``SERVER_URI`` and ``host``, and its key (PEM)."""
    key = generate_private_key()
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(SERVER_URI), x509.DNSName(socket.gethostname()),
        x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    cert = generate_self_signed_app_certificate(
        key, "plcsim pump skid", {}, names, [ExtendedKeyUsageOID.SERVER_AUTH])
    return cert.public_bytes(Encoding.DER), dump_private_key_as_pem(key)


async def install(server: Server, security: ServerSecurity,
                  generated: tuple[bytes, bytes] | None = None) -> bytes | None:
    """Apply ``security`` to ``server`` (after ``init``, before ``start``).

    Args:
        server: the server, initialised, not started.
        security: what to offer and whom to let in.
        generated: certificate (DER) and key (PEM) from ``self_signed``, used when
            ``security`` names no certificate; the files it names are read now.

    Returns:
        The server certificate (DER) when an endpoint is secured, else None.

    Raises:
        OSError: a certificate, key or trust path cannot be read.
        ValueError: a file holds no certificate or key, or a secured endpoint has neither
            a certificate file nor ``generated``.
    """
    server.set_security_policy([_TYPES[e] for e in security.endpoints])
    if security.users:
        server.iserver.set_user_manager(PasswordUsers(security.users))
        server.set_identity_tokens([ua.UserNameIdentityToken])
    else:
        server.set_identity_tokens([ua.AnonymousIdentityToken])
    if not security.secured:
        return None
    if security.certificate is not None and security.private_key is not None:
        der = _certificate(security.certificate.read_bytes()).public_bytes(Encoding.DER)
        key = security.private_key.read_bytes()
    elif generated is not None:
        der, key = generated
    else:
        raise ValueError("a secured endpoint needs a certificate: a file or a generated one")
    await server.load_certificate(der)
    await server.load_private_key(key, format="pem" if key.lstrip().startswith(b"-----") else "der")
    uri = _application_uri(der)
    if uri is not None:
        await server.set_application_uri(uri)  # Part 6 6.2.2: they must agree
    if security.trusted:
        for path in security.trusted:
            if not path.exists():
                raise FileNotFoundError(f"trusted client certificates: {path} does not exist")
        store = TrustList(list(security.trusted), [])
        await store.load()
        server.set_certificate_validator(CertificateValidator(
            CertificateValidatorOptions.TRUSTED_VALIDATION
            | CertificateValidatorOptions.PEER_CLIENT, store))
    return der
