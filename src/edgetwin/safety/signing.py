"""Ed25519 keys and signatures over canonical commands: verify, make keys, sign.

The gateway holds public keys only (``commands.keys``: name -> PEM file). Operators and
tests make a key pair with ``generate_keypair`` (``edgetwin keygen``) and sign with
``sign_command`` / ``signed_cmd_payload`` / ``signed_desired_payload`` (``edgetwin sign``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edgetwin.core.errors import ConfigError
from edgetwin.core.types import Command, CommandOrigin, Value, point_name_of
from edgetwin.safety.canonical import NotSignable, canonical_bytes, command_bytes

SIGNATURE_BYTES = 64


class KeyRing:
    """The public keys commands may be signed with, by name (``key_id``).

    Args:
        keys: key name -> path of an Ed25519 public key in PEM (SubjectPublicKeyInfo).
        base_dir: where relative paths start (the config file's folder); None: the
            working directory.

    Raises:
        ConfigError: a key file is missing, unreadable or not an Ed25519 public key.
    """

    def __init__(self, keys: Mapping[str, Path], base_dir: Path | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for name, path in keys.items():
            full = path if base_dir is None or path.is_absolute() else base_dir / path
            self._keys[name] = load_public_key(full, name)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def names(self) -> list[str]:
        """The configured key names, sorted."""
        return sorted(self._keys)

    def check(self, command: Command) -> tuple[str, str] | None:
        """None when the command carries a good signature by a known key, else (code, why)."""
        if command.signature is None or command.key_id is None:
            return "unsigned", "unsigned: the command carries no signature (sig and key_id)"
        key = self._keys.get(command.key_id)
        if key is None:
            return "unknown_key", f"unknown key id {command.key_id!r}"
        try:
            signature = base64.b64decode(command.signature, validate=True)
        except (binascii.Error, ValueError):
            return "bad_signature", "bad signature: sig is not base64"
        if len(signature) != SIGNATURE_BYTES:
            return "bad_signature", (f"bad signature: {len(signature)} bytes, an Ed25519 "
                                     f"signature has {SIGNATURE_BYTES}")
        try:
            key.verify(signature, command_bytes(command))
        except NotSignable as err:
            return "bad_signature", f"bad signature: {err}"
        except InvalidSignature:
            return "bad_signature", (f"bad signature: it does not match the command's content "
                                     f"and key {command.key_id!r}")
        return None


Check = Callable[[Command], "tuple[str, str] | None"]
_PROBE_KEY = "self-test"


def self_test() -> str | None:
    """Sign a probe command with a throwaway key and check it as commands are checked.

    A power-on self-test: a check that refuses a good signature, or accepts one over a
    changed command, makes every signature meaningless, so the policy then refuses every
    command. None when the check is sound. It also loads the check's machine code at
    start-up instead of with the first command (the HIL soak saw ~0.45 MB of RSS, most of
    it the cryptography library's pages, arrive with the first command).
    """
    key = Ed25519PrivateKey.generate()
    ring = KeyRing({})
    ring._keys[_PROBE_KEY] = key.public_key()
    probe = Command("self-test-1", "self-test/probe", 1, CommandOrigin.JSON_CMD, 0,
                    key_id=_PROBE_KEY,
                    signature=sign_command(key, "self-test-1", "self-test/probe", 1))
    return judge_self_test(ring.check, probe)


def judge_self_test(check: Check, signed: Command) -> str | None:
    """What is wrong with ``check``, given a command ``signed`` properly; None if nothing."""
    refused = check(signed)
    if refused is not None:
        return f"a good signature was refused ({refused[1]})"
    if check(dataclasses.replace(signed, value=2 if signed.value != 2 else 3)) is None:
        return "a signature over a changed command was accepted"
    return None


def load_public_key(path: Path, name: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file.

    Raises:
        ConfigError: missing, unreadable, or not an Ed25519 public key.
    """
    where = f"commands.keys.{name} ({path})"
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{where}: cannot read the public key: {err.strerror}") from err
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: not a PEM public key ({err})") from err
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where}: a {type(key).__name__}, not an Ed25519 public key")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PEM (PKCS8) file.

    Raises:
        ValueError: unreadable, or not an Ed25519 private key.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the private key: {err.strerror}") from err
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({err})") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: a {type(key).__name__}, not an Ed25519 private key")
    return key


