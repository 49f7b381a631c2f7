"""Core value types that move between stages: samples in, twin state and deltas out."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A waveform travels as a numpy array; core stays free of numpy, so it is typed loosely.
Value = bool | int | float | str | Any


class Quality(enum.Enum):
    """How far a value can be trusted; OPC UA status codes and Modbus exceptions map onto it."""

    GOOD = "GOOD"
    UNCERTAIN = "UNCERTAIN"
    STALE = "STALE"  # last known value; the source missed its refresh deadline
    BAD = "BAD"  # no usable value: no answer, exception code, NaN, out of range


def asset_of(point: str) -> str:
    """Asset part of a point id: ``"pump1/motor_temp"`` -> ``"pump1"``."""
    return point.partition("/")[0]


def point_name_of(point: str) -> str:
    """Point part of a point id: ``"pump1/motor_temp"`` -> ``"motor_temp"``."""
    return point.partition("/")[2]


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one point, as a source produced it."""

    point: str  # "<asset>/<point>", e.g. "pump1/motor_temp"
    value: Value | None  # None only when quality is BAD
    quality: Quality
    ts_ns: int  # device timestamp if it has one, else read time (Unix epoch, ns)


@dataclass(frozen=True, slots=True)
class PointSpec:
    """What the twin needs to know about a configured point, whatever its source."""

    point: str
    source: str
    deadband: float = 0.0  # absolute; 0 reports every change
    stale_after_s: float | None = None
    unit: str | None = None
    writable: bool = False


@dataclass(frozen=True, slots=True)
class PointState:
    """The twin's view of one point: last reported value, its time, quality and version."""

    value: Value | None
    ts_ns: int
    quality: Quality
    version: int  # gateway-wide change counter at the time of this change; only grows


@dataclass(frozen=True, slots=True)
class Delta:
    """The points of one asset that changed together, with the asset's version after the change.

    ``changes`` maps the point name within the asset (``"motor_temp"``) to its new state.
    """

    asset: str
    version: int
    ts_ns: int
    changes: Mapping[str, PointState]


class RecordKind(enum.Enum):
    """Messages that are not twin deltas; each has its own topic and outlives data when full."""

    ALARM = "alarm"
    COMMAND_RESULT = "command_result"
    AUDIT = "audit"


@dataclass(frozen=True, slots=True)
class Record:
    """An alarm, command result or audit record on its way to the broker.

    ``body`` holds JSON-able values only; ``asset`` is ``""`` for gateway-wide records.
    """

    kind: RecordKind
    asset: str
    ts_ns: int
    body: Mapping[str, Any]


Item = Delta | Record
"""What the outbox carries."""


class Priority(enum.IntEnum):
    """Eviction order when the buffer is full: the lowest goes first."""

    DATA = 0
    ALARM = 1
    COMMAND = 2  # command results and audit records: a safety trail is never dropped first


def priority_of(item: Item) -> Priority:
    """Deltas are data; alarms, command results and audit records are evicted last."""
    if isinstance(item, Delta):
        return Priority.DATA
    return Priority.ALARM if item.kind is RecordKind.ALARM else Priority.COMMAND


class Delivery(enum.Enum):
    """Outcome of one delivery attempt of an outbox entry."""

    DELIVERED = "delivered"  # the broker confirmed it; the entry is gone
    RETRY = "retry"  # not confirmed; it goes out again, in order
    REJECTED = "rejected"  # can never be delivered (too large, cannot encode); dead-lettered
    # Written to the socket at QoS 0 (Sparkplug DATA): no ack will come, so the entry is kept
    # for the outbox's hold window and replayed as history if the link drops within it.
    SENT = "sent"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An item with the gateway-wide message sequence the outbox gave it."""

    seq: int  # per gateway; only grows, so a consumer can drop duplicates
    item: Item
    historical: bool = False  # a replay of the backlog, not live data


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What became of one ``Source.write``: confirmed by a read-back, or refused with why."""

    ok: bool  # True only when the value read back after the write equals what was written
    reason: str | None = None  # why not, e.g. "read-back 1449 != written 1450", "timeout"
    read_back: Value | None = None


class CommandOrigin(enum.Enum):
    """Where a command came from: the topic family it arrived on."""

    SPARKPLUG_DCMD = "sparkplug/DCMD"
    SPARKPLUG_NCMD = "sparkplug/NCMD"
    JSON_DESIRED = "json/desired"
    JSON_CMD = "json/cmd"


@dataclass(frozen=True, slots=True)
class Command:
    """A request to write one point, exactly as it arrived; the safety policy decides.

    Sync only decodes and routes: nothing here has been checked beyond its shape.
    """

    id: str  # the sender's command id; one is made up for protocols without ids
    point: str  # "<asset>/<point>"
    value: Value
    origin: CommandOrigin
    received_ns: int
    issued_at_ms: int | None = None
    expires_at_ms: int | None = None
    key_id: str | None = None
    signature: str | None = None  # base64 Ed25519 signature over the canonical command
    operation: str = "operate"  # "select" or "operate" (select-before-operate)
    token: str | None = None  # the select token an operate refers to
    reply_to: str | None = None  # correlation the sender asked to have echoed


@dataclass(frozen=True, slots=True)
class Verdict:
    """The one answer every command gets."""

    accepted: bool
    reason: str
