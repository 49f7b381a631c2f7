"""Inbound JSON twin messages (``<asset>/desired`` and ``cmd``) decoded into Commands.

The session hands in what arrived on a topic and gets back either the Commands to pass to the
safety policy or a typed Rejection to count, log and answer on ``cmd/result``. This is shape
only: whether a point may be written, by whom and when is the safety policy's decision, so a
point that is not writable is decoded like any other.

Invariants:
- ``JsonTwinDecoder.parse`` never raises, whatever the topic and payload; it returns
  ``Decoded`` or ``Rejection``;
- a Command is made only for a point in the known set given to the decoder;
- a message is decoded whole or rejected whole: nothing partial reaches the policy;
- every Command of one message has its own id (the policy keys replay checks and audit rows
  on it).

The payloads are documented, with examples, in ``docs/schemas/desired.json`` and
``docs/schemas/cmd.json``; the tests hold this module and those files to each other.
"""

from __future__ import annotations

import enum
import json
import math
import re
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, NoReturn

from edgetwin.core.types import Command, CommandOrigin, Value, asset_of

MAX_PAYLOAD_BYTES = 16 * 1024
MAX_DESIRED_POINTS = 64
MAX_TEXT_VALUE = 1024  # characters of a string value

# Ids, key ids and select tokens: printable ASCII without spaces, so they log and compare
# without surprises. The client token is AWS's clientToken: at most 64 bytes (FACTS §2.1).
_ID = re.compile(r"[!-~]{1,128}")
_CLIENT_TOKEN = re.compile(r"[ -~]{1,64}")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SIG_CHARS = (4, 344)  # up to 256 bytes of signature: Ed25519 is 64, HMAC-SHA256 32
_MAX_MS = 2**53 - 1  # the largest integer every JSON consumer holds exactly

_DESIRED_FIELDS = frozenset(
    {"state", "id", "issued_at", "expires_at", "key_id", "sig", "client_token"})
_CMD_FIELDS = frozenset(
    {"id", "point", "value", "op", "token", "issued_at", "expires_at", "key_id", "sig",
     "client_token"})
_OPERATIONS = ("operate", "select")


class RejectCode(enum.Enum):
    """Why an inbound message was not decoded; the value is the ``error_code`` label."""

    BAD_TOPIC = "bad_topic"  # not a desired or cmd topic of this gateway
    RETAINED = "retained"  # a retained command would be replayed on every reconnect
    TOO_LARGE = "too_large"  # payload bytes or points per message over the cap
    MALFORMED_JSON = "malformed_json"  # not UTF-8, not JSON, NaN/Infinity, duplicate keys
    NOT_AN_OBJECT = "not_an_object"  # the payload is JSON but not an object
    UNKNOWN_FIELD = "unknown_field"  # a typo like "expire_at" must not silently drop a limit
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"  # wrong JSON type, non-finite number, bad format or length
    UNKNOWN_POINT = "unknown_point"
    # Not the decoder's: the session's gate refused a decoded message (sync/admission.py).
    FLOODED = "flooded"


@dataclass(frozen=True, slots=True)
class Rejection:
    """An inbound message that was not decoded, with what can be echoed back safely.

    ``id``, ``client_token`` and ``point`` are set only when they were read and valid (a known
    point); ``asset`` is ``""`` unless the message named a known asset.
    """

    code: RejectCode
    message: str
    origin: CommandOrigin | None  # None when the topic is not one of ours
    asset: str = ""
    id: str | None = None
    point: str | None = None
    client_token: str | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one accepted message asks for: writes for the policy and withdrawn desired values."""

    commands: tuple[Command, ...]
    clears: tuple[str, ...] = ()  # point ids whose pending desired value was set to null


class _Reject(Exception):
    """Unwinds a decode to ``parse``, which turns it into a Rejection; never leaves the module."""

    def __init__(self, code: RejectCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _reject(code: RejectCode, message: str) -> NoReturn:
    raise _Reject(code, message)


def _show(text: str) -> str:
    """A sender's string for a message: quoted, escaped and short."""
    return repr(text[:64] + ("..." if len(text) > 64 else ""))


