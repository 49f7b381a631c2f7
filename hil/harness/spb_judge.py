"""Judge a recorded Sparkplug B stream from the outside, with pysparkplug's decoding of it.

Why: the bench must say whether a gateway's Sparkplug output survives broker restarts,
network cuts, SIGKILL, graceful restarts, PLC link loss and clock jumps, and it must say so
for any gateway. So this judge imports nothing from edgetwin: the recording
(``data/messages.jsonl``, see ``hil/README.md``) goes through
``hil/interop/decode_sparkplug.py`` in the interop venv, and every rule below reads only
what that independent decoder made of each message, the way a Sparkplug host would.

Rules, each counted in ``figures["violations"]`` under its key (FACTS.md §1 rule ids):

- ``undecodable``: pysparkplug could not decode the message (its ``error`` is set).
- ``timestamp``: a payload timestamp on NBIRTH, DBIRTH, NDATA, DDATA and DDEATH, and a metric
  timestamp on every birth and data metric [tck-id-payloads-name-birth-data-requirement].
- ``nbirth_seq``: an NBIRTH has seq 0 [tck-id-topics-nbirth-seq-num].
- ``nbirth_bdseq``: an NBIRTH has an Int64 ``bdSeq`` metric [tck-id-topics-nbirth-bdseq-included].
- ``rebirth_metric``: an NBIRTH has ``Node Control/Rebirth``, Boolean, false, no alias
  [tck-id-topics-nbirth-rebirth-metric,
  tck-id-operational-behavior-data-commands-rebirth-name-aliases].
- ``ndeath_bdseq``: an NDEATH holds only the ``bdSeq`` metric [tck-id-topics-ndeath-payload],
  equal to the bdSeq of the last NBIRTH, whose session it ends (the Will of that CONNECT,
  [tck-id-topics-nbirth-bdseq-matching]); an NDEATH before the recording's first NBIRTH
  ends a session the recording never saw and is not compared.
- ``ndeath_seq``: an NDEATH carries no seq [tck-id-payloads-ndeath-seq].
- ``bdseq_reused``: an NBIRTH after an NDEATH does not reuse the ended session's bdSeq
  [tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq]. An NBIRTH with
  no NDEATH before it may repeat it: that is a rebirth
  [tck-id-operational-behavior-data-commands-rebirth-action-3].
- ``seq_gap`` / ``seq_missing``: within a session (an NBIRTH until the NDEATH or the next
  NBIRTH) every NBIRTH, DBIRTH, NDATA, DDATA and DDEATH carries a seq, one more (mod 256)
  than the message before [tck-id-payloads-sequence-num-incrementing].
- ``outside_session``: DBIRTH, NDATA, DDATA and DDEATH only between an NBIRTH and its end
  [tck-id-payloads-dbirth-order].
- ``ddata_before_dbirth`` / ``ddata_after_ddeath`` / ``ddeath_without_dbirth``: a device's
  DDATA only while it is born in the session, its DDEATH only then
  [tck-id-payloads-dbirth-order, tck-id-operational-behavior-device-ddeath].
- ``unknown_metric``: every DATA metric names (by alias or by name) a metric of its birth
  [tck-id-topics-nbirth-metric-reqs].
- ``alias_not_used``: a DATA metric whose birth gave it an alias carries the alias only
  [tck-id-payloads-alias-data-cmd-requirement].
- ``datatype_mismatch``: a DATA metric decodes to its birth's datatype, its value in that
  datatype's field (FACTS.md §1.3, DataType table).
- ``qos`` / ``retained``: births, data and DDEATH at QoS 0, NDEATH at QoS 1, none retained
  [tck-id-topics-nbirth-mqtt, -dbirth-mqtt, -ndata-mqtt, -ddata-mqtt, -ddeath-mqtt,
  tck-id-payloads-ndeath-will-message-qos, -retain].

A message counts at most once per rule, and a decoding error once, under the rule about its
cause when there is one (no timestamp, an alias the birth lacks, DATA of an unborn device).
The figures also give the messages by type, the sessions (NBIRTHs), their bdSeq values,
the tolerated gaps and unrecorded births, and the count of ``is_historical`` metrics.

The recorder is a witness that can be away (a broker outage). A seq gap, a session or a
device birth the recording lacks is tolerated, and counted apart, when the stretch in which
the missing message was sent (from the last message in order until the one that shows the
gap) overlaps an outage window widened by ``OUTAGE_TOLERANCE_S``; the judge then carries on
from what it sees.

Known limits, checked nowhere else either:

- The recorder receives ``min(publish QoS, 1)``, so an NDEATH at QoS 2 looks like QoS 1.
- MQTT 3.1.1 clears the retain flag on live delivery; a retained message shows ``retain``
  only when the broker replays it on a (re)subscribe. Such a replay is counted and then
  left out of the session checks: it is not a new publication.
- Whether an NBIRTH without an NDEATH before it is a rebirth (same bdSeq allowed) or a
  reconnect whose Will never reached the recorder cannot be told apart; only a changed
  bdSeq after an observed NDEATH is required.
- The Sparkplug payload is not checked for what the spec leaves to the host (alias
  uniqueness across devices, DBIRTHs before the first DATA, chronological metric order).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NamedTuple, cast

from hil.harness.outcome import Outcome

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

SEQ_MODULO = 256  # seq wraps 255 -> 0 [tck-id-payloads-sequence-num-incrementing]
OUTAGE_TOLERANCE_S = 2.0  # an outage window counts this much earlier and later
EXAMPLES_PER_RULE = 5
BDSEQ_FIGURE_LIMIT = 20
BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"

_NODE_KINDS = frozenset({"NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA"})
_SEQUENCED = frozenset({"NBIRTH", "DBIRTH", "NDATA", "DDATA", "DDEATH"})
_TIMESTAMPED = _SEQUENCED  # payload timestamps; NDEATH (a Will written at CONNECT) may lack one
_BIRTHS = frozenset({"NBIRTH", "DBIRTH"})
_DATA = frozenset({"NDATA", "DDATA"})
_NODE = 3  # spBv1.0/<group>/<message type>/<edge node>[/<device>]


class SparkplugDecoderError(RuntimeError):
    """The independent decoder failed, or its answer does not line up with its input."""


class _Born(NamedTuple):
    """One metric as a birth declared it."""

    name: str
    alias: int | None
    datatype: str


@dataclass
class _Birth:
    """The metrics of one NBIRTH or DBIRTH, by alias and by name."""

    by_alias: dict[int, _Born] = field(default_factory=dict)
    by_name: dict[str, _Born] = field(default_factory=dict)

    @classmethod
    def of(cls, decoded: dict[str, Any]) -> _Birth:
        """The birth declared by a decoded NBIRTH or DBIRTH."""
        birth = cls()
        for metric in decoded["metrics"]:
            born = _Born(metric["name"], metric["alias"], metric["datatype"])
            birth.by_name[born.name] = born
            if born.alias is not None:
                birth.by_alias[born.alias] = born
        return birth


@dataclass
class _Device:
    """A device within a session: its birth (None when undecodable or unseen) and state."""

    birth: _Birth | None
    alive: bool
    t_last: float


@dataclass
class _Session:
    """One node session as seen: from an NBIRTH, or adopted after the recorder was away."""

    t_start: float
    t_last: float
    expected_seq: int | None  # None: not known (an undecodable message), take the next
    node_birth: _Birth | None
    devices: dict[str, _Device] = field(default_factory=dict)
    observed: bool = True  # False: the NBIRTH fell in an outage; its births are unknown


class _Judge:
    """Walks the decoded messages of one node in order, keeping what a host would know."""

    def __init__(self, outages: Sequence[tuple[float, float]]) -> None:
        self.outages = [(start - OUTAGE_TOLERANCE_S, end + OUTAGE_TOLERANCE_S)
                        for start, end in outages]
        self.messages = 0
        self.by_type: Counter[str] = Counter()
        self.violations: Counter[str] = Counter()
        self.examples: dict[str, list[dict[str, Any]]] = {}
        self.tolerated_gaps = 0
        self.tolerated_unobserved = 0
        self.historical = 0
        self.bdseqs: list[int | None] = []
        self.session: _Session | None = None
        self.births_seen = False
        self.last_birth_bdseq: int | None = None  # None: none yet, or not known
        self.ended_bdseq: int | None = None  # the bdSeq of the session the last NDEATH ended
        self.t_node_last: float | None = None
        self._t = 0.0
        self._topic = ""

    # -- bookkeeping --------------------------------------------------------------------

    def flag(self, rule: str, what: str) -> None:
        """Count one message breaking ``rule``; keep the first few as examples."""
        self.violations[rule] += 1
        examples = self.examples.setdefault(rule, [])
        if len(examples) < EXAMPLES_PER_RULE:
            examples.append({"t": round(self._t, 3), "topic": self._topic, "what": what})

    def flag_first(self, findings: dict[str, list[str]]) -> None:
        """Flag each rule once for a message, naming its first finding."""
        for rule, whats in findings.items():
            more = f" (and {len(whats) - 1} more)" if len(whats) > 1 else ""
            self.flag(rule, whats[0] + more)

    def in_outage(self, since: float | None, until: float) -> bool:
        """Whether a message sent after ``since`` and before ``until`` may have been lost."""
        start = until if since is None else since
        return any(start <= end and until >= begin for begin, end in self.outages)

    # -- the walk -----------------------------------------------------------------------

    def feed(self, t: float, decoded: dict[str, Any]) -> None:
        """Judge one decoded message, recorded at ``t``."""
        self._t, self._topic = t, decoded["topic"]
        self.messages += 1
        kind: str | None = decoded["message_type"]
        self.by_type[kind or "unparsed"] += 1
        self.historical += sum(1 for m in decoded["metrics"] if m["is_historical"])
        if kind is None:
            self.flag("undecodable", str(decoded["error"]))
            return
        if kind not in _NODE_KINDS:
            return  # NCMD, DCMD: the host's messages, counted only
        if not self.check_transport(kind, decoded):
            return
        self.check_wire(kind, decoded)
        if kind == "NBIRTH":
            self.nbirth(decoded)
        elif kind == "NDEATH":
            self.ndeath(decoded)
        else:
            self.in_session(kind, decoded)
        self.t_node_last = t

    def check_transport(self, kind: str, decoded: dict[str, Any]) -> bool:
        """QoS and retain; False for a retained replay, which is no new publication."""
        want = 1 if kind == "NDEATH" else 0
        if decoded["qos"] != want:
            self.flag("qos", f"{kind} arrived at QoS {decoded['qos']}, expected {want}")
        if decoded["retain"]:
            self.flag("retained", f"{kind} was retained")
            return False
        return True

    def check_wire(self, kind: str, decoded: dict[str, Any]) -> None:
        """Payload timestamp and seq presence, read from the wire even when decoding failed."""
        wire = decoded["wire"]
        if wire is None:
            return
        if kind in _TIMESTAMPED and not wire["timestamp"]:
            self.flag("timestamp", f"{kind} payload has no timestamp")
        if kind in _SEQUENCED and not wire["seq"]:
            self.flag("seq_missing", f"{kind} payload has no seq")
        if kind == "NDEATH" and wire["seq"]:
            self.flag("ndeath_seq", "NDEATH payload carries a seq")
        if decoded["error"] is None and kind in _BIRTHS | _DATA:
            missing = [_label(m) for m in decoded["metrics"] if m["timestamp"] is None]
            if missing:
                self.flag_first({"timestamp": [f"metric {name} has no timestamp"
                                               for name in missing]})

    def explained(self, kind: str, decoded: dict[str, Any]) -> bool:
        """Whether a decoding error is already counted under a rule about its cause."""
        wire = decoded["wire"]
        return wire is not None and (
            (kind in _TIMESTAMPED and not wire["timestamp"])
            or (kind in _SEQUENCED and not wire["seq"]))

    def nbirth(self, decoded: dict[str, Any]) -> None:
        """A new session: seq 0, bdSeq, the Rebirth metric, and bdSeq not reused."""
        error = decoded["error"]
        bdseq: int | None = None
        if error is not None:
            if not self.explained("NBIRTH", decoded):
                self.flag("undecodable", error)
        else:
            if decoded["seq"] != 0:
                self.flag("nbirth_seq", f"NBIRTH seq {decoded['seq']}")
            bdseq = self.check_bdseq_metric(decoded)
            self.check_rebirth_metric(decoded)
        if (self.session is None and bdseq is not None and self.ended_bdseq is not None
                and bdseq == self.ended_bdseq):
            self.flag("bdseq_reused", f"NBIRTH after NDEATH reuses bdSeq {bdseq}")
        self.bdseqs.append(bdseq)
        self.births_seen = True
        self.last_birth_bdseq = bdseq
        seq = decoded["seq"]
        self.session = _Session(
            t_start=self._t, t_last=self._t,
            expected_seq=None if seq is None else (seq + 1) % SEQ_MODULO,
            node_birth=_Birth.of(decoded) if error is None else None)

    def check_bdseq_metric(self, decoded: dict[str, Any]) -> int | None:
        """The NBIRTH's bdSeq value, flagging a missing or mistyped metric."""
        metric = _metric_named(decoded, BDSEQ)
        if metric is None:
            self.flag("nbirth_bdseq", "NBIRTH has no bdSeq metric")
            return None
        value = metric["value"]
        if metric["datatype"] != "INT64" or not _is_int(value):
            self.flag("nbirth_bdseq", f"bdSeq is {metric['datatype']} {value!r}, not an Int64")
        return value if _is_int(value) else None

    def check_rebirth_metric(self, decoded: dict[str, Any]) -> None:
        """``Node Control/Rebirth``: present, Boolean, false, without an alias."""
        metric = _metric_named(decoded, REBIRTH)
        if metric is None:
            self.flag("rebirth_metric", f"NBIRTH has no {REBIRTH} metric")
        elif (metric["datatype"] != "BOOLEAN" or metric["value"] is not False
              or metric["alias"] is not None):
            self.flag("rebirth_metric", f"{REBIRTH} is {metric['datatype']} "
                      f"{metric['value']!r} with alias {metric['alias']}")

    def ndeath(self, decoded: dict[str, Any]) -> None:
        """The end of a session: only a bdSeq metric, equal to the last NBIRTH's."""
        bdseq: int | None = None
        wire = decoded["wire"]
        if decoded["error"] is not None:
            if wire is not None and wire["metrics"] == 0:
                self.flag("ndeath_bdseq", "NDEATH has no metrics, so no bdSeq")
            else:
                self.flag("undecodable", decoded["error"])
        else:
            metrics = decoded["metrics"]
            names = [m["name"] for m in metrics]
            if wire["metrics"] != 1 or names != [BDSEQ] or not _is_int(metrics[0]["value"]):
                self.flag("ndeath_bdseq",
                          f"NDEATH carries {wire['metrics']} metric(s) {names}, not one bdSeq")
            else:
                bdseq = metrics[0]["value"]
                self.check_ndeath_matches(bdseq)
        self.ended_bdseq = bdseq if bdseq is not None else self.last_birth_bdseq
        self.session = None

    def check_ndeath_matches(self, bdseq: int) -> None:
        """The NDEATH's bdSeq against the last NBIRTH's, when both are known."""
        if not self.births_seen or self.last_birth_bdseq is None:
            return  # before the first NBIRTH, or after one the recorder missed
        if bdseq != self.last_birth_bdseq:
            self.flag("ndeath_bdseq",
                      f"NDEATH bdSeq {bdseq}, the last NBIRTH had {self.last_birth_bdseq}")

    def in_session(self, kind: str, decoded: dict[str, Any]) -> None:
        """DBIRTH, NDATA, DDATA, DDEATH: session, seq, device state, then metrics."""
        session = self.session
        if session is None:
            if not self.in_outage(self.t_node_last, self._t):
                self.flag("outside_session", f"{kind} after NDEATH or before any NBIRTH")
                return
            # The NBIRTH went out while the recorder was away: carry on from here.
            self.tolerated_unobserved += 1
            since = self._t if self.t_node_last is None else self.t_node_last
            session = self.session = _Session(t_start=since, t_last=self._t, expected_seq=None,
                                              node_birth=None, observed=False)
            self.last_birth_bdseq = None
        self.check_seq(session, decoded)
        session.t_last = self._t
        if kind == "NDATA":
            self.check_data(decoded, session.node_birth, ordered=True)
            return
        device: str = decoded["device_id"]  # pysparkplug's Topic requires one for D* types
        if kind == "DBIRTH":
            if decoded["error"] is not None and not self.explained(kind, decoded):
                self.flag("undecodable", decoded["error"])
            birth = _Birth.of(decoded) if decoded["error"] is None else None
            session.devices[device] = _Device(birth, alive=True, t_last=self._t)
        elif kind == "DDEATH":
            self.ddeath(session, device, decoded)
        else:
            known = self.device_for_data(session, device)
            self.check_data(decoded, None if known is None else known.birth,
                            ordered=known is not None)

    def check_seq(self, session: _Session, decoded: dict[str, Any]) -> None:
        """The seq is the previous one plus 1, mod 256, unless the gap may lie in an outage."""
        expected = session.expected_seq
        seq = decoded["seq"] if decoded["wire"] and decoded["wire"]["seq"] else None
        if seq is None:  # unknown: assume it took the next number
            session.expected_seq = None if expected is None else (expected + 1) % SEQ_MODULO
            return
        if expected is not None and seq != expected:
            if self.in_outage(session.t_last, self._t):
                self.tolerated_gaps += 1
            else:
                self.flag("seq_gap", f"seq {seq}, expected {expected}")
        session.expected_seq = (seq + 1) % SEQ_MODULO

    def ddeath(self, session: _Session, device: str, decoded: dict[str, Any]) -> None:
        """A device's death: only of a device alive in this session."""
        known = session.devices.get(device)
        if known is None or not known.alive:
            since = session.t_start if known is None else known.t_last
            if not session.observed or self.in_outage(since, self._t):
                self.tolerated_unobserved += 1
            else:
                self.flag("ddeath_without_dbirth", f"DDEATH of {device}, which is not born")
        if decoded["error"] is not None and not self.explained("DDEATH", decoded):
            self.flag("undecodable", decoded["error"])
        session.devices[device] = _Device(None, alive=False, t_last=self._t)

    def device_for_data(self, session: _Session, device: str) -> _Device | None:
        """The device a DDATA belongs to; None (flagged) when it is not born in the session."""
        known = session.devices.get(device)
        if known is not None and known.alive:
            known.t_last = self._t
            return known
        since = session.t_start if known is None else known.t_last
        if not session.observed or self.in_outage(since, self._t):
            # Its DBIRTH went out while the recorder was away; its metrics stay unknown.
            self.tolerated_unobserved += 1
            known = session.devices[device] = _Device(None, alive=True, t_last=self._t)
            return known
        if known is None:
            self.flag("ddata_before_dbirth", f"DDATA of {device} before its DBIRTH")
        else:
            self.flag("ddata_after_ddeath", f"DDATA of {device} after its DDEATH")
        return None

    def check_data(self, decoded: dict[str, Any], birth: _Birth | None, *,
                   ordered: bool) -> None:
        """NDATA/DDATA metrics against their birth; a decoding error by its cause."""
        error = decoded["error"]
        if error is not None:
            if self.explained(decoded["message_type"], decoded):
                return
            if decoded["wire"] is not None and decoded["birth_index"] is not None:
                # pysparkplug looks aliases and names up in the birth (KeyError when absent)
                # and decodes the value as the birth's datatype.
                rule = "unknown_metric" if error.startswith("KeyError") else "datatype_mismatch"
                self.flag(rule, error)
            elif ordered and birth is not None:
                self.flag("undecodable", error)
            # otherwise the missing or undecodable birth is counted already
            return
        if birth is not None:
            self.flag_first(_metric_findings(decoded, birth))


