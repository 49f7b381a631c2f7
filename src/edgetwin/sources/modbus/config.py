"""Modbus TCP and RTU source configuration: every check, no I/O."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgetwin.config.model import Model, PointConfig, Port, Seconds, SourceConfig


class RegisterKind(enum.Enum):
    """The four Modbus tables."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bit(self) -> bool:
        """Coils and discrete inputs hold bits; the other two hold 16-bit registers."""
        return self in (RegisterKind.COIL, RegisterKind.DISCRETE)


class DataType(enum.Enum):
    """How a point's registers are decoded."""

    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT64 = "float64"
    STRING = "string"  # ``length`` registers of text, two characters each

    @property
    def registers(self) -> int:
        """16-bit registers one value takes (a bit counts as one coil; a string varies)."""
        return _REGISTERS[self]


_REGISTERS = {
    DataType.BOOL: 1, DataType.INT16: 1, DataType.UINT16: 1,
    DataType.INT32: 2, DataType.UINT32: 2, DataType.FLOAT32: 2,
    DataType.INT64: 4, DataType.UINT64: 4, DataType.FLOAT64: 4,
    DataType.STRING: 1,  # per register; a string point spans ``length`` of them
}


class ByteOrder(enum.Enum):
    """Byte and word order of multi-register values, A = most significant byte.

    The four-letter names apply to every width: for a 64-bit value CDAB reverses all four
    words (GHEFCDAB) and DCBA is fully little-endian. The eight-letter names spell out the
    64-bit layouts, including the two the short names cannot say (halves swapped).
    """

    ABCD = "ABCD"  # big-endian, the Modbus default
    CDAB = "CDAB"  # word swap, common for floats
    BADC = "BADC"  # byte swap in each register
    DCBA = "DCBA"  # little-endian
    ABCDEFGH = "ABCDEFGH"  # 64-bit big-endian (= ABCD)
    BADCFEHG = "BADCFEHG"  # bytes swapped in each register (= BADC)
    CDABGHEF = "CDABGHEF"  # words swapped inside each 32-bit half
    DCBAHGFE = "DCBAHGFE"  # little-endian inside each 32-bit half, halves big-endian
    EFGHABCD = "EFGHABCD"  # 32-bit halves swapped
    FEHGBADC = "FEHGBADC"  # halves swapped, bytes swapped in each register
    GHEFCDAB = "GHEFCDAB"  # all four words reversed (= CDAB)
    HGFEDCBA = "HGFEDCBA"  # little-endian (= DCBA)

    @property
    def is_wide(self) -> bool:
        """An eight-letter (64-bit only) order."""
        return len(self.value) == 8


POLL_INTERVAL_FLOOR_S = 0.01  # faster polling starves every other point on the link


def _check_poll_interval(interval_s: float | None) -> float | None:
    if interval_s is not None and interval_s < POLL_INTERVAL_FLOOR_S:
        raise ValueError(f"poll_interval below {POLL_INTERVAL_FLOOR_S:g} s is refused")
    return interval_s


class Waveform(Model):
    """A block of registers read together as one sampled signal."""

    sample_rate: float = Field(gt=0)  # Hz
    scale: float = 1.0  # engineering units per count
    unit: str | None = None
    # A register (same table as the block) that changes whenever the device makes a new
    # capture: read before and after the block, which is read again until both agree, so a
    # capture replaced halfway through a multi-request read is never delivered.
    counter_address: int | None = Field(default=None, ge=0, le=65535)
    counter_type: Literal["uint16", "uint32"] = "uint16"


