"""The pump skid's physics and its own PLC logic, stepped deterministically."""

import pytest

from plcsim.plant import (
    LOW_LEVEL_PCT,
    NOMINAL_FLOW_M3H,
    NOMINAL_SPEED_RPM,
    RAMP_RPM_PER_S,
    TRIP_TEMP_C,
    PumpSkid,
)


def run_for(plant: PumpSkid, seconds: float, dt_s: float = 0.1) -> None:
    for _ in range(round(seconds / dt_s)):
        plant.tick(dt_s)


def test_same_seed_same_plant() -> None:
    """Deterministic: two skids with one seed and one tick sequence agree exactly."""
    a, b = PumpSkid(7), PumpSkid(7)
    run_for(a, 30)
    run_for(b, 30)
    assert (a.flow_m3h, a.tank_level_pct, a.motor_temp_c) == (b.flow_m3h, b.tank_level_pct,
                                                              b.motor_temp_c)


def test_speed_ramps_towards_setpoint() -> None:
    """A setpoint change is followed at the ramp limit, not in one step."""
    plant = PumpSkid(1)
    assert plant.write("speed_setpoint_rpm", 1750).accepted
    plant.tick(1.0)
    assert plant.speed_rpm == pytest.approx(NOMINAL_SPEED_RPM + RAMP_RPM_PER_S)
    run_for(plant, 5)
    assert plant.speed_rpm == pytest.approx(1750)


def test_affinity_laws_flow_with_speed_pressure_with_its_square() -> None:
    """Flow scales with speed, head with its square."""
    plant = PumpSkid(1)
    run_for(plant, 1)
    flow_1, pressure_1 = plant.flow_m3h, plant.pressure_bar
    plant.write("speed_setpoint_rpm", NOMINAL_SPEED_RPM / 2)
    run_for(plant, 10)
    assert plant.flow_m3h == pytest.approx(flow_1 / 2, rel=0.02)
    assert plant.pressure_bar == pytest.approx(pressure_1 / 4, rel=0.05)
    assert flow_1 == pytest.approx(NOMINAL_FLOW_M3H, rel=0.02)


def test_motor_heats_with_load_first_order() -> None:
    """More speed, more current, a higher temperature approached gradually."""
    plant = PumpSkid(1)
    start_temp, start_current = plant.motor_temp_c, plant.motor_current_a
    plant.write("speed_setpoint_rpm", 1700)
    run_for(plant, 60)
    assert plant.motor_current_a > start_current
    after_1_min = plant.motor_temp_c
    run_for(plant, 600)
    assert start_temp < after_1_min < plant.motor_temp_c


def test_stopped_pump_lets_the_tank_fill_and_motor_cool() -> None:
    """With the pump off, inflow raises the level and the motor cools."""
    plant = PumpSkid(1)
    level, temp = plant.tank_level_pct, plant.motor_temp_c
    assert plant.write("run", False).accepted
    run_for(plant, 120)
    assert plant.flow_m3h == 0
    assert plant.tank_level_pct > level
    assert plant.motor_temp_c < temp


def test_plc_refuses_start_below_low_level_and_stops_on_dry_run() -> None:
    """The PLC's own interlock: no start below the low limit, stop when the level gets there."""
    plant = PumpSkid(1)
    plant.write("valve_position_pct", 0)  # no inflow: the pump drains the tank
    run_for(plant, 600)
    assert not plant.run
    assert plant.interlock_reason == "tank level fell below the low limit"
    assert plant.tank_level_pct < LOW_LEVEL_PCT + 1
    refused = plant.write("run", True)
    assert not refused.accepted
    assert "interlock" in (refused.reason or "")


def test_over_temperature_trips_and_reset_needs_cooling() -> None:
    """An overloaded motor trips; the trip resets only once cooled, and blocks a restart."""
    plant = PumpSkid(1)
    plant.write("speed_setpoint_rpm", 1800)
    for _ in range(30_000):
        plant.tick(1.0)
        if plant.tripped:
            break
    assert plant.tripped
    assert plant.motor_temp_c > TRIP_TEMP_C - 0.5
    assert not plant.write("run", True).accepted
    assert not plant.reset_trip().accepted
    run_for(plant, 1200, dt_s=1.0)
    assert plant.reset_trip().accepted
    assert plant.write("run", True).accepted


@pytest.mark.parametrize(("name", "value"), [("speed_setpoint_rpm", 5000),
                                             ("valve_position_pct", -1), ("counter", 3)])
def test_out_of_range_and_unknown_writes_are_refused(name: str, value: float) -> None:
    """Refused writes change nothing and say why."""
    plant = PumpSkid(1)
    before = (plant.speed_setpoint_rpm, plant.valve_position_pct)
    result = plant.write(name, value)
    assert not result.accepted
    assert result.reason
    assert (plant.speed_setpoint_rpm, plant.valve_position_pct) == before


def test_reboot_resets_volatile_state() -> None:
    """A PLC reboot restarts the counter and comes up with the pump stopped."""
    plant = PumpSkid(1)
    run_for(plant, 5)
    plant.write("speed_setpoint_rpm", 1600)
    plant.reboot()
    assert plant.counter == 0
    assert not plant.run
    assert plant.speed_setpoint_rpm == NOMINAL_SPEED_RPM
