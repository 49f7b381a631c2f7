import json
import struct

from hypothesis import given
from hypothesis import strategies as st

from edgetwin.core.types import Command, CommandOrigin, PointState, Quality, Verdict
from edgetwin.sync.jsontwin import DesiredState, JsonTwinEncoder, PendingDesired, same_value

ENC = JsonTwinEncoder("edgetwin/v1", "gw1")
MS = 1_763_770_000_000


def want(point: str, value: object, cid: str = "c1", ms: int = MS) -> Command:
    return Command(cid, point, value, CommandOrigin.JSON_DESIRED, ms * 1_000_000)


def reading(value: object, quality: Quality = Quality.GOOD, ms: int = MS) -> PointState:
    return PointState(value, ms * 1_000_000, quality, 1)


def test_a_desired_value_is_pending_with_its_id_and_time() -> None:
    """want() records the value, the command id and the arrival time in ms."""
    d = DesiredState()
    d.want(want("pump1/speed_setpoint", 1450, "c7", MS + 5))
    assert d.pending("pump1") == {"speed_setpoint": PendingDesired(1450, MS + 5, "c7")}
    assert d.pending("tank1") == {}


def test_the_cloud_wins_on_desired_one_entry_per_point() -> None:
    """A later desired value replaces the pending one; the store never grows past one per point."""
    d = DesiredState()
    for i in range(100):
        d.want(want("pump1/speed_setpoint", i, f"c{i}"))
    assert d.pending("pump1") == {"speed_setpoint": PendingDesired(99, MS, "c99")}


def test_reporting_the_value_clears_it() -> None:
    """The device reports what was desired: nothing is pending any more."""
    d = DesiredState()
    d.want(want("pump1/speed_setpoint", 1450))
    d.want(want("pump1/run", True, "c2"))
    assert not d.reported("pump1", {"speed_setpoint": reading(1400)})
    assert d.reported("pump1", {"speed_setpoint": reading(1450.0), "run": reading(False)})
    assert set(d.pending("pump1")) == {"run"}
    assert d.reported("pump1", {"run": reading(True)})
    assert d.pending("pump1") == {}


def test_a_float32_read_back_counts_as_the_desired_value() -> None:
    """1450.3 comes back from a float32 register as 1450.300048828125; that is a match."""
    read_back = struct.unpack("<f", struct.pack("<f", 1450.3))[0]
    assert read_back != 1450.3
    d = DesiredState()
    d.want(want("pump1/speed_setpoint", 1450.3))
    assert d.reported("pump1", {"speed_setpoint": reading(read_back)})


def test_a_stale_or_bad_reading_does_not_clear() -> None:
    """Only a live reading shows the device holds the value now."""
    d = DesiredState()
    d.want(want("pump1/speed_setpoint", 1450))
    assert not d.reported("pump1", {"speed_setpoint": reading(1450, Quality.STALE)})
    assert not d.reported("pump1", {"speed_setpoint": reading(None, Quality.BAD)})
    assert d.reported("pump1", {"speed_setpoint": reading(1450, Quality.UNCERTAIN)})


def test_a_denial_clears_only_the_command_it_answers() -> None:
    """A newer desired value survives the denial of an older one; an acceptance clears nothing."""
    d = DesiredState()
    old, new = want("pump1/speed_setpoint", 1, "old"), want("pump1/speed_setpoint", 2, "new")
    d.want(old)
    d.want(new)
    assert not d.verdict(old, Verdict(accepted=False, reason="interlock"))
    assert not d.verdict(new, Verdict(accepted=True, reason="ok"))
    assert d.pending("pump1")["speed_setpoint"].command_id == "new"
    assert d.verdict(new, Verdict(accepted=False, reason="out of range"))
    assert d.pending("pump1") == {}


def test_withdraw_and_retain() -> None:
    """A null withdraws a pending value; a reload forgets points no longer configured."""
    d = DesiredState()
    d.want(want("pump1/speed_setpoint", 1))
    d.want(want("pump1/run", True))
    d.want(want("tank1/valve", "open"))
    assert d.withdraw("pump1/run")
    assert not d.withdraw("pump1/run")
    d.retain({"pump1/speed_setpoint"})
    assert d.pending("pump1") == {"speed_setpoint": PendingDesired(1, MS, "c1")}
    assert d.pending("tank1") == {}


def test_same_value_keeps_types_apart() -> None:
    """True is not 1, "1" is not 1, 1450 is 1450.0; huge integers compare exactly."""
    assert not same_value(True, 1)
    assert not same_value(1, True)
    assert same_value(False, False)
    assert not same_value("1", 1)
    assert same_value(1450, 1450.0)
    assert not same_value(1450, 1451)
    assert not same_value(10**400, 1e308)
    assert same_value(10**400, 10**400)
    assert not same_value(1.0, float("nan"))
    assert not same_value(1, None)


@given(st.one_of(st.booleans(), st.integers(), st.text(),
                 st.floats(allow_nan=False, allow_infinity=False)))
def test_every_value_satisfies_itself(value: object) -> None:
    """Property: a device reporting exactly the desired value always clears it."""
    assert same_value(value, value)


def test_snapshot_carries_pending_desired_and_the_computed_delta() -> None:
    """The snapshot lists every pending value, and in delta those the device does not report."""
    state = {"speed_setpoint": reading(1400, ms=MS - 10), "run": reading(True, Quality.STALE),
             "motor_temp": reading(61.5)}
    desired = {"speed_setpoint": PendingDesired(1450, MS + 7, "a"),
               "run": PendingDesired(True, MS, "b"),
               "mode": PendingDesired("auto", MS, "c")}
    doc = json.loads(ENC.snapshot("pump1", 9, state, desired).payload)
    assert doc["desired"] == {"mode": {"v": "auto", "ts": MS, "id": "c"},
                              "run": {"v": True, "ts": MS, "id": "b"},
                              "speed_setpoint": {"v": 1450, "ts": MS + 7, "id": "a"}}
    # run is still pending (its reading is stale) but equal, so not in the delta; mode is
    # missing from reported, so it is.
    assert doc["delta"] == {"mode": "auto", "speed_setpoint": 1450}
    assert doc["ts"] == MS + 7
    assert set(doc["state"]) == {"speed_setpoint", "run", "motor_temp"}


def test_snapshot_of_a_non_finite_desired_value_stays_json() -> None:
    """A NaN (only a Sparkplug command can carry one) is published as null, never as NaN."""
    desired = {"x": PendingDesired(float("nan"), MS, "a")}
    doc = json.loads(ENC.snapshot("pump1", 1, {}, desired).payload)
    assert doc["desired"]["x"]["v"] is None and doc["delta"] == {"x": None}
