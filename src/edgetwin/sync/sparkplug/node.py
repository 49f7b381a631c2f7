"""The Sparkplug B edge node: births, data, deaths, seq and bdSeq, aliases, inbound commands.

Pure state machine: it builds ``MqttMessage`` values and interprets inbound payloads; the
session does the I/O. One instance per gateway process.

Invariants (FACTS 1.2-1.8, conformance ids in brackets):
- every message from the node after NBIRTH carries seq = previous + 1 mod 256, NBIRTH
  carries 0 [tck-id-topics-nbirth-seq-num, tck-id-payloads-sequence-num-incrementing];
- the NBIRTH's bdSeq equals the one in the Will of the CONNECT that opened the session; a
  rebirth keeps it; each new CONNECT takes the next one, kept in ``state_dir`` so a restart
  never repeats the previous session's [tck-id-topics-nbirth-bdseq-matching];
- DATA goes out only for devices whose DBIRTH went out in this session, with aliases only
  [tck-id-payloads-alias-data-cmd-requirement]; a value whose type no longer fits its birth
  datatype triggers a new DBIRTH first;
- DATA and births are QoS 0, not retained; NDEATH is the Will at QoS 1
  [tck-id-topics-ndata-mqtt, tck-id-payloads-ndeath-will-message-qos].
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from edgetwin import __version__
from edgetwin.core.counter import overwrite_in_place
from edgetwin.core.ports import TwinView
from edgetwin.core.types import Command, CommandOrigin, Delta, PointState, Quality, asset_of
from edgetwin.sync.message import MqttMessage
from edgetwin.sync.sparkplug.sparkplug_b_pb2 import Payload
from edgetwin.sync.sparkplug.values import (
    DataType,
    datatype_of,
    fits,
    get_value,
    set_quality,
    set_value,
)

log = structlog.get_logger("edgetwin.sync")

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"
BDSEQ_FILE = "sparkplug.bdseq"
DEFAULT_TYPE = DataType.DOUBLE  # a point with no value yet; a later value of another type rebirths


class BadCommand(ValueError):
    """An inbound NCMD/DCMD that cannot be used; ``code`` is a short stable label."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Inbound:
    """What an NCMD or DCMD asks for: a rebirth, and/or writes."""

    rebirth: bool = False
    commands: list[Command] = field(default_factory=list)
    problems: list[BadCommand] = field(default_factory=list)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class EdgeNode:
    """Builds the node's Sparkplug messages from the twin and decodes what comes in."""

    def __init__(self, group: str, node: str, points: Iterable[str], twin: TwinView,
                 state_dir: Path) -> None:
        """``points``: every configured point id; their aliases are fixed by sorted order."""
        self.group = group
        self.node = node
        self._twin = twin
        self._bdseq_path = state_dir / BDSEQ_FILE
        ordered = sorted(points)
        self.alias = {pid: n for n, pid in enumerate(ordered, start=1)}
        self._by_alias = {n: pid for pid, n in self.alias.items()}
        self.assets = sorted({asset_of(p) for p in ordered})
        self._points_of = {a: [p for p in ordered if asset_of(p) == a] for a in self.assets}
        self.bdseq = self._load_bdseq()
        self._seq = 0
        self._born: dict[str, dict[str, DataType]] = {}  # asset -> point -> birth datatype
        # asset -> point -> the twin version its birth carried: DATA skips what it repeats
        self._birth_versions: dict[str, dict[str, int]] = {}
        self._dead: set[str] = set()

    # -- topics -----------------------------------------------------------------------------

    def topic(self, kind: str, device: str | None = None) -> str:
        """``spBv1.0/<group>/<kind>/<node>[/<device>]``."""
        base = f"{NAMESPACE}/{self.group}/{kind}/{self.node}"
        return base if device is None else f"{base}/{device}"

    def is_command_topic(self, topic: str) -> bool:
        """An NCMD for this node or a DCMD for one of its devices."""
        return topic == self.topic("NCMD") or topic.startswith(self.topic("DCMD") + "/")

    def command_topics(self) -> list[str]:
        """What to subscribe to (QoS 1) before NBIRTH: NCMD and every device's DCMD."""
        return [self.topic("NCMD"), self.topic("DCMD", "+")]

    # -- session life -----------------------------------------------------------------------

    def next_will(self) -> MqttMessage:
        """The NDEATH for the next CONNECT, with the next bdSeq (kept on disk first)."""
        self.bdseq = (self.bdseq + 1) % 256
        # Fixed width, overwritten in place: a full disk must not keep the node off the
        # broker (the HIL disk-full scenario found reconnects waiting for free space).
        overwrite_in_place(self._bdseq_path, f"{self.bdseq:03d}\n".encode())
        return self.death_certificate()

    def death_certificate(self) -> MqttMessage:
        """NDEATH with the current bdSeq: the Will, and what a clean stop sends first."""
        payload = Payload()
        payload.timestamp = _now_ms()
        metric = payload.metrics.add()
        metric.name = BDSEQ
        metric.timestamp = payload.timestamp
        metric.datatype = DataType.INT64
        metric.long_value = self.bdseq
        return MqttMessage(self.topic("NDEATH"), payload.SerializeToString(), qos=1)

    def births(self, alive: Mapping[str, bool] | None = None) -> list[MqttMessage]:
        """NBIRTH (seq 0) and a DBIRTH for every live device, in that order."""
        self._seq = 0
        self._born.clear()
        self._dead = {a for a in self.assets if alive is not None and not alive.get(a, True)}
        messages = [self._nbirth()]
        messages += [self._dbirth(a) for a in self.assets if a not in self._dead]
        return messages

    def _nbirth(self) -> MqttMessage:
        payload = Payload()
        payload.timestamp = _now_ms()
        payload.seq = 0
        for name, datatype, value in (
            (BDSEQ, DataType.INT64, self.bdseq),
            (REBIRTH, DataType.BOOLEAN, False),
            ("Properties/Software", DataType.STRING, f"edgetwin {__version__}"),
            ("Properties/Devices", DataType.INT64, len(self.assets)),
        ):
            metric = payload.metrics.add()
            metric.name = name
            metric.timestamp = payload.timestamp
            metric.datatype = datatype
            set_value(metric, datatype, value)
        return MqttMessage(self.topic("NBIRTH"), payload.SerializeToString(), qos=0)

    def _dbirth(self, asset: str) -> MqttMessage:
        payload = Payload()
        payload.timestamp = _now_ms()
        payload.seq = self._next_seq()
        state = self._twin.asset_state(asset)
        types: dict[str, DataType] = {}
        versions: dict[str, int] = {}
        for pid in self._points_of[asset]:
            name = pid.partition("/")[2]
            point = state.get(name)
            value = None if point is None else point.value
            datatype = datatype_of(value) or DEFAULT_TYPE
            types[name] = datatype
            if point is not None:
                versions[name] = point.version
            metric = payload.metrics.add()
            metric.name = name
            metric.alias = self.alias[pid]
            metric.timestamp = (point.ts_ns // 1_000_000) if point else payload.timestamp
            metric.datatype = datatype
            set_value(metric, datatype, value)
            set_quality(metric, point.quality if point else Quality.BAD)
        self._born[asset] = types
        self._birth_versions[asset] = versions
        self._dead.discard(asset)
        return MqttMessage(self.topic("DBIRTH", asset), payload.SerializeToString(), qos=0)

    def device_death(self, asset: str) -> MqttMessage | None:
        """DDEATH for a device whose source went down (None if it is not alive)."""
        if asset not in self._born:
            return None
        del self._born[asset]
        self._dead.add(asset)
        payload = Payload()
        payload.timestamp = _now_ms()
        payload.seq = self._next_seq()
        return MqttMessage(self.topic("DDEATH", asset), payload.SerializeToString(), qos=0)

    def device_birth(self, asset: str) -> MqttMessage | None:
        """DBIRTH for a device that came back (None if it is already alive)."""
        if asset in self._born or asset not in self._points_of:
            return None
        return self._dbirth(asset)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    # -- data -------------------------------------------------------------------------------

    def data(self, delta: Delta, *, historical: bool = False) -> list[MqttMessage]:
        """DDATA for one delta (preceded by a DBIRTH when a value outgrew its datatype).

        Nothing for a device that is dead or unknown: its host shows it stale until the
        next DBIRTH, which carries the current values. Live changes the device's birth
        already carried are left out [tck-id-topics-ddata-payload]; history is kept.
        """
        types = self._born.get(delta.asset)
        if types is None:
            return []
        out: list[MqttMessage] = []
        if any(not fits(types.get(name, DEFAULT_TYPE), s.value)
               for name, s in delta.changes.items() if name in types):
            out.append(self._dbirth(delta.asset))
            types = self._born[delta.asset]
        born = self._birth_versions.get(delta.asset, {})
        prefix = delta.asset + "/"
        changes = [
            (self.alias[prefix + name], types[name], state)
            for name, state in sorted(delta.changes.items(), key=lambda kv: kv[1].ts_ns)
            if name in types and prefix + name in self.alias
            and (historical or state.version > born.get(name, -1))
        ]
        if not changes:
            return out
        payload = Payload()
        payload.timestamp = _now_ms()
        payload.seq = self._next_seq()
        for alias, datatype, state in changes:
            self._add_data_metric(payload, alias, datatype, state, historical)
        out.append(MqttMessage(self.topic("DDATA", delta.asset), payload.SerializeToString(),
                               qos=0))
        return out

    @staticmethod
    def _add_data_metric(payload: Payload, alias: int, datatype: DataType, state: PointState,
                         historical: bool) -> None:
        metric = payload.metrics.add()
        metric.alias = alias
        metric.timestamp = state.ts_ns // 1_000_000
        if historical:
            metric.is_historical = True
        set_value(metric, datatype, state.value if fits(datatype, state.value) else None)
        set_quality(metric, state.quality)

    # -- inbound ----------------------------------------------------------------------------

    def inbound(self, topic: str, raw: bytes, received_ns: int | None = None) -> Inbound:
        """Decode an NCMD or DCMD into a rebirth request and/or Commands.

        Raises:
            BadCommand: the whole message is unusable (malformed protobuf, wrong topic).
        """
        received_ns = time.time_ns() if received_ns is None else received_ns
        parts = topic.split("/")
        if len(parts) not in (4, 5) or parts[2] not in ("NCMD", "DCMD"):
            raise BadCommand("unknown_topic", f"not a command topic: {topic}")
        kind, device = parts[2], (parts[4] if len(parts) == 5 else None)
        payload = Payload()
        try:
            payload.ParseFromString(raw)
        except Exception as err:  # protobuf raises its own DecodeError; any failure is one
            raise BadCommand("malformed_payload", f"{kind} is not a Sparkplug payload: {err}") \
                from err
        result = Inbound()
        for index, metric in enumerate(payload.metrics):
            try:
                self._one_command(kind, device, index, metric, payload, received_ns, result)
            except BadCommand as problem:
                result.problems.append(problem)
        return result

    def _one_command(self, kind: str, device: str | None, index: int, metric: Payload.Metric,
                     payload: Payload, received_ns: int, result: Inbound) -> None:
        if kind == "NCMD" and metric.name == REBIRTH:
            if not metric.HasField("boolean_value"):
                raise BadCommand("wrong_type", f"{REBIRTH} must be a Boolean")
            result.rebirth = result.rebirth or metric.boolean_value
            return
        pid = self._point_of(metric, device)
        asset = asset_of(pid)
        types = self._born.get(asset, {})
        name = pid.partition("/")[2]
        datatype = DataType(metric.datatype) if metric.HasField("datatype") and \
            metric.datatype in DataType._value2member_map_ else types.get(name)
        if datatype is None:
            raise BadCommand("unknown_datatype", f"{pid}: no datatype given or known")
        try:
            value = get_value(metric, datatype)
        except ValueError as err:
            raise BadCommand("wrong_type", f"{pid}: {err}") from err
        stamp = metric.timestamp if metric.HasField("timestamp") else payload.timestamp
        command_id = f"spb-{self.node}-{received_ns}-{index}"
        result.commands.append(Command(
            command_id, pid, value,
            CommandOrigin.SPARKPLUG_DCMD if kind == "DCMD" else CommandOrigin.SPARKPLUG_NCMD,
            received_ns, issued_at_ms=stamp or None,
        ))

    def _point_of(self, metric: Payload.Metric, device: str | None) -> str:
        if metric.HasField("alias"):
            pid = self._by_alias.get(metric.alias)
            if pid is None:
                raise BadCommand("unknown_alias", f"alias {metric.alias} is not in any birth")
        elif metric.name:
            pid = f"{device}/{metric.name}" if device else metric.name
        else:
            raise BadCommand("missing_name", "a metric with neither name nor alias")
        if pid not in self.alias:
            raise BadCommand("unknown_point", f"{pid} is not a point of this node")
        if device is not None and asset_of(pid) != device:
            raise BadCommand("wrong_device", f"{pid} does not belong to device {device}")
        return pid

    # -- helpers ----------------------------------------------------------------------------

    def born(self) -> Sequence[str]:
        """Devices alive in this session."""
        return sorted(self._born)

    def _load_bdseq(self) -> int:
        """The last bdSeq used; the next CONNECT takes the one after it."""
        try:
            return int(self._bdseq_path.read_text().strip()) % 256
        except (FileNotFoundError, ValueError):
            return 255  # the first CONNECT then uses 0, as the specification starts
        except OSError as err:  # unreadable: start as a new node would, and say so
            log.error("Sparkplug bdSeq unreadable; starting from 0", path=str(self._bdseq_path),
                      error=str(err))
            return 255

    @staticmethod
    def decode(raw: bytes) -> Payload:
        """Parse a payload (for tests and tools)."""
        payload = Payload()
        payload.ParseFromString(raw)
        return payload
