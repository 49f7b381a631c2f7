r"""The canonical bytes of a command: what an Ed25519 signature covers.

Format (version 1), in full, so that a signer in any language can produce it:

    b"edgetwin-command-v1\n" + UTF-8 of a JSON object with exactly these seven keys,
    sorted, no whitespace (separators "," and ":"), non-ASCII escaped as \uXXXX:

    {"expires_at":E,"id":I,"issued_at":S,"op":O,"point":P,"token":T,"value":V}

- ``id``, ``point``: JSON strings; ``op``: ``"operate"`` or ``"select"``;
- ``token``: the select token as a string, or ``null``;
- ``issued_at``, ``expires_at``: integers (ms since the Unix epoch, UTC), or ``null``;
- ``value``: a one-key object that carries the type, so that ``1``, ``1.0`` and ``true``
  never sign the same bytes:
  ``{"bool":true}``, ``{"int":"-42"}`` (decimal digits, as a string, so a 64-bit integer
  survives a JavaScript signer), ``{"float":"3ff0000000000000"}`` (the 16 lowercase hex
  digits of the IEEE 754 binary64 bits, big-endian: exact, no formatting rules),
  ``{"str":"auto"}``.

The prefix separates these signatures from anything else the same key might sign.
JSON escaping is Python's ``json.dumps(..., ensure_ascii=True)``: ``\"``, ``\\``,
``\b``, ``\f``, ``\n``, ``\r``, ``\t``, other characters below U+0020 and all
non-ASCII as ``\u`` + 4 lowercase hex digits (astral characters as a surrogate pair).
"""

from __future__ import annotations

import json
import struct
from typing import Any

from edgetwin.core.types import Command, Value

PREFIX = b"edgetwin-command-v1\n"
OPERATIONS = ("operate", "select")


class NotSignable(ValueError):
    """The command holds something the canonical encoding cannot express."""


def typed_value(value: Value) -> dict[str, Any]:
    """The value as its canonical one-key object.

    Raises:
        NotSignable: the value is not a bool, int, float or str (a waveform, a list).
    """
    # bool before int: True is an int to Python, never to the encoding.
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        try:
            return {"int": str(value)}
        except ValueError as err:  # over Python's 4300-digit limit for int -> str
            raise NotSignable(f"an integer this long cannot be signed: {err}") from None
    if isinstance(value, float):
        return {"float": struct.pack(">d", value).hex()}
    if isinstance(value, str):
        return {"str": value}
    raise NotSignable(f"a {type(value).__name__} value cannot be signed")


def canonical_bytes(
    command_id: str,
    point: str,
    value: Value,
    *,
    op: str = "operate",
    token: str | None = None,
    issued_at_ms: int | None = None,
    expires_at_ms: int | None = None,
) -> bytes:
    """The bytes a signature over this command covers (see the module docstring).

    Raises:
        NotSignable: an unknown ``op`` or a value of a type the encoding does not have.
    """
    if op not in OPERATIONS:
        raise NotSignable(f"op must be one of {', '.join(OPERATIONS)}, not {op!r}")
    doc = {
        "expires_at": expires_at_ms,
        "id": command_id,
        "issued_at": issued_at_ms,
        "op": op,
        "point": point,
        "token": token,
        "value": typed_value(value),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return PREFIX + text.encode("ascii")


def command_bytes(command: Command) -> bytes:
    """The canonical bytes of a decoded command.

    Raises:
        NotSignable: as ``canonical_bytes``.
    """
    return canonical_bytes(
        command.id, command.point, command.value, op=command.operation, token=command.token,
        issued_at_ms=command.issued_at_ms, expires_at_ms=command.expires_at_ms,
    )
