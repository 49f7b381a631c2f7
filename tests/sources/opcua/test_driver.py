"""The OPC UA driver against plcsim's real OPC UA face over loopback (no mocks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetwin.core.types import Quality, WriteOutcome
from edgetwin.sources.opcua import OpcuaSource
from plcsim.opcua_face import OpcuaFace
from plcsim.sim import Sim
from tests.helpers.recording import RecordingHealth
from tests.sources.opcua.conftest import BatchRecorder, make_config, running

pytestmark = pytest.mark.sim

TEMP = "pump1/motor_temp"
LEVEL = "tank1/level"
COUNTER = "plc1/counter"
SETPOINT = "pump1/speed_setpoint"


def skid_points() -> list[dict[str, Any]]:
    return [
        {"id": TEMP, "node": "PumpSkid.Motor.Temperature"},
        {"id": LEVEL, "node": "PumpSkid.Tank.Level"},
        {"id": COUNTER, "node": "PumpSkid.Counter"},
    ]


async def test_subscribed_values_arrive_in_good_batches(
    face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """Temperature, level and counter arrive GOOD, batched, with the server's timestamps."""
    source = OpcuaSource(make_config(face, skid_points()))
    started_ns = time.time_ns()
    async with running(source, batches, health):
        await batches.wait_for(lambda b: {s.point for s in b} >= {TEMP, LEVEL, COUNTER})
        await health.wait_for("up")
        first_counter = batches.samples(COUNTER)[0].value
        assert isinstance(first_counter, int)
        await batches.wait_for(lambda b: any(
            s.point == COUNTER and isinstance(s.value, int) and s.value > first_counter + 5
            for s in b))
    samples = [s for b in batches.batches for s in b]
    assert all(s.quality is Quality.GOOD for s in samples)
    assert all(started_ns - 5 * 10**9 < s.ts_ns <= time.time_ns() for s in samples)
    temp = batches.samples(TEMP)[0].value
    level = batches.samples(LEVEL)[0].value
    assert isinstance(temp, float) and 0.0 <= temp <= 150.0
    assert isinstance(level, float) and 0.0 <= level <= 100.0
    assert max(len(b) for b in batches.batches) >= 3  # the initial values came as one batch
    assert health.of("down") == [] and health.of("point_error") == []
    assert len(health.cycles) == len(batches.batches)


def seen(batches: BatchRecorder, point: str, value: float) -> Callable[[object], bool]:
    """A batch check: ``point`` has reported ``value`` (in any batch so far)."""
    return lambda _: any(s.value == value for s in batches.samples(point))


@pytest.mark.parametrize("deadband", [
    {"deadband_type": "absolute", "deadband": 36},
    {"deadband_type": "percent", "deadband_percent": 2},  # of EURange 0..1800 rpm: 36 rpm
], ids=["absolute", "percent"])
async def test_deadband_passes_large_changes_only(
    sim: Sim, face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth,
    deadband: dict[str, Any],
) -> None:
    """A server-side deadband of 36 rpm, beside an item without one on the same node."""
    raw = "pump1/speed_setpoint_raw"
    points: list[dict[str, Any]] = [
        {"id": SETPOINT, "node": "PumpSkid.Motor.SpeedSetpoint", **deadband},
        {"id": raw, "node": "PumpSkid.Motor.SpeedSetpoint"},
    ]
    source = OpcuaSource(make_config(face, points))
    target = face.node_id("PumpSkid.Motor.SpeedSetpoint").to_string()
    steps = (1000.0, 1020.0, 1040.0, 1050.0, 1300.0)
    async with running(source, batches, health):
        await batches.wait_for(lambda b: {s.point for s in b} == {SETPOINT, raw})
        for rpm in steps:
            assert sim.write("test", target, "speed_setpoint_rpm", rpm).accepted
            await batches.wait_for(seen(batches, raw, rpm))  # so the banded item saw it too
        await batches.wait_for(seen(batches, SETPOINT, 1300.0))
    assert [s.value for s in batches.samples(raw)][1:] == list(steps)
    # 1020 and 1050 stay within 36 rpm of the value last reported (1000, then 1040)
    assert [s.value for s in batches.samples(SETPOINT)][1:] == [1000.0, 1040.0, 1300.0]
    assert health.of("point_error") == []


