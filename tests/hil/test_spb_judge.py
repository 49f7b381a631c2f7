"""The Sparkplug B judge on real pysparkplug payloads: it passes a conformant node's life.

Each rule a broken recording breaks is named and counted. The payloads are encoded by
pysparkplug in the interop venv (``encode_sparkplug.py`` next to this file), never by
edgetwin, and judged through the same independent decoder the bench uses. Like
tests/interop, the venv is ``<repo>/.venv-interop`` (``make test`` builds it);
``$EDGETWIN_INTEROP_PYTHON`` overrides it.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hil.harness.outcome import Outcome
from hil.harness.spb_judge import SparkplugDecoderError, judge_sparkplug

REPO = Path(__file__).resolve().parents[2]
DECODER = REPO / "hil" / "interop" / "decode_sparkplug.py"
ENCODER = Path(__file__).with_name("encode_sparkplug.py")
GROUP, NODE = "hil", "gw1"
T0 = 1_800_000_000.0
SEQ_KINDS = {"NBIRTH", "DBIRTH", "NDATA", "DDATA", "DDEATH"}


def ms(t: float) -> int:
    return int(t * 1000)


@dataclass
class Stream:
    """A node's recording, message by message; seq and recording time advance by themselves."""

    specs: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    t: float = T0
    seq: int = -1
    counter: int = 0

    def send(self, kind: str, device: str | None = None, *, qos: int | None = None,
             retain: bool = False, seq: int | None = None, **spec: Any) -> None:
        """Record one message 0.1 s after the last; seq is the next one unless given."""
        self.t += 0.1
        if kind in SEQ_KINDS:
            self.seq = (self.seq + 1) % 256 if seq is None else seq
            spec.setdefault("seq", self.seq)
        spec.setdefault("timestamp", ms(self.t))
        self.specs.append({"kind": kind, **spec})
        topic = f"spBv1.0/{GROUP}/{kind}/{NODE}" + (f"/{device}" if device else "")
        self.records.append({"t": self.t, "topic": topic, "retain": retain,
                             "qos": (1 if kind == "NDEATH" else 0) if qos is None else qos})

    def nbirth(self, bdseq: int, **spec: Any) -> None:
        metrics = [
            {"name": "bdSeq", "datatype": "INT64", "value": bdseq, "timestamp": ms(self.t)},
            {"name": "Node Control/Rebirth", "datatype": "BOOLEAN", "value": False,
             "timestamp": ms(self.t)},
            {"name": "uptime_s", "alias": 100, "datatype": "INT64", "value": 0,
             "timestamp": ms(self.t)},
        ]
        spec.setdefault("seq", 0)
        spec.setdefault("metrics", metrics)
        self.send("NBIRTH", **spec)

    def dbirth(self, device: str = "pump1", **spec: Any) -> None:
        spec.setdefault("metrics", [
            {"name": "counter", "alias": 1, "datatype": "INT64", "value": self.counter,
             "timestamp": ms(self.t)},
            {"name": "motor_temp", "alias": 2, "datatype": "DOUBLE", "value": 60.5,
             "timestamp": ms(self.t)},
        ])
        self.send("DBIRTH", device, **spec)

    def ddata(self, device: str = "pump1", n: int = 1, **spec: Any) -> None:
        for _ in range(n):
            self.counter += 1
            metrics = [{"alias": 1, "datatype": "INT64", "value": self.counter,
                        "timestamp": ms(self.t)}]
            self.send("DDATA", device, **{"metrics": metrics, **spec})

    def ndeath(self, bdseq: int, **spec: Any) -> None:
        spec.setdefault("metrics", [{"name": "bdSeq", "datatype": "INT64", "value": bdseq}])
        self.send("NDEATH", **spec)

    def gap(self, missing: int = 1, seconds: float = 0.0) -> None:
        """Messages the recorder never got: seq and time move on without a record."""
        self.seq = (self.seq + missing) % 256
        self.t += seconds


def healthy_life(stream: Stream) -> Stream:
    """Two sessions: births, data, a device lost and back, NDEATH, reconnect with bdSeq 1."""
    stream.nbirth(0)
    stream.dbirth()
    stream.ddata(n=3)
    stream.send("NDATA", metrics=[{"alias": 100, "datatype": "INT64", "value": 5,
                                   "timestamp": ms(stream.t)}])
    stream.send("DDEATH", "pump1")
    stream.dbirth()
    stream.ddata(n=2)
    stream.ndeath(0)
    stream.nbirth(1)
    stream.dbirth()
    stream.ddata(metrics=[{"alias": 1, "datatype": "INT64", "value": 7,
                           "timestamp": ms(stream.t - 60), "is_historical": True},
                          {"alias": 2, "datatype": "DOUBLE", "value": 61.0,
                           "timestamp": ms(stream.t)}])
    return stream


