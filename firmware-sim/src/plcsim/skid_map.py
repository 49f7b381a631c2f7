"""The pump skid's Modbus register maps: which value sits at which address, and how.

Two devices answer on the same face (TCP port or RTU line), told apart by the unit id:
unit 1 is the skid's PLC, unit 2 a vibration module on the pump's drive-end bearing. Other
unit ids: exception 0x0B on TCP (as a TCP-to-RTU gateway answers for a device missing on its
bus), no answer at all on RTU (no device has that address on the line).

Addresses are 0-based PDU addresses ("40001" in vendor documents is holding 0). Anything
not listed answers exception 2 (Illegal Data Address), and so does a request that runs past
a listed value into unlisted addresses; a read may start or end inside a multi-register
value. Values come from ``Sim.signal`` (so injected sensor faults show), integers are
``round(value / scale)`` and saturate at the type's limits (counters wrap instead), floats
are IEEE 754. Byte orders: see ``plcsim.registers`` (ABCD = big-endian).

Unit 1 - skid PLC (RW: r read-only, w writable)

| Table    | Address   | Name            | Type         | Order | Unit      | RW | Notes          |
|----------|-----------|-----------------|--------------|-------|-----------|----|----------------|
| holding  | 0-1       | counter         | uint32       | ABCD  | ticks     | r  | +1 per tick    |
| holding  | 100-101   | motor_temp      | float32      | ABCD  | degC      | r  | ~60 nominal    |
| holding  | 200       | speed_setpoint  | uint16       | -     | rpm       | w  | 1450; 0..1800  |
| holding  | 201       | valve_position  | uint16       | -     | 0.1 %     | w  | 500; 0..1000   |
| holding  | 300-301   | flow            | float32      | CDAB  | m3/h      | r  | 12 at 1450 rpm |
| holding  | 400       | speed           | int16        | -     | rpm       | r  | ramps 300/s    |
| holding  | 401       | current         | uint16       | -     | 0.01 A    | r  | 1100 nominal   |
| holding  | 402-403   | pressure        | float32      | BADC  | bar       | r  | 3 nominal      |
| holding  | 404-405   | motor_temp_i32  | int32        | CDAB  | 0.01 degC | r  | 6000 nominal   |
| holding  | 406-409   | flow_f64        | float64      | ABCD  | m3/h      | r  | flow, double   |
| holding  | 900-901   | capture_counter | uint32       | ABCD  | captures  | r  | +1 per capture |
| holding  | 902-903   | sample_rate     | float32      | ABCD  | Hz        | r  | 12000          |
| holding  | 904       | sample_count    | uint16       | -     | samples   | r  | 4096           |
| holding  | 905       | sample_scale    | uint16       | -     | ug/count  | r  | 1000           |
| holding  | 1000-5095 | vib_de          | int16 x 4096 | -     | 0.001 g   | r  | the capture    |
| input    | 0         | tank_level      | uint16       | -     | 0.1 %     | r  | 500 = 50 %     |
| input    | 100-101   | tank_level_f32  | float32      | DCBA  | %         | r  | little-endian  |
| coil     | 0         | run             | bool         | -     | -         | w  | run command    |
| coil     | 1         | reset_trip      | bool         | -     | -         | w  | push button    |
| discrete | 0         | level_low       | bool         | -     | -         | r  | level < 25 %   |
| discrete | 1         | tripped         | bool         | -     | -         | r  | trip latched   |
| discrete | 2         | running         | bool         | -     | -         | r  | run, no trip   |

- ``counter`` counts plant ticks (100 ms by default), wraps at 2^32, restarts at 0 after a
  PLC reboot. The PLC takes ``speed_setpoint`` 0..1800 rpm and ``valve_position`` (the inlet
  valve) 0..1000 (0..100 %); it refuses ``run`` = true while tripped or while the tank is
  below the low-level limit (10 %).
- ``reset_trip`` is a push button: writing true resets an over-temperature trip (refused
  until the motor cooled below 85 degC), writing false does nothing; it always reads false.
- ``motor_temp_i32``, ``flow_f64`` and ``tank_level_f32`` repeat a value in another type and
  byte order, so a gateway's decoders can be checked against each other.
- The vibration block is 4096 samples at 12 kHz by default: 33 reads of at most 125
  registers. ``sample_scale`` is micro-g per count.

Unit 2 - vibration module (the same capture as unit 1's block, on its own small map)

| Table    | Address   | Name            | Type         | Order | Unit      | RW | Notes          |
|----------|-----------|-----------------|--------------|-------|-----------|----|----------------|
| holding  | 0         | capture_counter | uint16       | -     | captures  | r  | wraps at 2^16  |
| holding  | 1-4096    | vib_de          | int16 x 4096 | -     | 0.001 g   | r  | the capture    |
| input    | 0         | sample_count    | uint16       | -     | samples   | r  | 4096           |
| input    | 1-2       | sample_rate     | uint32       | ABCD  | Hz        | r  | 12000          |
| input    | 3         | sample_scale    | uint16       | -     | ug/count  | r  | 1000           |

The waveform block holds ``clip(rint(capture_g / 0.001), -32768, 32767)`` as int16 (clipping at
+-32.767 g). Its length follows the sensor's ``capture_samples`` (4096 by default; the maps
are built for the sensor a face is given). A capture changes between two reads whenever the
sensor makes a new one: read the capture counter before and after the block (on unit 2 the
first read, holding 0-124, carries the counter with the first 124 samples) and read again if
it moved.

Writes: every write to a writable value goes to the PLC logic (``Sim.write``) and into the
write log; a value the PLC refuses answers exception 4 (Server Device Failure) and changes
nothing. A write to a read-only or unlisted address answers exception 2 and is logged as
refused (``Sim.refuse``). See ``plcsim.modbus_server`` for the rules in full.
"""

