"""The pump skid's Modbus register map: which plant value sits at which address, and how.

Addresses are 0-based PDU addresses ("40001" in vendor documents is holding 0). Anything
not listed here answers Modbus exception 2 (Illegal Data Address).

| Table    | Address | Name           | Type    | Order | Unit  | Access | Behaviour               |
|----------|---------|----------------|---------|-------|-------|--------|-------------------------|
| holding  | 0-1     | counter        | uint32  | ABCD  | ticks | read   | +1 per 100 ms tick      |
| holding  | 100-101 | motor_temp     | float32 | ABCD  | degC  | read   | 60 +/- 5 sine, noise    |
| holding  | 200     | speed_setpoint | uint16  | -     | rpm   | write  | default 1450            |
| holding  | 300-301 | flow           | float32 | CDAB  | m3/h  | read   | 12 at 1450 rpm, 0 off   |
| input    | 0       | tank_level     | uint16  | -     | 0.1 % | read   | 200..800, slow sine     |
| coil     | 0       | run            | bool    | -     | -     | write  | true                    |
| discrete | 0       | level_low      | bool    | -     | -     | read   | true while level < 25 % |
| holding  | 1000-   | vib_de         | int16   | -     | 0.001 | read   | 256 samples at 2560 Hz, |
|          | 1255    |                | x 256   |       | g     |        | new block every tick    |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from plcsim.plant import VIBRATION_SAMPLES, PumpSkid
from plcsim.registers import RegisterImage, Table, WordOrder, to_words

HOLDING_COUNTER = 0
HOLDING_MOTOR_TEMP = 100
HOLDING_SPEED_SETPOINT = 200
HOLDING_FLOW = 300
INPUT_TANK_LEVEL = 0
COIL_RUN = 0
DISCRETE_LEVEL_LOW = 0
HOLDING_VIBRATION = 1000

TANK_LEVEL_SCALE = 0.1  # percent per count
VIBRATION_SCALE_G = 0.001  # g per count


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One mapped value."""

    name: str
    table: Table
    address: int
    data_type: str  # uint16 | uint32 | float32 | bool
    order: WordOrder = WordOrder.ABCD
    unit: str | None = None
    writable: bool = False
    count: int = 1  # values in a block (a waveform)

    @property
    def width(self) -> int:
        """Registers (or bits) the entry spans."""
        return self.count * (2 if self.data_type in ("uint32", "float32") else 1)


SKID_MAP: tuple[MapEntry, ...] = (
    MapEntry("counter", Table.HOLDING, HOLDING_COUNTER, "uint32", unit="ticks"),
    MapEntry("motor_temp", Table.HOLDING, HOLDING_MOTOR_TEMP, "float32", unit="degC"),
    MapEntry("speed_setpoint", Table.HOLDING, HOLDING_SPEED_SETPOINT, "uint16", unit="rpm",
             writable=True),
    MapEntry("flow", Table.HOLDING, HOLDING_FLOW, "float32", WordOrder.CDAB, unit="m3/h"),
    MapEntry("tank_level", Table.INPUT, INPUT_TANK_LEVEL, "uint16", unit="0.1 %"),
    MapEntry("run", Table.COIL, COIL_RUN, "bool", writable=True),
    MapEntry("level_low", Table.DISCRETE, DISCRETE_LEVEL_LOW, "bool"),
    MapEntry("vib_de", Table.HOLDING, HOLDING_VIBRATION, "int16", unit="0.001 g",
             count=VIBRATION_SAMPLES),
)


def _values(plant: PumpSkid) -> dict[str, float | bool | list[float]]:
    return {
        "counter": plant.counter,
        "motor_temp": plant.motor_temp_c,
        "speed_setpoint": plant.speed_setpoint_rpm,
        "flow": plant.flow_m3h,
        "tank_level": round(plant.tank_level_pct / TANK_LEVEL_SCALE),
        "run": plant.run,
        "level_low": plant.level_low,
        "vib_de": [round(g / VIBRATION_SCALE_G) for g in plant.vibration_g],
    }


def render(plant: PumpSkid, image: RegisterImage) -> None:
    """Write the plant's current values into ``image`` at their mapped addresses."""
    values = _values(plant)
    for entry in SKID_MAP:
        value = values[entry.name]
        if isinstance(value, list):
            words = [w for v in value for w in to_words(v, entry.data_type, entry.order)]
            image.set(entry.table, entry.address, words)
        elif entry.data_type == "bool":
            image.set(entry.table, entry.address, [bool(value)])
        else:
            image.set(entry.table, entry.address, to_words(value, entry.data_type, entry.order))


def writable_span(table: Table, address: int, count: int) -> bool:
    """True when every address of the write hits a writable entry, and whole entries only."""
    covered: set[int] = set()
    for entry in SKID_MAP:
        if entry.table is table and entry.writable:
            span = range(entry.address, entry.address + entry.width)
            if span.start >= address and span.stop <= address + count:
                covered.update(span)
    return covered == set(range(address, address + count))


def apply_write(plant: PumpSkid, table: Table, address: int, values: Sequence[int | bool]) -> None:
    """Apply a client write to the plant; the caller checked ``writable_span`` first."""
    for offset, value in enumerate(values):
        where = address + offset
        if table is Table.HOLDING and where == HOLDING_SPEED_SETPOINT:
            plant.speed_setpoint_rpm = int(value)
        elif table is Table.COIL and where == COIL_RUN:
            plant.run = bool(value)
