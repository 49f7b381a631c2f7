"""``edgetwin opcua-cert``: make the gateway's OPC UA application certificate and key.

A secured OPC UA session needs a client certificate whose subjectAltName carries the
application URI (OPC UA Part 6, 6.2.2). The server's administrator then trusts this
certificate; the gateway's config points ``security.certificate`` and ``private_key`` at it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

CERT_NAME = "edgetwin-opcua-cert.der"
KEY_NAME = "edgetwin-opcua-key.pem"


def default_uri() -> str:
    """An application URI naming this host."""
    return f"urn:edgetwin:{socket.gethostname()}"


async def make_certificate(out_dir: Path, uri: str, host: str, *,
                           force: bool = False) -> tuple[Path, Path]:
    """Write a self-signed client certificate (DER) and its key (PEM, mode 0600).

    Raises:
        FileExistsError: a file is there already and ``force`` is false (a key is never
            replaced by accident: servers trust the old certificate).
    """
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  # one-shot CLI; nothing else on its loop
    cert, key = out_dir / CERT_NAME, out_dir / KEY_NAME
    for path in (cert, key):
        if path.exists() and not force:
            msg = f"{path} exists; pass --force to replace it (servers trust the old one)"
            raise FileExistsError(msg)
    old_umask = os.umask(0o077)  # the key is never readable by others, not even briefly
    try:
        await setup_self_signed_certificate(key, cert, uri, host,
                                            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": uri})
    finally:
        os.umask(old_umask)
    key.chmod(0o600)
    return cert, key