def _new_id() -> str:
    return uuid.uuid4().hex


class JsonTwinDecoder:
    """Decodes the JSON twin scheme's inbound topics of one gateway.

    Build a new one when the configured points change (a reload): the known set is fixed.

    Args:
        prefix: the scheme's topic prefix (``sync.json.prefix``).
        gateway_id: the gateway's id, the topic level after the prefix.
        points: the known point ids (``"pump1/speed_setpoint"``); a ``Mapping[str, PointSpec]``
            works as well. Writability is not checked here.
        max_payload_bytes: larger payloads are rejected before they are parsed.
        max_points: the most points one desired message may name.
        new_id: makes the id of a message that has none (default: a random uuid4, as hex).
    """

    def __init__(
        self,
        prefix: str,
        gateway_id: str,
        points: Collection[str],
        *,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        max_points: int = MAX_DESIRED_POINTS,
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self.base = f"{prefix}/{gateway_id}"
        self._points = frozenset(points)
        self._assets = frozenset(asset_of(p) for p in self._points)
        self._max_bytes = max_payload_bytes
        self._max_points = max_points
        self._new_id = new_id

    def subscriptions(self) -> tuple[str, ...]:
        """The topic filters to subscribe to, at QoS 1: every asset's desired, and cmd."""
        return (f"{self.base}/+/desired", f"{self.base}/cmd")

    def parse(
        self, topic: str, payload: bytes, received_ns: int, *, retained: bool = False
    ) -> Decoded | Rejection:
        """Decode one inbound message; never raises.

        Args:
            topic: the topic it arrived on.
            payload: its bytes, as received.
            received_ns: arrival time (Unix epoch, ns), stamped on every Command.
            retained: the message's MQTT retain flag. Retained commands are rejected: the
                broker would hand them out again on every reconnect, and a command is never
                resumed after a restart (FACTS §7.2 step 12).
        """
        origin, asset = self._route(topic)
        if origin is None:
            return Rejection(RejectCode.BAD_TOPIC,
                             f"topic {_show(topic)} is not a desired or cmd topic of {self.base}",
                             None)
        echo: dict[str, str] = {}
        try:
            if asset is not None and asset not in self._assets:
                _reject(RejectCode.UNKNOWN_POINT, f"no configured point on asset {_show(asset)}")
            doc = self._load(payload, origin)
            _read_echo(doc, echo)
            if retained:
                _reject(RejectCode.RETAINED, "retained commands are refused; publish without "
                                             "the retain flag")
            if asset is not None:
                return self._desired(asset, doc, echo, received_ns)
            return self._command(doc, echo, received_ns)
        except _Reject as err:
            point = echo.get("point")
            if point is not None:
                asset = asset_of(point)
            return Rejection(
                err.code, err.message, origin,
                asset=asset if asset is not None and asset in self._assets else "",
                id=echo.get("id"), point=point, client_token=echo.get("client_token"),
            )

    # -- topics and JSON ---------------------------------------------------------------------

    def _route(self, topic: str) -> tuple[CommandOrigin | None, str | None]:
        """The origin a topic stands for and, for desired, its asset."""
        head, sep, rest = topic.partition(self.base + "/")
        if head or not sep:
            return None, None
        if rest == "cmd":
            return CommandOrigin.JSON_CMD, None
        asset, sep, leaf = rest.partition("/")
        if asset and sep and leaf == "desired":
            return CommandOrigin.JSON_DESIRED, asset
        return None, None

    def _load(self, payload: bytes, origin: CommandOrigin) -> dict[str, Any]:
        if len(payload) > self._max_bytes:
            _reject(RejectCode.TOO_LARGE,
                    f"payload of {len(payload)} bytes is over the {self._max_bytes} byte limit")
        try:
            doc = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicates,
                             parse_constant=_no_constant)
        except UnicodeDecodeError as err:
            _reject(RejectCode.MALFORMED_JSON, f"payload is not UTF-8: {err.reason} at byte "
                                               f"{err.start}")
        except RecursionError:
            _reject(RejectCode.MALFORMED_JSON, "payload is nested too deeply")
        except ValueError as err:  # JSONDecodeError, and integers over Python's digit limit
            _reject(RejectCode.MALFORMED_JSON, f"payload is not JSON: {err}")
        if not isinstance(doc, dict):
            _reject(RejectCode.NOT_AN_OBJECT,
                    f"payload is a JSON {_json_type(doc)}, not an object")
        allowed = _DESIRED_FIELDS if origin is CommandOrigin.JSON_DESIRED else _CMD_FIELDS
        unknown = sorted(set(doc) - allowed)
        if unknown:
            _reject(RejectCode.UNKNOWN_FIELD, f"unknown field {_show(unknown[0])}; allowed: "
                                              f"{', '.join(sorted(allowed))}")
        return doc

    # -- the two message kinds ---------------------------------------------------------------

    def _desired(
        self, asset: str, doc: dict[str, Any], echo: dict[str, str], received_ns: int
    ) -> Decoded:
        """One Command per non-null point in ``state``; nulls withdraw a pending value."""
        if "state" not in doc:
            _reject(RejectCode.MISSING_FIELD, "desired needs \"state\"")
        state = doc["state"]
        if not isinstance(state, dict):
            _reject(RejectCode.WRONG_TYPE, f"state is a JSON {_json_type(state)}, not an object")
        if len(state) > self._max_points:
            _reject(RejectCode.TOO_LARGE, f"state names {len(state)} points; at most "
                                          f"{self._max_points} per message")
        common = _common(doc)
        if common["signature"] is not None and len(state) > 1:
            # One signature covers one command; a signed desired message names one point.
            _reject(RejectCode.TOO_LARGE, f"a signed desired message names one point, this "
                                          f"one names {len(state)}")
        for name in state:
            if f"{asset}/{name}" not in self._points:
                _reject(RejectCode.UNKNOWN_POINT, f"unknown point {_show(f'{asset}/{name}')}")
        if len(state) == 1:
            echo["point"] = f"{asset}/{next(iter(state))}"
        base_id = echo.get("id") or self._new_id()
        commands: list[Command] = []
        clears: list[str] = []
        for name, raw in state.items():
            point = f"{asset}/{name}"
            if raw is None:
                clears.append(point)
                continue
            value = _value(raw, f"state.{name}")
            command_id = base_id if len(state) == 1 else f"{base_id}/{name}"
            commands.append(Command(command_id, point, value, CommandOrigin.JSON_DESIRED,
                                    received_ns, reply_to=echo.get("client_token"), **common))
        return Decoded(tuple(commands), tuple(clears))

    def _command(self, doc: dict[str, Any], echo: dict[str, str], received_ns: int) -> Decoded:
        """Exactly one Command: a select or an operate of one point."""
        for name in ("point", "value"):
            if name not in doc:
                _reject(RejectCode.MISSING_FIELD, f"cmd needs \"{name}\"")
        point = doc["point"]
        if not isinstance(point, str):
            _reject(RejectCode.WRONG_TYPE, f"point is a JSON {_json_type(point)}, not a string")
        if point not in self._points:
            _reject(RejectCode.UNKNOWN_POINT, f"unknown point {_show(point)}")
        echo["point"] = point
        if doc["value"] is None:
            _reject(RejectCode.WRONG_TYPE, "value is null; a cmd always carries a value")
        value = _value(doc["value"], "value")
        op = doc.get("op", "operate")
        if op not in _OPERATIONS:
            _reject(RejectCode.WRONG_TYPE, f"op must be \"operate\" or \"select\", not "
                                           f"{_show(str(op))}")
        command = Command(
            echo.get("id") or self._new_id(), point, value, CommandOrigin.JSON_CMD, received_ns,
            operation=op, token=_text(doc, "token", _ID), reply_to=echo.get("client_token"),
            **_common(doc),
        )
        return Decoded((command,))