async def test_refused_monitored_item_is_polled_the_others_keep_updating(
    face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """The server refuses one item (percent deadband, no EURange): only that point is polled."""
    captures = "pump1/vib_de_captures"
    points: list[dict[str, Any]] = [
        {"id": captures, "node": "PumpSkid.VibrationDE.CaptureCounter",
         "deadband_type": "percent", "deadband_percent": 5},
        *skid_points(),
    ]
    source = OpcuaSource(make_config(face, points, poll_interval=0.2))
    async with running(source, batches, health):
        await health.wait_for("point_error")
        index = len(batches.batches)
        await batches.wait_for(lambda _: len(batches.samples(captures)) >= 3)
        await batches.wait_for(lambda _: len(batches.samples(COUNTER, after=index)) >= 5)
    (error,) = health.of("point_error")
    assert (error.point, error.error_code) == (captures, "monitored_item_refused")
    assert error.error == (
        f"opcua source 'line-opcua' ({face.endpoint}): point '{captures}': node "
        f"'ns={face.namespace_index};s=PumpSkid.VibrationDE.CaptureCounter': monitored item "
        "refused: BadDeadbandFilterInvalid (0x808E0000); polling it")
    polled = [b for b in batches.batches if any(s.point == captures for s in b)]
    assert all([s.point for s in b] == [captures] for b in polled)  # its own Read
    assert all(s.quality is Quality.GOOD for b in batches.batches for s in b)
    assert health.of("down") == []


async def test_poll_mode_point_is_read_on_its_interval(
    face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """A poll-mode point is read in its own batches every poll_interval."""
    points: list[dict[str, Any]] = [
        {"id": COUNTER, "node": "PumpSkid.Counter", "mode": "poll", "poll_interval": 0.2},
        {"id": LEVEL, "node": "PumpSkid.Tank.Level"},
    ]
    source = OpcuaSource(make_config(face, points))
    async with running(source, batches, health):
        await batches.wait_for(lambda _: len(batches.samples(COUNTER)) >= 6)
    polled = [b for b in batches.batches if any(s.point == COUNTER for s in b)]
    assert all(len(b) == 1 for b in polled)  # its own Read, not mixed into notifications
    counters = [int(s.value) for s in batches.samples(COUNTER)]  # type: ignore[arg-type]
    assert counters == sorted(counters) and len(set(counters)) == len(counters)
    # about 4 plant ticks of 50 ms per 200 ms poll; not a timing assertion, a sanity check
    assert all(s.quality is Quality.GOOD for s in batches.samples(COUNTER))


async def test_unknown_node_is_bad_others_fine(
    face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """A node id the server does not know: that point BAD with point_error, the rest GOOD."""
    points = [*skid_points(), {"id": "pump1/ghost", "node": "PumpSkid.Motor.NoSuchThing"}]
    source = OpcuaSource(make_config(face, points))
    async with running(source, batches, health):
        await health.wait_for("point_error")
        await batches.wait_for(lambda b: any(s.point == TEMP for s in b))
    (error,) = health.of("point_error")
    assert (error.point, error.error_code) == ("pump1/ghost", "bad_node_id")
    assert "opcua source 'line-opcua' (opc.tcp://127.0.0.1:" in error.error
    assert "BadNodeIdUnknown" in error.error
    (ghost,) = batches.samples("pump1/ghost")
    assert (ghost.value, ghost.quality) == (None, Quality.BAD)
    assert all(s.quality is Quality.GOOD for p in (TEMP, LEVEL, COUNTER)
               for s in batches.samples(p))
    assert health.of("down") == []


async def test_dropout_marks_points_bad_then_recovers(
    sim: Sim, face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """A dropout: all points BAD once, health.down, then GOOD again and health.up."""
    source = OpcuaSource(make_config(face, skid_points()), reconnect_initial_s=0.1,
                         reconnect_max_s=0.5)
    async with running(source, batches, health):
        await health.wait_for("up")
        sim.faults.add("dropout", "opcua", duration_s=1.5)
        lost_at = time.monotonic()
        index, bad = await batches.wait_for(
            lambda b: {s.point for s in b if s.quality is Quality.BAD} >= {TEMP, LEVEL, COUNTER})
        assert time.monotonic() - lost_at < 3.0  # one watchdog interval plus its probe (0.6 s)
        await health.wait_for("down")
        await health.wait_for("up", count=2)
        await batches.wait_for(
            lambda b: any(s.point == COUNTER and s.quality is Quality.GOOD for s in b),
            after=index + 1)
    all_bad = [b for b in batches.batches if all(s.quality is Quality.BAD for s in b)]
    assert len(all_bad) == 1  # once per outage, not once per failed reconnect
    assert all(s.value is None for s in bad)
    assert "opcua source 'line-opcua'" in health.of("down")[0].error


async def test_server_restart_on_same_port_recreates_session(
    sim: Sim, face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """The server stops and starts again on the same port: values flow again."""
    source = OpcuaSource(make_config(face, skid_points()), reconnect_initial_s=0.1,
                         reconnect_max_s=0.5)
    async with running(source, batches, health):
        await health.wait_for("up")
        await face.stop()
        await health.wait_for("down")
        index = len(batches.batches)
        restarted = OpcuaFace(sim, port=face.port)
        await restarted.start()
        try:
            await health.wait_for("up", count=2)
            await batches.wait_for(
                lambda b: any(s.point == COUNTER and s.quality is Quality.GOOD for s in b),
                after=index)
        finally:
            await restarted.stop()
            await face.start()  # for the fixture's stop()
    assert health.of("point_error") == []


async def test_cancellation_returns_promptly(
    sim: Sim, face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """Cancelling run ends it within about a second, even with the server frozen."""
    source = OpcuaSource(make_config(face, skid_points()))
    task = asyncio.create_task(source.run(batches, health))
    await health.wait_for("up")
    sim.faults.add("dropout", "opcua", duration_s=5.0)
    await asyncio.sleep(0.1)
    started = time.monotonic()
    task.cancel()
    await asyncio.wait({task}, timeout=2.0)
    assert task.done()
    assert time.monotonic() - started < 1.5  # CLOSE_TIMEOUT_S is 0.5 s; slack for a loaded CI
    sim.faults.clear()


async def write_setpoint(face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth,
                         value: float) -> WriteOutcome:
    """Start a source with a writable speed setpoint, write ``value`` once, stop it."""
    points = [*skid_points(), {"id": SETPOINT, "node": "PumpSkid.Motor.SpeedSetpoint",
                               "writable": True}]
    source = OpcuaSource(make_config(face, points))
    async with running(source, batches, health):
        await health.wait_for("up")
        return await source.write(SETPOINT, value)


async def test_write_setpoint_is_coerced_and_confirmed(
    sim: Sim, face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """An int written to the Double setpoint goes out as 1200.0, reads back, and is logged."""
    outcome = await write_setpoint(face, batches, health, 1200)
    assert (outcome.ok, outcome.reason, outcome.read_back) == (True, None, 1200.0)
    (record,) = sim.writes.query(face="opcua", name="speed_setpoint_rpm")
    assert (record.value, record.accepted) == (1200.0, True)
    assert isinstance(record.value, float)


async def test_an_uncertain_read_back_does_not_confirm_a_write(
    sim: Sim, face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """The server took the value but serves it Uncertain: ok=False, with what it read."""
    sim.faults.add("uncertain", "opcua")
    outcome = await write_setpoint(face, batches, health, 1200)
    assert (outcome.ok, outcome.read_back) == (False, 1200.0)
    assert outcome.reason == (
        f"opcua source 'line-opcua' ({face.endpoint}): write 'pump1/speed_setpoint' = 1200: "
        "read-back 1200.0 is not Good: UncertainLastUsableValue (0x40900000)")
    assert [r.accepted for r in sim.writes.query(face="opcua")] == [True]  # the PLC took it


async def test_write_out_of_range_reports_bad_status(
    sim: Sim, face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """The PLC refuses 5000 rpm: ok=False with BadOutOfRange in the reason, no exception."""
    outcome = await write_setpoint(face, batches, health, 5000.0)
    assert not outcome.ok and outcome.reason is not None
    assert outcome.reason.startswith(
        f"opcua source 'line-opcua' ({face.endpoint}): write 'pump1/speed_setpoint' = 5000.0: "
        "refused by the server: BadOutOfRange (0x803C0000)")
    assert [r.accepted for r in sim.writes.query(face="opcua")] == [False]


async def test_writes_refused_before_reaching_the_server(
    sim: Sim, face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """Not writable, unknown point, lossy or wrongly typed values: refused, nothing sent."""
    points = [*skid_points(),
              {"id": SETPOINT, "node": "PumpSkid.Motor.SpeedSetpoint", "writable": True},
              {"id": "plc1/run", "node": "PumpSkid.Run", "writable": True}]
    source = OpcuaSource(make_config(face, points))
    async with running(source, batches, health):
        await health.wait_for("up")
        not_writable = await source.write(TEMP, 20.0)
        unknown = await source.write("pump1/nope", 1.0)
        as_bool = await source.write(SETPOINT, True)
        number_to_bool = await source.write("plc1/run", 1)
        text = await source.write(SETPOINT, "1200")
    assert not_writable.reason is not None and not not_writable.ok
    assert not_writable.reason.endswith(
        "write 'pump1/motor_temp' = 20.0: the point is not writable (writable: false)")
    assert unknown.reason is not None and unknown.reason.endswith("not a point of this source")
    assert as_bool.reason is not None
    assert as_bool.reason.endswith("a bool cannot be written to a Double node")
    assert number_to_bool.reason is not None
    assert number_to_bool.reason.endswith("an int cannot be written to a Boolean node")
    assert text.reason is not None
    assert text.reason.endswith("a str cannot be written to a Double node")
    assert sim.writes.query(face="opcua") == []


async def test_missing_password_file_is_reported_and_retried(
    face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth, tmp_path: Path
) -> None:
    """A missing password_file: health.down("password_file") on every attempt, no crash."""
    missing = tmp_path / "opcua.password"
    config = make_config(face, skid_points(), username="gateway", password_file=str(missing))
    source = OpcuaSource(config, reconnect_initial_s=0.05, reconnect_max_s=0.1)
    async with running(source, batches, health) as task:
        await health.wait_for("down", count=3)
        assert not task.done()
    downs = health.of("down")
    assert {d.error_code for d in downs} == {"password_file"}
    assert downs[0].error.startswith(
        f"opcua source 'line-opcua' ({face.endpoint}): cannot read password_file '{missing}'")
    assert len([b for b in batches.batches if all(s.quality is Quality.BAD for s in b)]) == 1


async def test_array_node_arrives_as_numpy_array(
    face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """The vibration capture (Double[]) arrives as one read-only float64 array."""
    points: list[dict[str, Any]] = [
        {"id": "pump1/vib_de", "node": "PumpSkid.VibrationDE.Capture"}]
    source = OpcuaSource(make_config(face, points))
    async with running(source, batches, health):
        _, batch = await batches.wait_for(lambda b: any(s.point == "pump1/vib_de" for s in b))
    (sample,) = batch
    assert isinstance(sample.value, np.ndarray) and sample.value.dtype == np.float64
    assert sample.value.size > 0 and not sample.value.flags.writeable
    assert sample.quality is Quality.GOOD



async def test_polled_points_survive_a_plc_reboot(
    sim: Sim, face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """Poll-only source, PLC reboot (connections cut, new ones refused): BAD, down, recovery.

    A write while the link is down is refused with a reason instead of raising.
    """
    points: list[dict[str, Any]] = [
        {"id": COUNTER, "node": "PumpSkid.Counter", "mode": "poll", "poll_interval": 0.1},
        {"id": SETPOINT, "node": "PumpSkid.Motor.SpeedSetpoint", "mode": "poll",
         "writable": True},
    ]
    source = OpcuaSource(make_config(face, points), reconnect_initial_s=0.1,
                         reconnect_max_s=0.3)
    async with running(source, batches, health):
        await health.wait_for("up")
        sim.faults.add("reboot", "*", duration_s=1.0)
        index, _ = await batches.wait_for(
            lambda b: all(s.quality is Quality.BAD for s in b) and len(b) == 2)
        await health.wait_for("down")
        refused = await source.write(SETPOINT, 900.0)
        await health.wait_for("up", count=2)
        await batches.wait_for(
            lambda b: any(s.point == COUNTER and s.quality is Quality.GOOD for s in b),
            after=index + 1)
    assert not refused.ok and refused.reason is not None
    assert refused.reason.startswith(
        f"opcua source 'line-opcua' ({face.endpoint}): write 'pump1/speed_setpoint' = 900.0: ")
    assert health.of("down")[0].error_code in {"read_failed", "connection_lost"}


async def test_namespace_uri_node_ids_are_resolved_at_connect(
    face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """``nsu=<uri>;s=...`` finds the namespace index at connect; an unknown URI is bad_node_id."""
    points: list[dict[str, Any]] = [
        {"id": COUNTER, "node": "nsu=urn:edgetwin:plcsim;s=PumpSkid.Counter"},
        {"id": "plc1/elsewhere", "node": "nsu=urn:nowhere;s=PumpSkid.Counter"},
    ]
    source = OpcuaSource(make_config(face, points))
    async with running(source, batches, health):
        await batches.wait_for(
            lambda b: any(s.point == COUNTER and s.quality is Quality.GOOD for s in b))
    (error,) = health.of("point_error")
    assert (error.point, error.error_code) == ("plc1/elsewhere", "bad_node_id")
    assert error.error.endswith(
        "point 'plc1/elsewhere': node id 'nsu=urn:nowhere;s=PumpSkid.Counter' cannot be "
        "resolved: namespace 'urn:nowhere' is not on this server")


async def test_refused_subscription_falls_back_to_polling(
    face: OpcuaFace, batches: BatchRecorder, health: RecordingHealth
) -> None:
    """A server refusing CreateSubscription (BadTooManySubscriptions): every point is polled."""
    assert face._server is not None  # the real server's own limit, not a mock
    face._server.iserver.max_subscriptions = 0
    source = OpcuaSource(make_config(face, skid_points(), poll_interval=0.1))
    async with running(source, batches, health):
        await batches.wait_for(lambda _: len(batches.samples(COUNTER)) >= 3)
    polled = [b for b in batches.batches if b]
    assert all({s.point for s in b} == {TEMP, LEVEL, COUNTER} for b in polled)  # one Read each
    assert all(s.quality is Quality.GOOD for b in polled for s in b)
    assert health.of("down") == []