def write_recording(stream: Stream, path: Path, interop_python: Path,
                    extra: Sequence[dict[str, Any]] = ()) -> Path:
    """Encode the stream's payloads with pysparkplug and write them as messages.jsonl."""
    done = subprocess.run(
        [str(interop_python), str(ENCODER)], check=True, capture_output=True, text=True,
        input="".join(json.dumps(spec) + "\n" for spec in stream.specs), timeout=30)
    payloads = done.stdout.splitlines()
    assert len(payloads) == len(stream.specs)
    lines = [{**record, "payload_b64": payload}
             for record, payload in zip(stream.records, payloads, strict=True)]
    lines += extra
    lines.sort(key=lambda line: line["t"])
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def judge(tmp_path: Path, interop_python: Path, stream: Stream, *,
          outages: Sequence[tuple[float, float]] = (),
          extra: Sequence[dict[str, Any]] = ()) -> Outcome:
    messages = write_recording(stream, tmp_path / "messages.jsonl", interop_python, extra)
    return judge_sparkplug(messages, group=GROUP, node=NODE, interop_python=interop_python,
                           decoder=DECODER, outages=outages)


def violations(outcome: Outcome) -> dict[str, int]:
    found: dict[str, int] = outcome.figures["violations"]
    return found


def test_a_conformant_node_life_passes(tmp_path: Path, interop_python: Path) -> None:
    """Births, data, DDEATH and DBIRTH, NDEATH, a new session with the next bdSeq: passed."""
    outcome = judge(tmp_path, interop_python, healthy_life(Stream()))
    assert outcome.passed, outcome.figures["examples"]
    assert violations(outcome) == {}
    assert outcome.kind == "sparkplug"
    assert outcome.figures["messages"] == 14
    assert outcome.figures["by_type"] == {"DBIRTH": 3, "DDATA": 6, "DDEATH": 1, "NBIRTH": 2,
                                          "NDATA": 1, "NDEATH": 1}
    assert outcome.figures["sessions"] == 2
    assert outcome.figures["bdseq"] == [0, 1]
    assert outcome.figures["historical_metrics"] == 1
    assert outcome.summary == "14 Sparkplug messages in 2 sessions: conformant"


def test_other_nodes_and_topics_are_not_judged(tmp_path: Path, interop_python: Path) -> None:
    """Another node's garbage and the JSON twin's topics stay out of the judgement."""
    garbage = base64.b64encode(b"\xff\xff").decode()
    extra = [{"t": T0 + 0.15, "topic": f"spBv1.0/{GROUP}/DDATA/other-node/pump1",
              "payload_b64": garbage, "qos": 0, "retain": False},
             {"t": T0 + 0.25, "topic": "edgetwin/v1/gw1/pump1/reported",
              "payload_b64": garbage, "qos": 1, "retain": False}]
    outcome = judge(tmp_path, interop_python, healthy_life(Stream()), extra=extra)
    assert outcome.passed, outcome.figures["examples"]
    assert outcome.figures["messages"] == 14


def test_seq_wraps_from_255_to_0(tmp_path: Path, interop_python: Path) -> None:
    """300 DDATA in one session: seq runs 255 -> 0 and that is no gap."""
    stream = Stream()
    stream.nbirth(4)
    stream.dbirth()
    stream.ddata(n=300)
    outcome = judge(tmp_path, interop_python, stream)
    assert outcome.passed, outcome.figures["examples"]
    assert outcome.figures["by_type"]["DDATA"] == 300


def test_a_rebirth_may_repeat_the_bdseq(tmp_path: Path, interop_python: Path) -> None:
    """An NBIRTH without an NDEATH before it (a rebirth) keeps bdSeq; an early Will is fine."""
    stream = Stream()
    stream.ndeath(6)  # a previous run's Will, before the recording's first NBIRTH
    stream.nbirth(7)
    stream.dbirth()
    stream.ddata(n=2)
    stream.nbirth(7)
    stream.dbirth()
    stream.ddata()
    outcome = judge(tmp_path, interop_python, stream)
    assert outcome.passed, outcome.figures["examples"]
    assert outcome.figures["bdseq"] == [7, 7]