@dataclass(frozen=True, slots=True)
class KeyPair:
    """Where ``generate_keypair`` put the two files."""

    private: Path  # mode 0600; stays with the operator or the signing service
    public: Path  # goes to the gateway: commands.keys.<name>


def generate_keypair(out_dir: Path, name: str, *, force: bool = False) -> KeyPair:
    """Make an Ed25519 key pair: ``NAME.key`` (PKCS8 PEM, 0600) and ``NAME.pub`` (PEM).

    Raises:
        FileExistsError: a file is already there and ``force`` is not set.
        OSError: the folder cannot be made or written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    pair = KeyPair(out_dir / f"{name}.key", out_dir / f"{name}.pub")
    if not force:
        for path in (pair.private, pair.public):
            if path.exists():
                raise FileExistsError(f"{path} exists; pass --force to replace it")
    _write_new(pair.private, private_pem, 0o600)
    _write_new(pair.public, public_pem, 0o644)
    return pair


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file created with ``mode`` from the start (a key is never world-readable)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)  # the umask may have taken bits away; set exactly what was asked
    tmp.replace(path)


def sign_command(
    key: Ed25519PrivateKey,
    command_id: str,
    point: str,
    value: Value,
    *,
    op: str = "operate",
    token: str | None = None,
    issued_at_ms: int | None = None,
    expires_at_ms: int | None = None,
) -> str:
    """The base64 Ed25519 signature over the command's canonical bytes.

    Raises:
        NotSignable: an unknown op or a value type the encoding does not have.
    """
    data = canonical_bytes(command_id, point, value, op=op, token=token,
                           issued_at_ms=issued_at_ms, expires_at_ms=expires_at_ms)
    return base64.b64encode(key.sign(data)).decode("ascii")


def _stamp(ttl_s: float, now_ms: int | None) -> tuple[int, int]:
    issued = int(time.time() * 1000) if now_ms is None else now_ms
    return issued, issued + round(ttl_s * 1000)


def signed_cmd_payload(
    key: Ed25519PrivateKey,
    key_id: str,
    point: str,
    value: Value,
    *,
    op: str = "operate",
    token: str | None = None,
    ttl_s: float = 30.0,
    command_id: str | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """A signed payload for ``<prefix>/<gateway>/cmd``, ready for ``json.dumps``.

    Args:
        key: the private key whose public half the gateway knows as ``key_id``.
        key_id: the key's name in ``commands.keys``.
        point: ``"<asset>/<point>"``.
        value: bool, int, float or str; its Python type is what is signed.
        op: ``"operate"`` or ``"select"``.
        token: the select token an operate refers to.
        ttl_s: ``expires_at`` is ``issued_at`` plus this.
        command_id: the command id (default: 32 random hex digits).
        now_ms: ``issued_at`` (default: now).
    """
    command_id = command_id or secrets.token_hex(16)
    issued, expires = _stamp(ttl_s, now_ms)
    payload: dict[str, Any] = {"id": command_id, "point": point, "value": value, "op": op}
    if token is not None:
        payload["token"] = token
    payload.update(issued_at=issued, expires_at=expires, key_id=key_id)
    payload["sig"] = sign_command(key, command_id, point, value, op=op, token=token,
                                  issued_at_ms=issued, expires_at_ms=expires)
    return payload


def signed_desired_payload(
    key: Ed25519PrivateKey,
    key_id: str,
    point: str,
    value: Value,
    *,
    ttl_s: float = 30.0,
    command_id: str | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """A signed payload for ``<prefix>/<gateway>/<asset>/desired`` naming one point.

    A desired value is an operate without a token; one signature covers one point, so a
    signed desired message names exactly one. Arguments as ``signed_cmd_payload``.
    """
    command_id = command_id or secrets.token_hex(16)
    issued, expires = _stamp(ttl_s, now_ms)
    return {
        "id": command_id,
        "state": {point_name_of(point): value},
        "issued_at": issued,
        "expires_at": expires,
        "key_id": key_id,
        "sig": sign_command(key, command_id, point, value, issued_at_ms=issued,
                            expires_at_ms=expires),
    }
