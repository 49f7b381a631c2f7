"""A throwaway PKI for TLS tests: a CA, a loopback server certificate, client certificates.

Two CAs are made. ``ca`` signs the broker's certificate (for 127.0.0.1 and localhost), a
broker certificate for another name only (``misnamed_server_*``, for ``broker.invalid``)
and the trusted client certificate; ``other_ca`` signs a client certificate that no broker
trusts, and serves as a CA a client can be configured with that did not sign the broker.
Keys are EC P-256 (fast to make) and written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID = datetime.timedelta(days=2)
_SKEW = datetime.timedelta(minutes=5)  # not-before in the past: clocks of peers may differ


@dataclass(frozen=True)
class Issuer:
    """A CA certificate with its key, able to sign leaf certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def self_signed(cls, common_name: str) -> Issuer:
        """A new root CA that may sign end-entity certificates only (path length 0)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(common_name)
        cert = (
            _builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def issue(
        self, common_name: str, usage: x509.ObjectIdentifier,
        san: list[x509.GeneralName] | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate for ``usage`` (serverAuth or clientAuth) and its new key."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _builder(_name(common_name), self.cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


@dataclass(frozen=True)
class PkiPaths:
    """PEM files of a throwaway PKI (see the module docstring for who signed what)."""

    ca: Path
    server_cert: Path
    server_key: Path
    misnamed_server_cert: Path
    misnamed_server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts ``ca`` and presents the trusted client certificate."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        context.load_cert_chain(self.client_cert, self.client_key)
        return context


def make_pki(directory: Path) -> PkiPaths:
    """Make both CAs and every certificate, and write them as PEM files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = Issuer.self_signed("edgetwin test CA")
    other = Issuer.self_signed("edgetwin stranger CA")
    loopback: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
    ]
    server = ca.issue("edgetwin test broker", ExtendedKeyUsageOID.SERVER_AUTH, loopback)
    misnamed = ca.issue("edgetwin misnamed broker", ExtendedKeyUsageOID.SERVER_AUTH,
                        [x509.DNSName("broker.invalid")])
    client = ca.issue("gw1", ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = other.issue("gw1", ExtendedKeyUsageOID.CLIENT_AUTH)
    return PkiPaths(
        ca=_write_cert(directory / "ca.pem", ca.cert),
        server_cert=_write_cert(directory / "server.pem", server[0]),
        server_key=_write_key(directory / "server.key", server[1]),
        misnamed_server_cert=_write_cert(directory / "misnamed-server.pem", misnamed[0]),
        misnamed_server_key=_write_key(directory / "misnamed-server.key", misnamed[1]),
        client_cert=_write_cert(directory / "client.pem", client[0]),
        client_key=_write_key(directory / "client.key", client[1]),
        other_ca=_write_cert(directory / "other-ca.pem", other.cert),
        other_client_cert=_write_cert(directory / "other-client.pem", stranger[0]),
        other_client_key=_write_key(directory / "other-client.key", stranger[1]),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + _VALID)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """A CA signs certificates (and CRLs); an EC leaf signs its handshakes."""
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # Created 0600 rather than chmod-ed after writing: never readable by others, not briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return path