# -- fields shared by both kinds -----------------------------------------------------------------

def _read_echo(doc: dict[str, Any], echo: dict[str, str]) -> None:
    """Reads the correlation fields first, so that a later rejection can still echo them."""
    if (command_id := _text(doc, "id", _ID)) is not None:
        echo["id"] = command_id
    if (token := _text(doc, "client_token", _CLIENT_TOKEN)) is not None:
        echo["client_token"] = token


def _common(doc: dict[str, Any]) -> dict[str, Any]:
    """Freshness and signature fields, as ``Command`` keyword arguments."""
    key_id = _text(doc, "key_id", _ID)
    signature = _text(doc, "sig", _BASE64)
    if signature is not None and not _SIG_CHARS[0] <= len(signature) <= _SIG_CHARS[1]:
        _reject(RejectCode.WRONG_TYPE, f"sig must be {_SIG_CHARS[0]} to {_SIG_CHARS[1]} "
                                       f"base64 characters")
    if (key_id is None) != (signature is None):
        missing = "key_id" if key_id is None else "sig"
        _reject(RejectCode.MISSING_FIELD, f"a signed message needs both sig and key_id; "
                                          f"{missing} is missing")
    return {"issued_at_ms": _ms(doc, "issued_at"), "expires_at_ms": _ms(doc, "expires_at"),
            "key_id": key_id, "signature": signature}


