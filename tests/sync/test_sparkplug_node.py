"""The Sparkplug edge node as a state machine: births, seq, bdSeq, aliases, values, commands."""

from __future__ import annotations

import contextlib
import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.core.types import CommandOrigin, Delta, PointSpec, PointState, Quality, Sample
from edgetwin.sync.sparkplug.node import BDSEQ, BDSEQ_FILE, REBIRTH, BadCommand, EdgeNode
from edgetwin.sync.sparkplug.sparkplug_b_pb2 import Payload
from edgetwin.sync.sparkplug.values import DataType, get_value, set_value
from edgetwin.twin import TwinStore
from tests.helpers.mounts import fill, mount_tmpfs, unmount

POINTS = ["pump1/speed", "pump1/run", "pump1/name", "tank1/level"]


def make(tmp_path: Path) -> tuple[EdgeNode, TwinStore]:
    twin = TwinStore({p: PointSpec(p, "s") for p in POINTS}, tmp_path)
    twin.apply([Sample("pump1/speed", 1450.5, Quality.GOOD, 2_000_000),
                Sample("pump1/run", True, Quality.GOOD, 2_000_000),
                Sample("tank1/level", 7, Quality.UNCERTAIN, 3_000_000)])
    return EdgeNode("plant", "gw1", POINTS, twin, tmp_path), twin


def decode(raw: bytes) -> Payload:
    payload = Payload()
    payload.ParseFromString(raw)
    return payload


def metric(payload: Payload, name: str) -> Payload.Metric:
    return next(m for m in payload.metrics if m.name == name)


def test_births_list_every_metric_with_aliases_datatypes_and_seq(tmp_path: Path) -> None:
    """NBIRTH seq 0 with bdSeq and Rebirth; a DBIRTH per device with every point."""
    node, _ = make(tmp_path)
    will = decode(node.next_will().payload)
    nbirth, pump, tank = node.births()
    assert nbirth.topic == "spBv1.0/plant/NBIRTH/gw1" and nbirth.qos == 0 and not nbirth.retain
    n = decode(nbirth.payload)
    assert n.seq == 0
    assert metric(n, BDSEQ).long_value == metric(will, BDSEQ).long_value == 0
    rebirth = metric(n, REBIRTH)
    assert rebirth.datatype == DataType.BOOLEAN and not rebirth.boolean_value
    assert not rebirth.HasField("alias")
    assert pump.topic == "spBv1.0/plant/DBIRTH/gw1/pump1" and decode(pump.payload).seq == 1
    p = decode(pump.payload)
    assert {m.name for m in p.metrics} == {"speed", "run", "name"}
    speed = metric(p, "speed")
    assert (speed.datatype, speed.double_value, speed.timestamp) == (DataType.DOUBLE, 1450.5, 2)
    assert metric(p, "name").is_null  # no value yet: null, flagged BAD
    assert metric(p, "name").properties.keys == ["Quality"]
    level = metric(decode(tank.payload), "level")
    assert level.datatype == DataType.INT64 and level.properties.values[0].int_value == 64
    aliases = [m.alias for m in p.metrics] + [level.alias]
    assert len(set(aliases)) == 4 and 0 not in aliases


def test_data_uses_aliases_only_and_seq_wraps_at_256(tmp_path: Path) -> None:
    """DDATA: alias, timestamp and value, no name; seq runs on across messages mod 256."""
    node, twin = make(tmp_path)
    node.next_will()
    node.births()
    seqs = []
    for i in range(300):
        (delta,) = twin.apply([Sample("pump1/speed", float(i), Quality.GOOD, 10**9 + i)])
        (message,) = node.data(delta)
        payload = decode(message.payload)
        seqs.append(payload.seq)
        (m,) = payload.metrics
        assert not m.name and m.alias == node.alias["pump1/speed"] and m.double_value == i
    assert seqs[:3] == [3, 4, 5]
    assert all((b - a) % 256 == 1 for a, b in itertools.pairwise(seqs))
    assert 0 in seqs  # wrapped


def test_historical_data_is_flagged_and_bad_values_are_null_with_quality(tmp_path: Path) -> None:
    node, twin = make(tmp_path)
    node.births()
    (delta,) = twin.apply([Sample("pump1/speed", None, Quality.BAD, 5_000_000)])
    (message,) = node.data(delta, historical=True)
    (m,) = decode(message.payload).metrics
    assert m.is_historical and m.is_null and m.properties.values[0].int_value == 0


def test_a_value_that_outgrows_its_birth_datatype_rebirths_the_device(tmp_path: Path) -> None:
    """A point born Double (no value yet) that reports a string gets a new DBIRTH first."""
    node, twin = make(tmp_path)
    node.births()
    (delta,) = twin.apply([Sample("pump1/name", "P-101", Quality.GOOD, 9_000_000)])
    (dbirth,) = node.data(delta)
    assert "/DBIRTH/" in dbirth.topic
    assert metric(decode(dbirth.payload), "name").string_value == "P-101"


def test_bdseq_grows_per_connect_and_survives_a_restart(tmp_path: Path) -> None:
    """Each CONNECT's Will takes the next bdSeq; a new process does not repeat the last one."""
    node, twin = make(tmp_path)
    first = [metric(decode(node.next_will().payload), BDSEQ).long_value for _ in range(3)]
    again = EdgeNode("plant", "gw1", POINTS, twin, tmp_path)
    assert first == [0, 1, 2]
    assert metric(decode(again.next_will().payload), BDSEQ).long_value == 3