def test_a_seq_gap_outside_an_outage_is_a_violation(tmp_path: Path,
                                                     interop_python: Path) -> None:
    """Two DDATA missing while the recorder was connected: seq_gap, with its example."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    stream.ddata(n=2)
    stream.gap(2)
    stream.ddata(n=2)
    outcome = judge(tmp_path, interop_python, stream)
    assert not outcome.passed
    assert violations(outcome) == {"seq_gap": 1}
    example = outcome.figures["examples"]["seq_gap"][0]
    assert example["what"] == "seq 6, expected 4"
    assert example["topic"] == f"spBv1.0/{GROUP}/DDATA/{NODE}/pump1"
    assert outcome.summary == "6 Sparkplug messages in 1 session: 1 violation (seq_gap 1)"


def test_a_seq_gap_in_a_broker_outage_is_tolerated(tmp_path: Path,
                                                   interop_python: Path) -> None:
    """The same gap, lost while the broker was down (within 2 s of the window): counted apart."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    stream.ddata(n=2)
    outage = (stream.t + 1.0, stream.t + 6.0)
    stream.gap(2, seconds=7.5)  # the next message arrives 1.6 s after the window closed
    stream.ddata(n=2)
    outcome = judge(tmp_path, interop_python, stream, outages=[outage])
    assert outcome.passed, outcome.figures["examples"]
    assert outcome.figures["tolerated_gaps"] == 1
    assert outcome.summary == ("6 Sparkplug messages in 1 session: conformant "
                               "(1 seq gap inside broker outages)")


@pytest.mark.parametrize(("lead_s", "tolerated"), [(1.5, True), (2.5, False)])
def test_the_outage_window_stretches_two_seconds(tmp_path: Path, interop_python: Path,
                                                 lead_s: float, tolerated: bool) -> None:
    """A gap seen 1.5 s before the broker stopped is excused; one seen 2.5 s before is not."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    stream.gap(1)
    stream.ddata()
    outage = (stream.t + lead_s, stream.t + lead_s + 5.0)
    outcome = judge(tmp_path, interop_python, stream, outages=[outage])
    assert outcome.passed is tolerated
    assert outcome.figures["tolerated_gaps"] == int(tolerated)


def test_a_gap_long_after_an_outage_is_not_tolerated(tmp_path: Path,
                                                     interop_python: Path) -> None:
    """An outage that ended well before the gap's stretch does not excuse it."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    outage = (T0 - 20.0, T0 - 10.0)
    stream.gap(1)
    stream.ddata()
    outcome = judge(tmp_path, interop_python, stream, outages=[outage])
    assert violations(outcome) == {"seq_gap": 1}
    assert outcome.figures["tolerated_gaps"] == 0


def test_births_missed_during_an_outage_are_tolerated(tmp_path: Path,
                                                      interop_python: Path) -> None:
    """NDEATH, outage, then DDATA whose NBIRTH/DBIRTH the recorder missed: carried on from."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    stream.ddata()
    stream.ndeath(0)
    outage = (stream.t + 0.5, stream.t + 5.0)
    stream.t += 5.5
    stream.seq = 3  # NBIRTH 0 and DBIRTHs 1..3 went out while the recorder was away
    stream.ddata("pump1", n=2, metrics=[{"name": "counter", "datatype": "INT64", "value": 9,
                                         "timestamp": ms(stream.t)}])
    stream.ndeath(1)
    outcome = judge(tmp_path, interop_python, stream, outages=[outage])
    assert outcome.passed, outcome.figures["examples"]
    assert outcome.figures["tolerated_unobserved"] == 2  # the NBIRTH and the DBIRTH
    assert outcome.figures["tolerated_gaps"] == 0


def test_ndeath_with_another_bdseq_is_a_violation(tmp_path: Path,
                                                  interop_python: Path) -> None:
    """The Will after a kill carries bdSeq 3 while the session's NBIRTH had 2."""
    stream = Stream()
    stream.nbirth(2)
    stream.dbirth()
    stream.ndeath(3)
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"ndeath_bdseq": 1}
    assert outcome.figures["examples"]["ndeath_bdseq"][0]["what"] == (
        "NDEATH bdSeq 3, the last NBIRTH had 2")


def test_reusing_the_bdseq_after_ndeath_is_a_violation(tmp_path: Path,
                                                       interop_python: Path) -> None:
    """A restart that births again with the ended session's bdSeq (not persisted)."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    stream.ndeath(0)
    stream.nbirth(0)
    stream.dbirth()
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"bdseq_reused": 1}
    assert outcome.figures["bdseq"] == [0, 0]


def test_ddata_before_dbirth_is_a_violation(tmp_path: Path, interop_python: Path) -> None:
    """DDATA of a device that has no DBIRTH in the session (sent by name, so it decodes)."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth("pump1")
    stream.ddata("tank1", metrics=[{"name": "level", "datatype": "DOUBLE", "value": 1.5,
                                    "timestamp": ms(stream.t)}])
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"ddata_before_dbirth": 1}


