"""Ed25519 keys on disk, signed payloads, and their check against the configured keys."""

from __future__ import annotations

import base64
import dataclasses
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgetwin.core.errors import ConfigError
from edgetwin.core.types import Command, CommandOrigin
from edgetwin.safety.signing import (
    KeyRing,
    generate_keypair,
    judge_self_test,
    load_private_key,
    self_test,
    sign_command,
    signed_cmd_payload,
    signed_desired_payload,
)
from edgetwin.sync.jsontwin.inbound import Decoded, JsonTwinDecoder
from tests.safety.conftest import Keys

NOW_MS = 1_763_770_000_000


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    """NAME.key is 0600 PKCS8 PEM, NAME.pub a PEM public key; existing files are kept."""
    pair = generate_keypair(tmp_path / "k", "ops")
    assert stat.S_IMODE(pair.private.stat().st_mode) == 0o600
    assert pair.private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pair.public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert "ops" in KeyRing({"ops": pair.public})
    before = pair.private.read_bytes()
    with pytest.raises(FileExistsError):
        generate_keypair(tmp_path / "k", "ops")
    assert pair.private.read_bytes() == before
    assert generate_keypair(tmp_path / "k", "ops", force=True).private.read_bytes() != before
    assert list((tmp_path / "k").glob(".*")) == []  # no temporary files left


def _command(payload: dict[str, object]) -> Command:
    return Command(str(payload["id"]), str(payload["point"]), payload["value"],
                   CommandOrigin.JSON_CMD, 0, issued_at_ms=payload["issued_at"],  # type: ignore[arg-type]
                   expires_at_ms=payload["expires_at"], key_id=str(payload["key_id"]),  # type: ignore[arg-type]
                   signature=str(payload["sig"]), operation=str(payload["op"]),
                   token=payload.get("token"))  # type: ignore[arg-type]


def test_signed_payload_passes_and_any_change_fails(keys: Keys) -> None:
    """The helper's payload verifies; a changed value or another key does not."""
    ring = KeyRing({"ops": keys.ops_public})
    payload = signed_cmd_payload(keys.ops, "ops", "pump1/run", True, op="select",
                                 now_ms=NOW_MS, command_id="c1")
    assert payload["expires_at"] == NOW_MS + 30_000
    command = _command(payload)
    assert ring.check(command) is None
    assert ring.check(dataclasses.replace(command, value=False))[0] == "bad_signature"  # type: ignore[index]
    assert ring.check(dataclasses.replace(command, key_id="nobody")) == (
        "unknown_key", "unknown key id 'nobody'")
    assert ring.check(dataclasses.replace(command, signature=None))[0] == "unsigned"  # type: ignore[index]
    rogue = sign_command(keys.rogue, "c1", "pump1/run", True, op="select",
                         issued_at_ms=NOW_MS, expires_at_ms=NOW_MS + 30_000)
    assert ring.check(dataclasses.replace(command, signature=rogue))[0] == "bad_signature"  # type: ignore[index]


@pytest.mark.parametrize(("sig", "why"), [
    ("not base64!", "not base64"), (base64.b64encode(b"x" * 10).decode(), "10 bytes"),
])
def test_malformed_signatures_are_refused(keys: Keys, sig: str, why: str) -> None:
    """Garbage in sig is a bad signature with a reason, never an exception."""
    ring = KeyRing({"ops": keys.ops_public})
    command = Command("c", "a/b", 1, CommandOrigin.JSON_CMD, 0, 1, 2, "ops", sig)
    problem = ring.check(command)
    assert problem is not None and problem[0] == "bad_signature" and why in problem[1]


def test_payloads_decode_into_commands_the_keyring_accepts(keys: Keys) -> None:
    """What `edgetwin sign` prints, the gateway's JSON decoder and key check accept as is."""
    ring = KeyRing({"ops": keys.ops_public})
    decoder = JsonTwinDecoder("edgetwin/v1", "gw1", ["pump1/speed_setpoint", "pump1/run"])
    cmd = signed_cmd_payload(keys.ops, "ops", "pump1/speed_setpoint", 1450.0, now_ms=NOW_MS)
    desired = signed_desired_payload(keys.ops, "ops", "pump1/speed_setpoint", 1500,
                                     now_ms=NOW_MS)
    operate = signed_cmd_payload(keys.ops, "ops", "pump1/run", False, token="ab" * 16,
                                 now_ms=NOW_MS)
    for topic, payload in (("edgetwin/v1/gw1/cmd", cmd), ("edgetwin/v1/gw1/pump1/desired",
                                                          desired),
                           ("edgetwin/v1/gw1/cmd", operate)):
        decoded = decoder.parse(topic, json.dumps(payload).encode(), 0)
        assert isinstance(decoded, Decoded), decoded
        (command,) = decoded.commands
        assert ring.check(command) is None, (topic, payload)
    assert desired["state"] == {"speed_setpoint": 1500}


def test_key_files_that_cannot_be_used_are_config_errors(tmp_path: Path, keys: Keys) -> None:
    """Missing, not PEM, or not Ed25519: a ConfigError naming the key and the file."""
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("hello")
    ec_key = tmp_path / "ec.pub"
    ec_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ConfigError, match=r"commands.keys.a \(.*missing.pub\): cannot read"):
        KeyRing({"a": tmp_path / "missing.pub"})
    with pytest.raises(ConfigError, match="not a PEM public key"):
        KeyRing({"b": garbage})
    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        KeyRing({"c": ec_key})
    relative = KeyRing({"ops": Path(keys.ops_public.name)}, base_dir=keys.ops_public.parent)
    assert relative.names() == ["ops"]


def test_private_key_loading_refuses_other_files(tmp_path: Path, keys: Keys) -> None:
    """A public key or a missing file is not a signing key."""
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        load_private_key(keys.ops_public)
    with pytest.raises(ValueError, match="cannot read"):
        load_private_key(tmp_path / "none.key")


def test_self_test_finds_the_real_check_sound() -> None:
    assert self_test() is None


def _probe() -> Command:
    return Command("p1", "a/b", 1, CommandOrigin.JSON_CMD, 0, key_id="k", signature="c2ln")


def test_self_test_catches_a_check_that_accepts_anything() -> None:
    assert judge_self_test(lambda _command: None, _probe()) == (
        "a signature over a changed command was accepted")


def test_self_test_catches_a_check_that_refuses_good_signatures() -> None:
    assert judge_self_test(lambda _command: ("bad_signature", "bad signature: no"), _probe()) == (
        "a good signature was refused (bad signature: no)")


def test_self_test_passes_a_check_that_tells_the_changed_command() -> None:
    probe = _probe()
    assert judge_self_test(lambda c: None if c == probe else ("x", "changed"), probe) is None