from __future__ import annotations

from dataclasses import dataclass

from plcsim.registers import DATA_TYPES, Table, WordOrder, width

UNIT_SKID = 1
UNIT_VIBRATION = 2

# Unit 1
HOLDING_COUNTER = 0
HOLDING_MOTOR_TEMP = 100
HOLDING_SPEED_SETPOINT = 200
HOLDING_VALVE_POSITION = 201
HOLDING_FLOW = 300
HOLDING_SPEED = 400
HOLDING_CURRENT = 401
HOLDING_PRESSURE = 402
HOLDING_MOTOR_TEMP_I32 = 404
HOLDING_FLOW_F64 = 406
HOLDING_CAPTURE_COUNTER = 900
HOLDING_SAMPLE_RATE = 902
HOLDING_SAMPLE_COUNT = 904
HOLDING_SAMPLE_SCALE = 905
HOLDING_VIBRATION = 1000
INPUT_TANK_LEVEL = 0
INPUT_TANK_LEVEL_F32 = 100
COIL_RUN = 0
COIL_RESET_TRIP = 1
DISCRETE_LEVEL_LOW = 0
DISCRETE_TRIPPED = 1
DISCRETE_RUNNING = 2

# Unit 2
VIB_HOLDING_COUNTER = 0
VIB_HOLDING_SAMPLES = 1
VIB_INPUT_SAMPLE_COUNT = 0
VIB_INPUT_SAMPLE_RATE = 1
VIB_INPUT_SAMPLE_SCALE = 3

DEFAULT_CAPTURE_SAMPLES = 4096
VIBRATION_SCALE_G = 0.001  # g per count of the waveform block
TANK_LEVEL_SCALE = 0.1  # percent per count (input 0)

