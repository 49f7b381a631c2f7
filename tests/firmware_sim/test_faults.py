"""Fault set, write log and scenarios, on a Sim stepped by hand."""

import pytest

from plcsim.faults import FaultError
from plcsim.scenario import Scenario, ScenarioError
from plcsim.sim import Sim


def step(sim: Sim, seconds: float) -> None:
    for _ in range(round(seconds / 0.1)):
        sim.step(0.1)


def test_fault_expires_after_its_plant_time() -> None:
    """A fault with a duration ends by itself; one without stays until cleared."""
    sim = Sim(seed=1)
    timed = sim.faults.add("dropout", "modbus_tcp", duration_s=1.0)
    forever = sim.faults.add("latency", "opcua", delay_s=0.2)
    assert sim.faults.silent("modbus_tcp")
    step(sim, 1.1)
    assert not sim.faults.silent("modbus_tcp")
    assert [f.id for f in sim.faults.active()] == [forever.id]
    assert sim.faults.delay_s("opcua") == pytest.approx(0.2)
    assert sim.faults.clear(timed.id) == 0
    assert sim.faults.clear() == 1


def test_stuck_sensor_holds_its_value_while_the_plant_moves() -> None:
    """A stuck signal reports the value it had when the fault began."""
    sim = Sim(seed=1)
    counter = sim.signal("counter")
    sim.faults.add("stuck", "counter")
    step(sim, 1)
    assert sim.signal("counter") == counter
    assert sim.plant.counter > counter


def test_drift_grows_with_time_and_noise_scatters() -> None:
    """Drift adds rate times elapsed; noise changes reads around the true value."""
    sim = Sim(seed=1)
    sim.faults.add("drift", "pressure", rate_per_s=0.1)
    step(sim, 10)
    assert sim.signal("pressure") - sim.plant.pressure_bar == pytest.approx(1.0, abs=0.02)
    sim.faults.add("noise", "flow", sigma=1.0)
    reads = {round(sim.signal("flow"), 6) for _ in range(20)}
    assert len(reads) > 10


def test_exception_fault_by_address() -> None:
    """An exception fault can aim at one address or all."""
    sim = Sim(seed=1)
    sim.faults.add("exception", "modbus_tcp", code=6, address=100)
    assert sim.faults.exception_code("modbus_tcp", 100) == 6
    assert sim.faults.exception_code("modbus_tcp", 0) is None
    assert sim.faults.exception_code("modbus_rtu", 100) is None


def test_reboot_silences_every_face_and_resets_the_plc() -> None:
    """A reboot fault: all faces silent, writes refused, PLC state reset, listeners told."""
    sim = Sim(seed=1)
    step(sim, 2)
    told: list[str] = []
    sim.on_reboot(lambda: told.append("reboot"))
    sim.faults.add("reboot", duration_s=2)
    assert told == ["reboot"]
    assert sim.faults.silent("modbus_tcp")
    assert sim.faults.silent("opcua")
    assert sim.plant.counter == 0
    assert not sim.write("modbus_tcp", "holding 200", "speed_setpoint_rpm", 1500).accepted
    step(sim, 2.1)
    assert not sim.rebooting


@pytest.mark.parametrize(("kind", "target", "message"), [
    ("meteor", "*", "unknown fault kind"),
    ("stuck", "*", "needs a signal"),
    ("bearing", "vib_de", "needs a mode"),
])
def test_bad_fault_requests_are_refused(kind: str, target: str, message: str) -> None:
    """Unknown kinds and signal faults without a signal are errors."""
    sim = Sim(seed=1)
    with pytest.raises(FaultError, match=message):
        sim.faults.add(kind, target)


@pytest.mark.parametrize("code", [0x80000000, 0x00000000, 0x140000000, True, "0x40900000"])
def test_an_uncertain_fault_takes_only_an_uncertain_status(code: object) -> None:
    sim = Sim(seed=1)
    with pytest.raises(FaultError, match="uncertain code must be an OPC UA Uncertain status"):
        sim.faults.add("uncertain", "opcua", code=code)
    assert sim.faults.add("uncertain", "opcua", code=0x40930000).params == {"code": 0x40930000}


def test_write_log_records_accepted_and_refused_writes() -> None:
    """Every write is logged with its face, target, value and the PLC's verdict."""
    sim = Sim(seed=1)
    sim.write("modbus_tcp", "holding 200", "speed_setpoint_rpm", 1600)
    sim.write("opcua", "ns=2;s=PumpSkid.Motor.SpeedSetpoint", "speed_setpoint_rpm", 9999)
    sim.refuse("modbus_tcp", "holding 100", 5, "read-only register")
    log = sim.writes.query()
    assert [(r.face, r.accepted) for r in log] == [("modbus_tcp", True), ("opcua", False),
                                                   ("modbus_tcp", False)]
    assert log[1].reason == "setpoint outside 0..1800 rpm"
    assert sim.writes.query(accepted=True)[0].value == 1600
    assert sim.writes.query(since_seq=log[1].seq) == [log[2]]


async def test_scenario_plays_faults_and_writes_on_plant_time() -> None:
    """A timeline applies each action when plant time reaches it."""
    sim = Sim(seed=1)
    scenario = Scenario.from_dict({"timeline": [
        {"at": 1, "fault": {"kind": "dropout", "target": "modbus_tcp", "duration_s": 1}},
        {"at": 0.5, "write": {"name": "speed_setpoint_rpm", "value": 1500}},
        {"at": 3, "clear": "all"},
    ]})
    import asyncio

    task = asyncio.create_task(scenario.play(sim))
    await asyncio.sleep(0)
    step(sim, 0.6)
    await asyncio.sleep(0)
    assert sim.plant.speed_setpoint_rpm == 1500
    step(sim, 0.5)
    await asyncio.sleep(0)
    assert sim.faults.silent("modbus_tcp")
    step(sim, 2)
    await asyncio.wait_for(task, 1)
    assert not sim.faults.active()


@pytest.mark.parametrize("doc", [
    {}, {"timeline": [{"fault": {"kind": "dropout"}}]},
    {"timeline": [{"at": 1, "fault": {"kind": "meteor"}}]},
    {"timeline": [{"at": 1, "write": {"name": "run"}}]},
    {"timeline": [{"at": 1, "write": {"name": "run", "value": 1}, "clear": "all"}]},
])
def test_bad_scenarios_are_refused(doc: object) -> None:
    """A scenario that cannot be played is refused before it starts."""
    with pytest.raises(ScenarioError):
        Scenario.from_dict(doc)
