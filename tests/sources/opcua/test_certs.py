"""`edgetwin opcua-cert` makes a certificate the driver accepts."""

import stat
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from edgetwin.sources.opcua.certs import CERT_NAME, KEY_NAME
from edgetwin.sources.opcua.driver import certificate_uri


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgetwin", "opcua-cert", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_certificate_carries_the_uri_and_the_key_is_private(tmp_path: Path) -> None:
    """DER certificate with the URI in subjectAltName; the key is mode 0600; no overwrite."""
    made = run("--out", str(tmp_path), "--uri", "urn:edgetwin:test-gw", "--host", "gw1")
    assert made.returncode == 0, made.stderr
    cert = (tmp_path / CERT_NAME).read_bytes()
    assert certificate_uri(cert) == "urn:edgetwin:test-gw"
    x509.load_der_x509_certificate(cert)
    assert stat.S_IMODE((tmp_path / KEY_NAME).stat().st_mode) == 0o600
    assert "certificate:" in made.stdout
    again = run("--out", str(tmp_path))
    assert again.returncode == 73
    assert "--force" in again.stderr
    assert run("--out", str(tmp_path), "--force").returncode == 0