class ModbusPoint(PointConfig):
    """One Modbus point: a value, or a waveform block when ``count`` > 1."""

    address: int = Field(ge=0, le=65535)  # 0-based PDU address; "40001" in vendor docs is 0
    kind: Literal["holding", "input", "coil", "discrete"] = "holding"
    type: DataType = DataType.UINT16
    scale: float = 1.0
    offset: float = 0.0
    byte_order: ByteOrder | None = None  # None: the source's byte_order
    count: int = Field(default=1, ge=1, le=65536)
    length: int | None = Field(default=None, ge=1, le=123)  # registers of a string point
    bit: int | None = Field(default=None, ge=0, le=15)  # a bool inside a register, 0 = LSB
    waveform: Waveform | None = None
    poll_interval: Seconds | None = None  # None: the source's poll_interval

    @property
    def table(self) -> RegisterKind:
        """The register table as an enum."""
        return RegisterKind(self.kind)

    @property
    def width(self) -> int:
        """Registers (or bits) the point spans."""
        if self.type is DataType.STRING:
            return self.length or 1
        return self.type.registers * self.count

    # A field validator (not a model one) so the error names the key: ...points[3].poll_interval
    _point_poll_interval_floor = field_validator("poll_interval")(_check_poll_interval)

    @model_validator(mode="after")
    def _consistent(self) -> ModbusPoint:
        if self.table.is_bit and self.type is not DataType.BOOL:
            raise ValueError(f"a {self.kind} holds bits: type must be bool, not {self.type.value}")
        if not self.table.is_bit and self.type is DataType.BOOL and self.bit is None:
            raise ValueError(
                f"a {self.kind} register holds 16 bits: bool needs kind coil or discrete,"
                " or a bit (0-15) inside the register"
            )
        if self.bit is not None and (self.table.is_bit or self.type is not DataType.BOOL):
            raise ValueError("bit picks a bool out of a holding or input register:"
                             " it needs type bool and kind holding or input")
        if self.bit is not None and self.writable:
            raise ValueError("a bit inside a register cannot be written without touching its"
                             " neighbours; writable bits need a coil")
        if (self.type is DataType.STRING) != (self.length is not None):
            raise ValueError("a string needs length (registers, two characters each),"
                             " and length goes only with type string")
        if self.type is DataType.STRING and self.count != 1:
            raise ValueError("a string is one value: count must be 1")
        if self.byte_order is not None and self.byte_order.is_wide and self.type not in (
            DataType.INT64, DataType.UINT64, DataType.FLOAT64
        ):
            raise ValueError(f"byte order {self.byte_order.value} is for 64-bit types;"
                             f" use ABCD, CDAB, BADC or DCBA for {self.type.value}")
        if self.address + self.width - 1 > 65535:
            raise ValueError(
                f"address {self.address} + {self.width} registers runs past 65535"
            )
        if self.waveform is not None and self.count < 2:
            raise ValueError("a waveform needs count >= 2 samples")
        if self.writable and self.kind in ("input", "discrete"):
            raise ValueError(
                f"{self.kind} is a read-only table; writable needs kind holding or coil"
            )
        if self.writable and self.waveform is not None:
            raise ValueError("a waveform is read-only")
        limit = 1968 if self.table.is_bit else 123  # FC15 / FC16 quantities (FACTS 3.1)
        if self.writable and self.width > limit:
            raise ValueError(f"a writable {self.kind} block spans {self.width};"
                             f" one write takes at most {limit}")
        return self


class _ModbusCommon(SourceConfig):
    points: tuple[ModbusPoint, ...] = Field(min_length=1)  # narrowed from PointConfig
    poll_interval: Seconds = 1.0
    timeout: Seconds = 1.0
    byte_order: ByteOrder = ByteOrder.ABCD
    # Unused addresses one read may span to merge neighbouring points into one request
    # (registers for holding/input, bits for coil/discrete); 0 merges only adjacent points.
    max_read_gap: int = Field(default=16, ge=0, le=124)
    unit_id: int = 1  # narrowed by each link type

    _poll_interval_floor = field_validator("poll_interval")(_check_poll_interval)

    def link(self) -> str:
        """The connection (or bus) this source reads through, shared by every unit id on it."""
        raise NotImplementedError

    def link_settings(self) -> tuple[object, ...]:
        """What every source sharing the link must agree on: the one client has them once."""
        return (self.timeout,)

    def resources(self) -> frozenset[str]:
        """The link; other Modbus sources of other unit ids may share it (see below)."""
        return frozenset({self.link()})

    def shares_resource_with(self, other: SourceConfig) -> bool:
        """Another unit id on the same link, of the same type and with the same settings.

        One unit id twice is refused: its two sources would back off and report
        independently about one device, and split what one read plan merges.
        """
        return (
            isinstance(other, _ModbusCommon)
            and other.type == self.type
            and other.link() == self.link()
            and other.link_settings() == self.link_settings()
            and other.unit_id != self.unit_id
        )


class ModbusTcpConfig(_ModbusCommon):
    """A Modbus TCP device (or a TCP-to-RTU gateway)."""

    type: Literal["modbus_tcp"]  # the union's discriminator
    host: str = Field(min_length=1)
    port: Port = 502
    # 0 is broadcast to many devices (reads get no reply); 255 is the "not significant" id.
    unit_id: int = Field(default=1, ge=1, le=255)

    def link(self) -> str:
        """``modbus_tcp:host:port``: sources naming one device alike share one connection."""
        return f"modbus_tcp:{self.host.lower()}:{self.port}"


class Parity(enum.Enum):
    """Serial parity."""

    NONE = "N"
    EVEN = "E"
    ODD = "O"


class ModbusRtuConfig(_ModbusCommon):
    """A Modbus RTU device on a serial line."""

    type: Literal["modbus_rtu"]  # the union's discriminator
    port: str = Field(min_length=1)  # device path, e.g. /dev/ttyUSB0
    baudrate: int = Field(default=19200, ge=300, le=921600)
    parity: Parity = Parity.EVEN
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(default=1, ge=1, le=247)

    def link(self) -> str:
        """``serial:<port>``: the bus every RTU source on the port shares."""
        return f"serial:{self.port}"

    def line_settings(self) -> tuple[int, str, int, int]:
        """(baudrate, parity, stopbits, bytesize) of the serial line."""
        return (self.baudrate, self.parity.value, self.stopbits, self.bytesize)

    def link_settings(self) -> tuple[object, ...]:
        """The line settings and the timeout: what every user of one bus must agree on."""
        return (*self.line_settings(), self.timeout)
