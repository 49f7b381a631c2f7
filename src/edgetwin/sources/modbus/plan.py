"""Read planning: a source's points grouped into as few spec-conforming requests as possible.

Pure, no I/O. Points are grouped per poll interval, then per table; within a table,
points whose addresses lie close together are merged into one block as long as

- the block stays within one request's limit: 125 registers (FC3/FC4) or 2000 bits
  (FC1/FC2), reference FACTS section 3.1; pymodbus checks these too, but only by raising;
- the unused addresses between two neighbours do not exceed ``max_gap``.

A point wider than one request (a waveform of 4096 registers) is a block of its own and is
read with several consecutive requests that are joined before decoding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgetwin.sources.modbus.config import ModbusPoint, RegisterKind

MAX_READ_REGISTERS = 125  # FC3/FC4 quantity limit
MAX_READ_BITS = 2000  # FC1/FC2 quantity limit


def read_limit(table: RegisterKind) -> int:
    """Largest quantity one read request of ``table`` may ask for."""
    return MAX_READ_BITS if table.is_bit else MAX_READ_REGISTERS


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one point's data sits inside a block."""

    point: ModbusPoint
    offset: int  # registers (or bits) from the block's first address


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """Consecutive addresses of one table read together and decoded together."""

    table: RegisterKind
    address: int
    count: int
    slots: tuple[Slot, ...]

    @property
    def end(self) -> int:
        """First address after the block."""
        return self.address + self.count

    def requests(self) -> tuple[tuple[int, int], ...]:
        """(address, count) of each request, in order; one unless the block is oversized."""
        limit = read_limit(self.table)
        return tuple(
            (start, min(limit, self.end - start)) for start in range(self.address, self.end, limit)
        )

    def split(self) -> tuple[ReadBlock, ...]:
        """One block per point, so one bad address no longer blanks its neighbours."""
        return tuple(_single(slot.point) for slot in self.slots)

    def describe(self) -> str:
        """``"holding 100x2"``: table, first address and quantity, for messages."""
        return f"{self.table.value} {self.address}x{self.count}"


@dataclass(frozen=True, slots=True)
class PollGroup:
    """The blocks polled together at one interval."""

    interval_s: float
    blocks: tuple[ReadBlock, ...]

    def points(self) -> tuple[ModbusPoint, ...]:
        """Every point of the group, in block order."""
        return tuple(slot.point for block in self.blocks for slot in block.slots)


def _single(point: ModbusPoint) -> ReadBlock:
    return ReadBlock(point.table, point.address, point.width, (Slot(point, 0),))


def plan_reads(points: Iterable[ModbusPoint], *, max_gap: int) -> tuple[ReadBlock, ...]:
    """Merge ``points`` into read blocks; ordered by table, then address.

    Args:
        points: the points to read together (one poll interval).
        max_gap: unused addresses a block may span between two points; 0 merges only
            adjacent or overlapping points.
    """
    by_table: dict[RegisterKind, list[ModbusPoint]] = {}
    for point in points:
        by_table.setdefault(point.table, []).append(point)
    blocks: list[ReadBlock] = []
    for table in RegisterKind:
        limit = read_limit(table)
        ordered = sorted(by_table.get(table, ()), key=lambda p: (p.address, -p.width))
        current: list[ModbusPoint] = []
        start = end = 0
        for point in ordered:
            point_end = point.address + point.width
            fits = (
                current
                and point.address - end <= max_gap
                and max(end, point_end) - start <= limit
            )
            if fits:
                current.append(point)
                end = max(end, point_end)
                continue
            if current:
                blocks.append(_block(table, start, end, current))
            current, start, end = [point], point.address, point_end
        if current:
            blocks.append(_block(table, start, end, current))
    return tuple(blocks)


def _block(table: RegisterKind, start: int, end: int, points: list[ModbusPoint]) -> ReadBlock:
    slots = tuple(Slot(p, p.address - start) for p in points)
    return ReadBlock(table, start, end - start, slots)


def poll_groups(
    points: Iterable[ModbusPoint], *, default_interval_s: float, max_gap: int
) -> tuple[PollGroup, ...]:
    """The source's points as poll groups, fastest interval first.

    A point's own ``poll_interval`` wins over ``default_interval_s``.
    """
    by_interval: dict[float, list[ModbusPoint]] = {}
    for point in points:
        interval_s = point.poll_interval or default_interval_s
        by_interval.setdefault(interval_s, []).append(point)
    return tuple(
        PollGroup(interval_s, plan_reads(group, max_gap=max_gap))
        for interval_s, group in sorted(by_interval.items())
    )
