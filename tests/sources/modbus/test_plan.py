"""Read planning: points merged into blocks within the Modbus request limits."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edgetwin.sources.modbus.config import DataType, ModbusPoint, RegisterKind
from edgetwin.sources.modbus.plan import (
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    plan_reads,
    poll_groups,
    read_limit,
)


def point(address: int, name: str | None = None, **fields: Any) -> ModbusPoint:
    return ModbusPoint.model_validate(
        {"id": f"a/{name or f'p{address}'}", "address": address, **fields}
    )


def layout(points: list[ModbusPoint], max_gap: int = 16) -> list[tuple[str, int, int]]:
    return [(b.table.value, b.address, b.count) for b in plan_reads(points, max_gap=max_gap)]


def test_adjacent_and_nearby_points_share_one_request() -> None:
    """Points up to max_gap unused registers apart merge; farther ones do not."""
    points = [
        point(0, type="uint32"),  # 0-1
        point(2),  # adjacent
        point(19),  # gap of 16 after 2
        point(36),  # gap of 16 after 19
        point(54),  # gap of 17: new block
    ]
    assert layout(points) == [("holding", 0, 37), ("holding", 54, 1)]
    assert layout(points, max_gap=0) == [
        ("holding", 0, 3), ("holding", 19, 1), ("holding", 36, 1), ("holding", 54, 1)
    ]


def test_block_never_exceeds_125_registers() -> None:
    """A run of points is cut where the next one would pass the FC3/FC4 limit."""
    points = [point(a, type="uint32") for a in range(0, 300, 2)]
    blocks = plan_reads(points, max_gap=16)
    assert [(b.address, b.count) for b in blocks] == [(0, 124), (124, 124), (248, 52)]
    assert sum(len(b.slots) for b in blocks) == len(points)


def test_bit_tables_allow_2000_bits() -> None:
    """Coils merge up to 2000 bits per request."""
    coils = [point(a, kind="coil", type="bool") for a in range(2500)]
    assert layout(coils) == [("coil", 0, 2000), ("coil", 2000, 500)]


def test_tables_are_never_mixed() -> None:
    """Same addresses in different tables give separate blocks, ordered by table."""
    points = [
        point(0, "h"), point(0, "i", kind="input"), point(0, "c", kind="coil", type="bool"),
        point(0, "d", kind="discrete", type="bool"),
    ]
    assert layout(points) == [
        ("holding", 0, 1), ("input", 0, 1), ("coil", 0, 1), ("discrete", 0, 1)
    ]


def test_oversized_waveform_is_split_into_requests() -> None:
    """4096 registers: one block, 33 requests of at most 125, contiguous."""
    wave = point(1000, "vib", type="int16", count=4096, waveform={"sample_rate": 12000})
    neighbour = point(999, "before")
    blocks = plan_reads([wave, neighbour, point(5096, "after")], max_gap=16)
    assert [(b.address, b.count) for b in blocks] == [(999, 1), (1000, 4096), (5096, 1)]
    requests = blocks[1].requests()
    assert len(requests) == 33
    assert requests[0] == (1000, 125)
    assert requests[-1] == (5000, 96)
    assert all(nxt[0] == cur[0] + cur[1] for cur, nxt in itertools.pairwise(requests))


def test_overlapping_points_share_registers() -> None:
    """A uint16 view of a uint32's high word reads from the same block."""
    blocks = plan_reads([point(10, "whole", type="uint32"), point(10, "high")], max_gap=0)
    assert len(blocks) == 1
    assert (blocks[0].address, blocks[0].count) == (10, 2)
    assert sorted(s.offset for s in blocks[0].slots) == [0, 0]


def test_split_gives_one_block_per_point() -> None:
    """split() isolates each point (used after an exception response)."""
    (block,) = plan_reads([point(0, type="uint32"), point(5)], max_gap=16)
    assert [(b.address, b.count, len(b.slots)) for b in block.split()] == [(0, 2, 1), (5, 1, 1)]
    assert block.describe() == "holding 0x6"


def test_points_are_grouped_by_poll_interval() -> None:
    """A point's poll_interval makes a group of its own; fastest first."""
    points = [point(0), point(1, poll_interval=5), point(2), point(3, poll_interval=0.1)]
    groups = poll_groups(points, default_interval_s=1.0, max_gap=16)
    assert [g.interval_s for g in groups] == [0.1, 1.0, 5.0]
    assert [[p.address for p in g.points()] for g in groups] == [[3], [0, 2], [1]]


point_specs = st.tuples(
    st.sampled_from(list(RegisterKind)),
    st.integers(0, 3000),
    st.sampled_from([DataType.UINT16, DataType.FLOAT32, DataType.UINT64, DataType.STRING,
                     DataType.BOOL]),
    st.integers(1, 300),
)


@given(specs=st.lists(point_specs, min_size=1, max_size=60), max_gap=st.integers(0, 124))
def test_every_plan_respects_the_limits(specs: list[tuple[Any, ...]], max_gap: int) -> None:
    """Every point (values, blocks, strings, bits) lands in exactly one block within limits."""
    points = []
    for index, (table, address, data_type, count) in enumerate(specs):
        fields: dict[str, Any] = {"kind": table.value, "count": count if count < 20 else 1}
        fields["type"] = "bool" if table.is_bit else data_type.value
        if not table.is_bit and data_type is DataType.STRING:
            fields.update(count=1, length=count % 40 + 1)  # a string of up to 40 registers
        elif not table.is_bit and data_type is DataType.BOOL:
            fields.update(count=1, bit=count % 16)  # a bit inside a register
        points.append(point(address, f"p{index}", **fields))
    blocks = plan_reads(points, max_gap=max_gap)
    placed = [slot.point.id for b in blocks for slot in b.slots]
    assert sorted(placed) == sorted(p.id for p in points)
    for block in blocks:
        limit = read_limit(block.table)
        assert limit in (MAX_READ_REGISTERS, MAX_READ_BITS)
        assert block.count <= limit or len(block.slots) == 1
        for slot in block.slots:
            assert slot.point.table is block.table
            assert slot.point.address == block.address + slot.offset
            assert slot.offset + slot.point.width <= block.count
        requests = block.requests()
        assert all(1 <= count <= limit for _, count in requests)
        assert sum(count for _, count in requests) == block.count
