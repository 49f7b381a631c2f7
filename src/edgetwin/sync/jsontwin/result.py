"""The ``cmd/result`` answers, as outbox records, so they survive an outage like everything else.

Every command gets exactly one answer: its verdict, or the decoder's rejection of the message
it came in. The encoder publishes the record as
``{"seq", "ts", "asset", "id", "point", "accepted", "reason", ...}`` on ``cmd/result``.
"""

from __future__ import annotations

import math
from typing import Any

from edgetwin.core.types import Command, Record, RecordKind, Verdict, asset_of
from edgetwin.sync.jsontwin.inbound import Rejection


def command_result(command: Command, verdict: Verdict, ts_ns: int) -> Record:
    """The answer to one decoded command: the policy's verdict on it.

    Args:
        command: the command, as decoded.
        verdict: the safety policy's verdict.
        ts_ns: when the verdict was given (Unix epoch, ns); published as ``ts`` in ms.
    """
    value = command.value
    if isinstance(value, float) and not math.isfinite(value):
        value = None  # JSON has no NaN; only a Sparkplug command can carry one
    body: dict[str, Any] = {
        "id": command.id,
        "point": command.point,
        "value": value,
        "op": command.operation,
        "origin": command.origin.value,
        "accepted": verdict.accepted,
        "reason": verdict.reason,
    }
    if command.reply_to is not None:
        body["client_token"] = command.reply_to
    return Record(RecordKind.COMMAND_RESULT, asset_of(command.point), ts_ns, body)


def rejection_result(rejection: Rejection, ts_ns: int) -> Record:
    """The answer to a message the decoder rejected; ``id`` and ``point`` are null if unread.

    Args:
        rejection: the decoder's rejection.
        ts_ns: when it was rejected (Unix epoch, ns); published as ``ts`` in ms.
    """
    body: dict[str, Any] = {
        "id": rejection.id,
        "point": rejection.point,
        "origin": None if rejection.origin is None else rejection.origin.value,
        "accepted": False,
        "reason": rejection.message,
        "error_code": rejection.code.value,
    }
    if rejection.client_token is not None:
        body["client_token"] = rejection.client_token
    return Record(RecordKind.COMMAND_RESULT, rejection.asset, ts_ns, body)