def _label(metric: dict[str, Any]) -> str:
    return str(metric["name"] or f"alias {metric['alias']}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _metric_named(decoded: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((m for m in decoded["metrics"] if m["name"] == name), None)


def _metric_findings(decoded: dict[str, Any], birth: _Birth) -> dict[str, list[str]]:
    """What is wrong with a decoded DATA message's metrics, by rule."""
    findings: dict[str, list[str]] = {}
    for metric in decoded["metrics"]:
        wire = metric["wire"] or {}
        label = _label(metric)
        if wire.get("alias"):
            born = birth.by_alias.get(metric["alias"])
        else:
            born = birth.by_name.get(metric["name"])
        if born is None:
            findings.setdefault("unknown_metric", []).append(f"{label} is not in its birth")
            continue
        if born.alias is not None and wire.get("name"):
            findings.setdefault("alias_not_used", []).append(
                f"{label} sent by name; its birth gave alias {born.alias}")
        if metric["datatype"] != born.datatype:
            findings.setdefault("datatype_mismatch", []).append(
                f"{label} is {metric['datatype']}, born {born.datatype}")
        elif not metric["is_null"] and wire.get("value_field") != metric["datatype_field"]:
            findings.setdefault("datatype_mismatch", []).append(
                f"{label}: a {born.datatype} value in {wire.get('value_field')}")
    return findings


def _node_records(messages: Path, group: str, node: str) -> Iterator[dict[str, Any]]:
    """The recording's messages in the node's Sparkplug namespace, in order."""
    with messages.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record: dict[str, Any] = json.loads(line)
            parts = record["topic"].split("/")
            if parts[:2] == ["spBv1.0", group] and len(parts) > _NODE and parts[_NODE] == node:
                yield record


def decode_recording(messages: Path, *, group: str, node: str, interop_python: Path,
                     decoder: Path) -> Iterator[tuple[float, dict[str, Any]]]:
    """The node's recorded messages as pysparkplug decodes them, each with its time ``t``.

    The filtered input goes to a temporary file that is the decoder's stdin, and its stdout
    is read line by line, so a long soak streams through with one float per message kept.

    Raises:
        SparkplugDecoderError: the decoder exited with an error, or answered with a
            different number of lines than it was given.
    """
    times: list[float] = []
    with tempfile.TemporaryFile("w+", encoding="utf-8") as feed, \
            tempfile.TemporaryFile("w+", encoding="utf-8") as errors:
        for record in _node_records(messages, group, node):
            times.append(float(record["t"]))
            feed.write(json.dumps({key: record.get(key) for key in
                                   ("topic", "payload_b64", "qos", "retain")}) + "\n")
        feed.seek(0)
        answered = 0
        with subprocess.Popen(
                [str(interop_python), str(decoder)], stdin=feed, stdout=subprocess.PIPE,
                stderr=errors, text=True, encoding="utf-8") as proc:
            for line in cast("IO[str]", proc.stdout):  # not None: stdout=PIPE
                decoded: dict[str, Any] = json.loads(line)
                yield times[decoded["index"]], decoded
                answered += 1
        if proc.returncode != 0 or answered != len(times):
            errors.seek(0)
            msg = (f"the Sparkplug decoder {decoder} (run by {interop_python}) exited with "
                   f"{proc.returncode} after {answered} of {len(times)} messages: "
                   f"{errors.read()[-2000:]}")
            raise SparkplugDecoderError(msg)


def judge_sparkplug(
        messages: Path, *, group: str, node: str, interop_python: Path, decoder: Path,
        outages: Sequence[tuple[float, float]] = ()) -> Outcome:
    """Judge one node's recorded Sparkplug B stream; see the module docstring for the rules.

    Args:
        messages: the run's ``data/messages.jsonl``.
        group: the node's Sparkplug group id.
        node: the node's edge node id.
        interop_python: the interpreter of the venv that has pysparkplug.
        decoder: ``hil/interop/decode_sparkplug.py``.
        outages: ``(t_start, t_end)`` epoch-second windows in which the recorder itself was
            cut off (broker down); messages missing around them are tolerated.

    Returns:
        Passed when no rule is broken and at least one NBIRTH was seen.

    Raises:
        SparkplugDecoderError: the decoder itself failed.
    """
    judge = _Judge(outages)
    for t, decoded in decode_recording(messages, group=group, node=node,
                                       interop_python=interop_python, decoder=decoder):
        judge.feed(t, decoded)
    sessions = len(judge.bdseqs)  # one per NBIRTH judged (a retained replay is not one)
    figures = {
        "messages": judge.messages,
        "by_type": dict(sorted(judge.by_type.items())),
        "sessions": sessions,
        "bdseq": judge.bdseqs[:BDSEQ_FIGURE_LIMIT],
        "tolerated_gaps": judge.tolerated_gaps,
        "tolerated_unobserved": judge.tolerated_unobserved,
        "violations": dict(sorted(judge.violations.items())),
        "examples": {rule: judge.examples[rule] for rule in sorted(judge.examples)},
        "historical_metrics": judge.historical,
    }
    return Outcome(name="sparkplug conformance", kind="sparkplug",
                   passed=not judge.violations and sessions > 0,
                   summary=_summary(judge, sessions), figures=figures)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _summary(judge: _Judge, sessions: int) -> str:
    head = (f"{_plural(judge.messages, 'Sparkplug message')} in "
            f"{_plural(sessions, 'session')}")
    if judge.violations:
        worst = ", ".join(f"{rule} {count:,}" for rule, count in judge.violations.most_common(3))
        total = sum(judge.violations.values())
        return f"{head}: {_plural(total, 'violation')} ({worst})"
    if sessions == 0:
        return f"{head}: no NBIRTH seen"
    tolerated = [text for count, text in (
        (judge.tolerated_gaps, _plural(judge.tolerated_gaps, "seq gap")),
        (judge.tolerated_unobserved,
         _plural(judge.tolerated_unobserved, "unrecorded birth"))) if count]
    if not tolerated:
        return f"{head}: conformant"
    return f"{head}: conformant ({' and '.join(tolerated)} inside broker outages)"