# Sources that are not ``Sim.signal`` names.
SOURCE_CAPTURE = "@capture"  # the waveform block
SOURCE_CAPTURE_COUNTER = "@capture_counter"
SOURCE_SAMPLE_RATE = "@sample_rate_hz"
SOURCE_SAMPLE_COUNT = "@sample_count"
SOURCE_SAMPLE_SCALE = "@sample_scale_ug"  # micro-g per count
SOURCE_PUSH_BUTTON = "@push_button"  # a write-only command bit; reads false


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One mapped value (or one block of ``count`` values, a waveform)."""

    name: str
    table: Table
    address: int
    data_type: str  # bool int16 uint16 int32 uint32 float32 int64 uint64 float64
    source: str  # a Sim.signal name, or one of the SOURCE_* names above
    order: WordOrder = WordOrder.ABCD
    scale: float = 1.0  # engineering units per count, for integer types
    unit: str = ""
    write: str | None = None  # the plant input a write goes to (Sim.write name)
    count: int = 1  # values in a block
    wraps: bool = False  # a counter: wraps at the type's range instead of saturating

    def __post_init__(self) -> None:
        if self.data_type not in DATA_TYPES:
            raise ValueError(f"{self.name}: unknown data type {self.data_type!r}")
        if self.table.is_bit != (self.data_type == "bool"):
            raise ValueError(f"{self.name}: {self.data_type} in the {self.table.value} table")
        if not 0 <= self.address <= self.end - 1 <= 0xFFFF:
            raise ValueError(f"{self.name}: addresses {self.address}..{self.end - 1} "
                             "outside 0..65535")

    @property
    def width(self) -> int:
        """Registers (or bits) the entry spans."""
        return self.count * width(self.data_type)

    @property
    def end(self) -> int:
        """First address after the entry."""
        return self.address + self.width

    @property
    def writable(self) -> bool:
        """A client may write it."""
        return self.write is not None


def _waveform_fits(start: int, samples: int) -> None:
    if not 1 <= samples <= 0x10000 - start:
        raise ValueError(f"a capture of {samples} samples does not fit from address {start}")


def skid_plc_map(capture_samples: int = DEFAULT_CAPTURE_SAMPLES) -> tuple[MapEntry, ...]:
    """Unit 1's map for a vibration sensor whose captures have ``capture_samples`` samples."""
    _waveform_fits(HOLDING_VIBRATION, capture_samples)
    h, i, c, d = Table.HOLDING, Table.INPUT, Table.COIL, Table.DISCRETE
    return (
        MapEntry("counter", h, HOLDING_COUNTER, "uint32", "counter", unit="ticks", wraps=True),
        MapEntry("motor_temp", h, HOLDING_MOTOR_TEMP, "float32", "motor_temp", unit="degC"),
        MapEntry("speed_setpoint", h, HOLDING_SPEED_SETPOINT, "uint16", "speed_setpoint",
                 unit="rpm", write="speed_setpoint_rpm"),
        MapEntry("valve_position", h, HOLDING_VALVE_POSITION, "uint16", "valve_position",
                 scale=0.1, unit="%", write="valve_position_pct"),
        MapEntry("flow", h, HOLDING_FLOW, "float32", "flow", WordOrder.CDAB, unit="m3/h"),
        MapEntry("speed", h, HOLDING_SPEED, "int16", "speed", unit="rpm"),
        MapEntry("current", h, HOLDING_CURRENT, "uint16", "current", scale=0.01, unit="A"),
        MapEntry("pressure", h, HOLDING_PRESSURE, "float32", "pressure", WordOrder.BADC,
                 unit="bar"),
        MapEntry("motor_temp_i32", h, HOLDING_MOTOR_TEMP_I32, "int32", "motor_temp",
                 WordOrder.CDAB, scale=0.01, unit="degC"),
        MapEntry("flow_f64", h, HOLDING_FLOW_F64, "float64", "flow", unit="m3/h"),
        MapEntry("capture_counter", h, HOLDING_CAPTURE_COUNTER, "uint32",
                 SOURCE_CAPTURE_COUNTER, unit="captures", wraps=True),
        MapEntry("sample_rate", h, HOLDING_SAMPLE_RATE, "float32", SOURCE_SAMPLE_RATE,
                 unit="Hz"),
        MapEntry("sample_count", h, HOLDING_SAMPLE_COUNT, "uint16", SOURCE_SAMPLE_COUNT,
                 unit="samples"),
        MapEntry("sample_scale", h, HOLDING_SAMPLE_SCALE, "uint16", SOURCE_SAMPLE_SCALE,
                 unit="ug/count"),
        MapEntry("vib_de", h, HOLDING_VIBRATION, "int16", SOURCE_CAPTURE,
                 scale=VIBRATION_SCALE_G, unit="g", count=capture_samples),
        MapEntry("tank_level", i, INPUT_TANK_LEVEL, "uint16", "tank_level",
                 scale=TANK_LEVEL_SCALE, unit="%"),
        MapEntry("tank_level_f32", i, INPUT_TANK_LEVEL_F32, "float32", "tank_level",
                 WordOrder.DCBA, unit="%"),
        MapEntry("run", c, COIL_RUN, "bool", "run", write="run"),
        MapEntry("reset_trip", c, COIL_RESET_TRIP, "bool", SOURCE_PUSH_BUTTON,
                 write="reset_trip"),
        MapEntry("level_low", d, DISCRETE_LEVEL_LOW, "bool", "level_low"),
        MapEntry("tripped", d, DISCRETE_TRIPPED, "bool", "tripped"),
        MapEntry("running", d, DISCRETE_RUNNING, "bool", "running"),
    )


def vibration_module_map(capture_samples: int = DEFAULT_CAPTURE_SAMPLES
                         ) -> tuple[MapEntry, ...]:
    """Unit 2's map: the capture counter and the waveform, plus what describes them."""
    _waveform_fits(VIB_HOLDING_SAMPLES, capture_samples)
    h, i = Table.HOLDING, Table.INPUT
    return (
        MapEntry("capture_counter", h, VIB_HOLDING_COUNTER, "uint16", SOURCE_CAPTURE_COUNTER,
                 unit="captures", wraps=True),
        MapEntry("vib_de", h, VIB_HOLDING_SAMPLES, "int16", SOURCE_CAPTURE,
                 scale=VIBRATION_SCALE_G, unit="g", count=capture_samples),
        MapEntry("sample_count", i, VIB_INPUT_SAMPLE_COUNT, "uint16", SOURCE_SAMPLE_COUNT,
                 unit="samples"),
        MapEntry("sample_rate", i, VIB_INPUT_SAMPLE_RATE, "uint32", SOURCE_SAMPLE_RATE,
                 unit="Hz"),
        MapEntry("sample_scale", i, VIB_INPUT_SAMPLE_SCALE, "uint16", SOURCE_SAMPLE_SCALE,
                 unit="ug/count"),
    )


SKID_MAP = skid_plc_map()
VIBRATION_MAP = vibration_module_map()
UNIT_MAPS = {UNIT_SKID: SKID_MAP, UNIT_VIBRATION: VIBRATION_MAP}


def unit_maps(capture_samples: int = DEFAULT_CAPTURE_SAMPLES
              ) -> dict[int, tuple[MapEntry, ...]]:
    """Both units' maps for a capture length."""
    return {UNIT_SKID: skid_plc_map(capture_samples),
            UNIT_VIBRATION: vibration_module_map(capture_samples)}
