"""`edgetwin keygen` and `edgetwin sign`: keys on disk, payloads the gateway accepts."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgetwin.core.types import Command, CommandOrigin
from edgetwin.daemon.cli import main
from edgetwin.safety import audit_dir
from edgetwin.safety.audit import AuditLog
from edgetwin.safety.signing import KeyRing
from tests.config.test_loader import MINIMAL


def test_keygen_then_sign_gives_a_payload_the_keyring_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Keygen writes NAME.key (0600) and NAME.pub; sign prints a JSON line that verifies."""
    assert main(["keygen", "--out", str(tmp_path), "--name", "ops"]) == 0
    assert "commands:\n      keys: {ops: /etc/edgetwin/keys/ops.pub}" in capsys.readouterr().out
    assert stat.S_IMODE((tmp_path / "ops.key").stat().st_mode) == 0o600
    assert main(["keygen", "--out", str(tmp_path), "--name", "ops"]) == 73
    assert "exists; pass --force" in capsys.readouterr().err
    ring = KeyRing({"ops": tmp_path / "ops.pub"})
    for value_text, value in (("1450", 1450), ("1450.0", 1450.0), ("true", True),
                              ("auto", "auto"), ('"1"', "1")):
        assert main(["sign", "--key", str(tmp_path / "ops.key"), "--key-id", "ops",
                     "--point", "pump1/speed_setpoint", "--value", value_text, "--op", "select",
                     "--ttl", "10", "--id", "abc"]) == 0
        payload = json.loads(capsys.readouterr().out)
        assert payload["value"] == value and type(payload["value"]) is type(value)
        assert payload["expires_at"] - payload["issued_at"] == 10_000
        command = Command(payload["id"], payload["point"], payload["value"],
                          CommandOrigin.JSON_CMD, 0, payload["issued_at"],
                          payload["expires_at"], payload["key_id"], payload["sig"],
                          payload["op"])
        assert ring.check(command) is None


def test_sign_desired_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--desired makes a desired payload; a select or token with it, or a bad key, exit 2."""
    main(["keygen", "--out", str(tmp_path), "--name", "ops"])
    capsys.readouterr()
    base = ["sign", "--key", str(tmp_path / "ops.key"), "--key-id", "ops", "--point",
            "pump1/run", "--value", "false"]
    assert main([*base, "--desired"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == {"run": False}
    assert main([*base, "--desired", "--op", "select"]) == 2
    assert main([*base[:2], str(tmp_path / "ops.pub"), *base[3:]]) == 2
    assert "not an unencrypted PEM private key" in capsys.readouterr().err
    assert main([*base[:-1], "[1, 2]"]) == 2


def test_cli_runs_as_a_command(tmp_path: Path) -> None:
    """The installed entry point has both subcommands."""
    done = subprocess.run([sys.executable, "-m", "edgetwin", "keygen", "--out", str(tmp_path),
                           "--name", "k"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    signed = subprocess.run([sys.executable, "-m", "edgetwin", "sign", "--key",
                             str(tmp_path / "k.key"), "--key-id", "k", "--point", "a/b",
                             "--value", "1"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert json.loads(signed.stdout)["key_id"] == "k"


def test_audit_verify_says_whether_the_chain_is_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0 over an intact log, 65 with the broken line named once a line was edited."""
    state = tmp_path / "state"
    config = tmp_path / "gateway.yaml"
    config.write_text(MINIMAL.replace("/tmp/x", str(state)))
    log = AuditLog(audit_dir(state), 1 << 20, 3)
    for i in range(1, 4):
        log.append({"ts": 1_763_770_000_000 + i, "event": "readonly", "readonly": i % 2 == 1,
                    "by": "test"})
    log.close()
    assert main(["audit", "verify", "-c", str(config)]) == 0
    assert capsys.readouterr().out.endswith(
        "the chain is whole over 3 entries in 1 file(s) (seq 1..3)\n")
    path = audit_dir(state) / "audit.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1].replace(b'"readonly":false', b'"readonly":true')
                     + lines[2])
    assert main(["audit", "verify", "-c", str(config)]) == 65
    out = capsys.readouterr().out
    assert out.startswith("BROKEN audit.jsonl:3: does not chain to the line before\n")
    assert "1 break(s) in the chain over 3 entries" in out
