"""Fixtures shared by the whole suite: real peers on ephemeral loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.mqtt import Recorder
from tests.helpers.procs import Broker, PlcSim


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private Mosquitto broker, stopped after the test."""
    instance = Broker(tmp_path)
    instance.start()
    yield instance
    instance.stop(kill=True)


@pytest.fixture
def plcsim() -> Iterator[PlcSim]:
    """firmware-sim's Modbus pump skid on an ephemeral port."""
    sim = PlcSim()
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def recorder_factory(broker: Broker) -> Iterator[type[Recorder] | object]:
    """Make recording subscribers on the test broker; all are closed after the test."""
    made: list[Recorder] = []

    def make(*topics: str) -> Recorder:
        rec = Recorder(broker.port, *topics)
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.close()