def test_messages_after_ndeath_are_outside_a_session(tmp_path: Path,
                                                     interop_python: Path) -> None:
    """A DBIRTH and a DDATA after the NDEATH, with no NBIRTH and no outage to explain it."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    stream.ndeath(0)
    stream.dbirth()
    stream.ddata()
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"outside_session": 2}


def test_ddata_after_ddeath_is_a_violation(tmp_path: Path, interop_python: Path) -> None:
    """DDATA of a device after its DDEATH and before a new DBIRTH; each one counts."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    stream.ddata()
    stream.send("DDEATH", "pump1")
    stream.ddata(n=2)
    stream.dbirth()
    stream.ddata()
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"ddata_after_ddeath": 2}


def test_a_garbage_payload_is_undecodable(tmp_path: Path, interop_python: Path) -> None:
    """Bytes no protobuf parser accepts, in the middle of a session."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    stream.ddata()
    stream.send("DDATA", "pump1", garbage=True)
    stream.ddata()
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"undecodable": 1}
    assert outcome.figures["examples"]["undecodable"][0]["what"].startswith("DecodeError")


def test_nbirth_seq_must_be_zero(tmp_path: Path, interop_python: Path) -> None:
    """An NBIRTH with seq 5 (the data after it counts on from there, so no gap too)."""
    stream = Stream()
    stream.nbirth(0, seq=5)
    stream.dbirth()
    stream.ddata()
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"nbirth_seq": 1}


def test_nbirth_needs_bdseq_and_the_rebirth_metric(tmp_path: Path,
                                                   interop_python: Path) -> None:
    """An NBIRTH with neither bdSeq nor Node Control/Rebirth breaks two rules."""
    stream = Stream()
    stream.nbirth(0, metrics=[{"name": "uptime_s", "alias": 100, "datatype": "INT64",
                               "value": 0, "timestamp": ms(T0)}])
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"nbirth_bdseq": 1, "rebirth_metric": 1}
    assert outcome.figures["bdseq"] == [None]


def test_data_metrics_must_match_their_birth(tmp_path: Path, interop_python: Path) -> None:
    """An alias the birth lacks, a name where an alias was given, a Boolean for an Int64."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    stream.ddata(metrics=[{"alias": 9, "datatype": "INT64", "value": 1,
                           "timestamp": ms(T0)}])
    stream.ddata(metrics=[{"name": "counter", "datatype": "INT64", "value": 1,
                           "timestamp": ms(T0)}])
    stream.ddata(metrics=[{"name": "motor_temp", "alias": 2, "datatype": "BOOLEAN",
                           "value": True, "timestamp": ms(T0)}])
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"unknown_metric": 1, "alias_not_used": 2,
                                   "datatype_mismatch": 1}
    assert outcome.figures["examples"]["datatype_mismatch"][0]["what"] == (
        "motor_temp: a DOUBLE value in boolean_value")


def test_qos_and_retain_follow_the_spec(tmp_path: Path, interop_python: Path) -> None:
    """NBIRTH at QoS 1, a Will at QoS 0 and a retained DBIRTH replay are all flagged."""
    stream = Stream()
    stream.nbirth(0, qos=1)
    stream.dbirth()
    stream.ddata()
    stream.dbirth(retain=True, seq=1)  # the broker replays a retained DBIRTH on resubscribe
    stream.seq = 2
    stream.ddata()
    stream.ndeath(0, qos=0)
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"qos": 2, "retained": 1}


def test_payload_timestamps_are_required(tmp_path: Path, interop_python: Path) -> None:
    """A DDATA and a DDEATH without payload timestamp; an NDEATH may go without one."""
    stream = Stream()
    stream.nbirth(0)
    stream.dbirth()
    stream.ddata(strip=["timestamp"])
    stream.send("DDEATH", "pump1", strip=["timestamp"])
    stream.ndeath(0, strip=["timestamp"])
    outcome = judge(tmp_path, interop_python, stream)
    assert violations(outcome) == {"timestamp": 2}


def test_no_nbirth_fails(tmp_path: Path, interop_python: Path) -> None:
    """A recording with only a Will in it judges nothing, so it does not pass."""
    stream = Stream()
    stream.ndeath(0)
    outcome = judge(tmp_path, interop_python, stream)
    assert not outcome.passed
    assert outcome.summary == "1 Sparkplug message in 0 sessions: no NBIRTH seen"


def test_a_failing_decoder_raises(tmp_path: Path, interop_python: Path) -> None:
    """The judge refuses to judge when the decoder itself fails."""
    broken = tmp_path / "broken_decoder.py"
    broken.write_text("import sys\nsys.exit('no pysparkplug here')\n")
    messages = write_recording(healthy_life(Stream()), tmp_path / "messages.jsonl",
                               interop_python)
    with pytest.raises(SparkplugDecoderError, match="no pysparkplug here"):
        judge_sparkplug(messages, group=GROUP, node=NODE, interop_python=interop_python,
                        decoder=broken)