def test_an_unreadable_bdseq_file_starts_the_node_from_zero(tmp_path: Path) -> None:
    """Not a crash at start-up: a node whose bdSeq cannot be read starts as a new one."""
    (tmp_path / BDSEQ_FILE).mkdir()
    node, _twin = make(tmp_path)
    assert node.bdseq == 255  # the first CONNECT takes 0


def test_bdseq_is_kept_on_a_full_disk(tmp_path: Path) -> None:
    """A full state disk must not keep the node from reconnecting: bdSeq still persists.

    A real 64 KiB tmpfs, filled up after the first CONNECT wrote the file.
    """
    state = tmp_path / "state"
    mount_tmpfs(state, 64)
    try:
        twin = TwinStore({p: PointSpec(p, "s") for p in POINTS}, state)
        node = EdgeNode("plant", "gw1", POINTS, twin, state)
        node.next_will()
        fill(state)
        wills = [metric(decode(node.next_will().payload), BDSEQ).long_value for _ in range(2)]
        again = EdgeNode("plant", "gw1", POINTS, twin, state)
        assert wills == [1, 2]
        assert metric(decode(again.next_will().payload), BDSEQ).long_value == 3
    finally:
        unmount(state)


def test_device_death_and_birth_follow_the_source(tmp_path: Path) -> None:
    node, twin = make(tmp_path)
    node.births()
    death = node.device_death("tank1")
    assert death is not None and death.topic.endswith("/DDEATH/gw1/tank1")
    (delta,) = twin.apply([Sample("tank1/level", 8, Quality.GOOD, 10_000_000)])
    assert node.data(delta) == []  # nothing for a dead device
    assert node.device_death("tank1") is None
    birth = node.device_birth("tank1")
    assert birth is not None and metric(decode(birth.payload), "level").long_value == 8


def command(*metrics: tuple[dict[str, object], DataType | None, object]) -> bytes:
    payload = Payload()
    payload.timestamp = 1
    for fields, datatype, value in metrics:
        m = payload.metrics.add()
        for key, val in fields.items():
            setattr(m, key, val)
        if datatype is not None:
            m.datatype = datatype
            set_value(m, datatype, value)
    return payload.SerializeToString()


def test_ncmd_rebirth_and_dcmd_writes_are_decoded(tmp_path: Path) -> None:
    node, _ = make(tmp_path)
    node.births()
    ncmd = node.inbound("spBv1.0/plant/NCMD/gw1",
                        command(({"name": REBIRTH}, DataType.BOOLEAN, True)))
    assert ncmd.rebirth and not ncmd.commands
    dcmd = node.inbound("spBv1.0/plant/DCMD/gw1/pump1", command(
        ({"alias": node.alias["pump1/speed"]}, DataType.DOUBLE, 1500.0),
        ({"name": "run"}, DataType.BOOLEAN, False)))
    assert [(c.point, c.value, c.origin) for c in dcmd.commands] == [
        ("pump1/speed", 1500.0, CommandOrigin.SPARKPLUG_DCMD),
        ("pump1/run", False, CommandOrigin.SPARKPLUG_DCMD)]


def test_bad_commands_are_refused_one_by_one(tmp_path: Path) -> None:
    node, _ = make(tmp_path)
    node.births()
    result = node.inbound("spBv1.0/plant/DCMD/gw1/pump1", command(
        ({"alias": 999}, DataType.DOUBLE, 1.0),
        ({"name": "level"}, DataType.INT64, 3),  # tank1's point sent to pump1
        ({"name": "speed"}, None, None),  # no value
        ({"name": "speed"}, DataType.DOUBLE, 2.0)))
    assert [p.code for p in result.problems] == ["unknown_alias", "unknown_point", "wrong_type"]
    assert [c.value for c in result.commands] == [2.0]
    with pytest.raises(BadCommand) as err:
        node.inbound("spBv1.0/plant/DCMD/gw1/pump1", b"\xff\xff\xff not protobuf")
    assert err.value.code == "malformed_payload"


@given(st.binary(max_size=300))
def test_fuzzed_command_payloads_never_crash(raw: bytes) -> None:
    """Fuzz: any bytes on DCMD give commands, problems or one BadCommand, nothing else."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        node, _ = make(Path(tmp))
        node.births()
        with contextlib.suppress(BadCommand):
            node.inbound("spBv1.0/plant/DCMD/gw1/pump1", raw)


signed = [(DataType.INT8, 8), (DataType.INT16, 16), (DataType.INT32, 32), (DataType.INT64, 64)]


@given(st.sampled_from(signed), st.data())
def test_signed_integers_round_trip_through_twos_complement(case: tuple[DataType, int],
                                                            data: st.DataObject) -> None:
    datatype, bits = case
    value = data.draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    m = Payload.Metric()
    set_value(m, datatype, value)
    assert get_value(Payload.Metric.FromString(m.SerializeToString()), datatype) == value


def test_non_finite_command_values_are_refused() -> None:
    m = Payload.Metric()
    set_value(m, DataType.DOUBLE, math.nan)
    with pytest.raises(ValueError, match="not finite"):
        get_value(m, DataType.DOUBLE)


def test_delta_for_an_unknown_asset_sends_nothing(tmp_path: Path) -> None:
    node, _ = make(tmp_path)
    node.births()
    state = PointState(1.0, 1, Quality.GOOD, 1)
    assert node.data(Delta("elsewhere", 1, 1, {"x": state})) == []