def _text(doc: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str | None:
    """An optional string field that must match ``pattern`` whole."""
    if key not in doc:
        return None
    text = doc[key]
    if not isinstance(text, str):
        _reject(RejectCode.WRONG_TYPE, f"{key} is a JSON {_json_type(text)}, not a string")
    if pattern.fullmatch(text) is None:
        _reject(RejectCode.WRONG_TYPE, f"{key} {_show(text)} does not match {pattern.pattern}")
    return text


def _ms(doc: dict[str, Any], key: str) -> int | None:
    """An optional time in ms since the epoch; ``1.7e12`` counts, as JSON Schema's integer."""
    if key not in doc:
        return None
    ms = doc[key]
    if isinstance(ms, float) and ms.is_integer():
        ms = int(ms)
    if not isinstance(ms, int) or isinstance(ms, bool):
        _reject(RejectCode.WRONG_TYPE, f"{key} is a JSON {_json_type(ms)}, not an integer "
                                       f"(ms since the epoch)")
    if not 0 <= ms <= _MAX_MS:
        _reject(RejectCode.WRONG_TYPE, f"{key} {ms} is outside 0..{_MAX_MS} ms")
    return ms


def _value(raw: object, where: str) -> Value:
    """A point value: bool, int, finite float or a bounded string; never a container."""
    if isinstance(raw, bool | int):
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):  # "1e400" parses to inf
            _reject(RejectCode.WRONG_TYPE, f"{where} is not a finite number")
        return raw
    if isinstance(raw, str):
        if len(raw) > MAX_TEXT_VALUE:
            _reject(RejectCode.WRONG_TYPE, f"{where} is a string of {len(raw)} characters; "
                                           f"at most {MAX_TEXT_VALUE}")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
            _reject(RejectCode.WRONG_TYPE, f"{where} is not valid Unicode text")
        return raw
    _reject(RejectCode.WRONG_TYPE,
            f"{where} is a JSON {_json_type(raw)}; values are booleans, numbers or strings")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuses duplicate keys: parsers disagree on which one wins, and a signer may see another."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                _reject(RejectCode.MALFORMED_JSON, f"duplicate key {_show(key)}")
            seen.add(key)
    return doc


def _no_constant(name: str) -> NoReturn:
    _reject(RejectCode.MALFORMED_JSON, f"{name} is not JSON")
