"""The pump skid model and register encoding, without any server."""

from __future__ import annotations

import pytest

from plcsim.plant import VIBRATION_SAMPLES, PumpSkid
from plcsim.registers import RegisterImage, Table, WordOrder, to_words
from plcsim.skid_map import SKID_MAP, render, writable_span


def test_counter_counts_ticks_and_wraps() -> None:
    """One increment per tick; a uint32 wraps to 0."""
    skid = PumpSkid(seed=1)
    for _ in range(3):
        skid.tick(0.1)
    assert skid.counter == 3
    skid.counter = 2**32 - 1
    skid.tick(0.1)
    assert skid.counter == 0


def test_signals_stay_in_their_bands_over_two_level_periods() -> None:
    """Temperature, level and flow stay where the README says, and they move."""
    skid = PumpSkid(seed=2)
    temps, levels = [], []
    for _ in range(2400):  # 240 s: four temperature and two level periods
        skid.tick(0.1)
        temps.append(skid.motor_temp_c)
        levels.append(skid.tank_level_pct)
        assert 54.5 <= skid.motor_temp_c <= 65.5
        assert 20.0 <= skid.tank_level_pct <= 80.0
        assert 11.0 <= skid.flow_m3h <= 13.0
        assert len(skid.vibration_g) == VIBRATION_SAMPLES
        assert max(abs(g) for g in skid.vibration_g) <= 0.65
    assert max(temps) - min(temps) > 8.0
    assert max(levels) - min(levels) > 50.0


def test_stopped_pump_has_no_flow_or_vibration() -> None:
    """run=false: flow and vibration go to zero on the next tick."""
    skid = PumpSkid(seed=3)
    skid.run = False
    skid.tick(0.1)
    assert skid.flow_m3h == 0.0
    assert set(skid.vibration_g) == {0.0}


@pytest.mark.parametrize(
    ("order", "words"),
    [
        (WordOrder.ABCD, [0x3F80, 0x0000]),
        (WordOrder.CDAB, [0x0000, 0x3F80]),
        (WordOrder.BADC, [0x803F, 0x0000]),
        (WordOrder.DCBA, [0x0000, 0x803F]),
    ],
)
def test_float_words_in_every_order(order: WordOrder, words: list[int]) -> None:
    """1.0 as float32 lands in the registers as each byte order lays it out."""
    assert to_words(1.0, "float32", order) == words


def test_render_fills_exactly_the_map() -> None:
    """Every mapped address is in the image, and nothing else."""
    image = RegisterImage()
    render(PumpSkid(seed=4), image)
    for table in Table:
        expected = {
            e.address + i for e in SKID_MAP if e.table is table for i in range(e.width)
        }
        assert {address for address, _ in image.items(table)} == expected
    assert image.get(Table.HOLDING, 200) == [1450]


def test_only_whole_writable_entries_accept_writes() -> None:
    """speed_setpoint and run are writable; partial or read-only spans are not."""
    assert writable_span(Table.HOLDING, 200, 1)
    assert writable_span(Table.COIL, 0, 1)
    assert not writable_span(Table.HOLDING, 200, 2)
    assert not writable_span(Table.HOLDING, 0, 2)
    assert not writable_span(Table.INPUT, 0, 1)
