"""SerialSource against plcsim's scale on a pty, and against ptys written by the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import Quality, Sample
from edgetwin.sources.serial import SerialConfig, SerialSource
from edgetwin.sources.serial.parse import encode_frame
from plcsim.line_device import LineDevice
from plcsim.plant import TANK_CAPACITY_M3
from plcsim.sim import Sim
from tests.sources.serial.conftest import Recording

pytestmark = pytest.mark.sim

PATTERN = r"(?P<status>ST|US|OL),GS,(?P<weight>[+-]\d{4}\.\d{3}) kg"
WEIGHT, STATUS = "tank1/weight", "tank1/weight_status"
FAST = {"reopen_initial_s": 0.02, "reopen_max_s": 0.1}


def scale_config(port: str, **extra: Any) -> SerialConfig:
    return SerialConfig.model_validate({
        "name": "scale1", "type": "serial", "port": port, "pattern": PATTERN,
        "points": [{"id": WEIGHT, "field": "weight", "unit": "kg"},
                   {"id": STATUS, "field": "status", "type": "string"}],
        **extra,
    })


def tank_kg(sim: Sim) -> float:
    return sim.plant.tank_level_pct / 100 * TANK_CAPACITY_M3 * 1000


def good(rec: Recording) -> list[Sample]:
    return [s for b in rec.batches for s in b if s.point == WEIGHT and s.quality is Quality.GOOD]


def bad_batches(rec: Recording) -> list[list[Sample]]:
    return [b for b in rec.batches if b and all(s.quality is Quality.BAD for s in b)]


@contextlib.asynccontextmanager
async def running(source: SerialSource, rec: Recording) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run(rec, rec), name="test.source")
    try:
        yield task
    finally:
        assert await cancel_and_wait(task, timeout_s=1.0), "source did not stop within 1 s"


@pytest.fixture
async def scale(sim: Sim) -> AsyncIterator[LineDevice]:
    device = LineDevice(sim, rate_hz=20)
    await device.start()
    yield device
    await device.stop()


class Pty:
    """A pty pair written by the test: the master is the device, the slave the port."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        """Close both sides: the reader gets EIO, as when a USB adapter is pulled."""
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def ptys() -> Iterator[list[Pty]]:
    made: list[Pty] = []
    yield made
    for pty in made:
        pty.unplug()


def new_pty(ptys: list[Pty]) -> Pty:
    pty = Pty()
    ptys.append(pty)
    return pty


def record(kg: float) -> bytes:
    return f"ST,GS,{kg:+09.3f} kg\r\n".encode()


async def test_weights_arrive_good_near_the_tank_contents(
    sim: Sim, scale: LineDevice, rec: Recording
) -> None:
    """The simulated scale's records become GOOD float weights near the tank contents."""
    source = SerialSource(scale_config(scale.device), **FAST)
    async with running(source, rec):
        await rec.until(lambda: len(good(rec)) >= 10)
    samples = good(rec)
    assert all(isinstance(s.value, float) for s in samples)
    last = samples[-1].value
    assert isinstance(last, float) and abs(last - tank_kg(sim)) < 3.0
    assert all(0 < s.ts_ns <= time.time_ns() for s in samples)
    status = [s for b in rec.batches for s in b if s.point == STATUS]
    assert {s.value for s in status} <= {"ST", "US", "OL"}
    assert all(len(b) == 2 for b in rec.batches)  # one batch per record
    assert [e.kind for e in rec.events] == ["up"]
    assert source.records >= 10


async def test_garbage_is_counted_and_records_stay_good(
    sim: Sim, scale: LineDevice, rec: Recording
) -> None:
    """Injected line noise is counted as dropped frames; clean records keep arriving GOOD."""
    source = SerialSource(scale_config(scale.device), **FAST)
    async with running(source, rec):
        await rec.until(lambda: len(good(rec)) >= 2)
        fault = sim.faults.add("garbage", "line", rate_hz=20, size=16)
        await rec.until(lambda: len(rec.of("point_error")) >= 5)
        sim.faults.clear(fault.id)
        before = len(good(rec))
        await rec.until(lambda: len(good(rec)) >= before + 5)
    garbage = rec.of("point_error")
    assert {e.point for e in garbage} == {"*"}
    assert {e.code for e in garbage} <= {"no_match", "undecodable", "frame_too_long"}
    assert garbage[0].error.startswith(
        f"serial source 'scale1' ({scale.device}): frame dropped: ")
    assert sum(source.dropped.values()) >= 5
    assert not bad_batches(rec)
    assert [e.kind for e in rec.events if e.kind != "point_error"] == ["up"]


async def test_stopped_device_marks_points_bad_once(scale: LineDevice, rec: Recording) -> None:
    """The pty closing marks every point BAD once and reports port_lost, then retries."""
    source = SerialSource(scale_config(scale.device), **FAST)
    async with running(source, rec):
        await rec.until(lambda: len(good(rec)) >= 2)
        await scale.stop()
        await rec.until(lambda: len(rec.of("down")) >= 3)  # the first loss, then reopen failures
    assert len(bad_batches(rec)) == 1
    assert {s.point for s in bad_batches(rec)[0]} == {WEIGHT, STATUS}
    downs = rec.of("down")
    assert downs[0].code == "port_lost"
    assert downs[0].error.startswith(f"serial source 'scale1' ({scale.device}): port lost: ")
    assert {e.code for e in downs[1:]} <= {"port_missing", "open_failed"}


async def test_replugged_device_at_the_same_path_is_reopened(
    tmp_path: Path, rec: Recording, ptys: list[Pty]
) -> None:
    """Unplug goes BAD; a new pty behind the same symlink is read again without restart."""
    first = new_pty(ptys)
    link = tmp_path / "usb-scale-if00"
    link.symlink_to(first.path)
    source = SerialSource(scale_config(str(link)), **FAST)
    async with running(source, rec):
        await asyncio.sleep(0.1)  # let it open: what was written before is discarded
        first.write(record(100.0) + record(101.0))
        await rec.until(lambda: len(good(rec)) >= 2)
        first.unplug()
        await rec.until(lambda: len(bad_batches(rec)) == 1 and len(rec.of("down")) >= 1)
        second = new_pty(ptys)
        link.unlink()
        link.symlink_to(second.path)
        # Write until the source has reopened: it discards what came before its open.
        async with asyncio.timeout(2.0):
            while not any(s.value == 200.0 for s in good(rec)):
                second.write(record(200.0))
                await asyncio.sleep(0.05)
    assert [s.value for s in good(rec)][:2] == [100.0, 101.0]
    assert rec.of("down")[0].code == "port_lost"
    assert [e.kind for e in rec.events if e.kind == "up"] == ["up", "up"]
    assert len(bad_batches(rec)) == 1


async def test_over_long_line_is_dropped_and_counted(rec: Recording, ptys: list[Pty]) -> None:
    """A line over max_frame_bytes is dropped up to its terminator; the next one is GOOD."""
    pty = new_pty(ptys)
    source = SerialSource(scale_config(pty.path, max_frame_bytes=64), **FAST)
    async with running(source, rec):
        await asyncio.sleep(0.1)
        pty.write(record(1.0))
        await rec.until(lambda: len(good(rec)) == 1)
        pty.write(b"X" * 300 + record(2.0) + record(3.0))
        await rec.until(lambda: len(good(rec)) == 2)
    assert [s.value for s in good(rec)] == [1.0, 3.0]
    (error,) = rec.of("point_error")
    assert (error.point, error.code) == ("*", "frame_too_long")
    assert error.error == (f"serial source 'scale1' ({pty.path}): frame dropped: "
                           "over 64 bytes without a terminator")
    assert source.dropped["frame_too_long"] == 1


async def test_cancellation_returns_promptly_and_closes_the_port(
    rec: Recording, ptys: list[Pty]
) -> None:
    """Cancelling run() returns well within a second and releases the port."""
    pty = new_pty(ptys)
    source = SerialSource(scale_config(pty.path), **FAST)
    task = asyncio.create_task(source.run(rec, rec))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
    # The port lock is released: another source can take it at once.
    again = SerialSource(scale_config(pty.path), **FAST)
    async with running(again, rec):
        await asyncio.sleep(0.1)
        pty.write(record(5.0))
        await rec.until(lambda: len(good(rec)) == 1)


async def test_missing_port_is_down_until_it_appears(
    tmp_path: Path, rec: Recording, ptys: list[Pty]
) -> None:
    """A path that does not exist yet: BAD once, down, then read once it appears."""
    link = tmp_path / "not-yet"
    source = SerialSource(scale_config(str(link)), **FAST)
    async with running(source, rec):
        await rec.until(lambda: len(rec.of("down")) >= 2)
        assert rec.of("down")[0].code == "port_missing"
        pty = new_pty(ptys)
        link.symlink_to(pty.path)
        await asyncio.sleep(0.3)
        pty.write(record(7.0))
        await rec.until(lambda: len(good(rec)) == 1)
    assert len(bad_batches(rec)) == 1
    assert rec.events[-1].kind == "up"


BINARY = {
    "protocol": "fixed", "frame_length": 9, "sync": 0x02,
    "layout": [{"name": "weight", "offset": 1, "type": "int32", "scale": 0.001},
               {"name": "status", "offset": 5, "type": "uint16", "byte_order": "little"}],
    "checksum": {"type": "crc16_modbus", "start": 1},
}


async def test_binary_frames_with_checksum_and_a_corrupted_one(
    rec: Recording, ptys: list[Pty]
) -> None:
    """Fixed frames decode to scaled values; a corrupted frame is counted and dropped."""
    pty = new_pty(ptys)
    config = SerialConfig.model_validate({
        "name": "scale2", "type": "serial", "port": pty.path, **BINARY,
        "points": [{"id": WEIGHT, "field": "weight"},
                   {"id": "tank1/flags", "field": "status", "type": "int32"}],
    })
    source = SerialSource(config, **FAST)
    frames = [encode_frame(config, {"weight": kg, "status": 3}) for kg in (1500, 1501, 1502)]
    corrupt = bytearray(frames[1])
    corrupt[3] ^= 0x40
    async with running(source, rec):
        await asyncio.sleep(0.1)
        pty.write(frames[0])
        await rec.until(lambda: len(good(rec)) == 1)
        pty.write(bytes(corrupt) + b"\x55\x66" + frames[2])  # noise before the next sync
        await rec.until(lambda: len(good(rec)) == 2)
    assert [s.value for s in good(rec)] == pytest.approx([1.5, 1.502])
    assert [s.value for b in rec.batches for s in b if s.point == "tank1/flags"] == [3, 3]
    errors = {str(e.code): e for e in rec.of("point_error")}
    assert sorted(errors) == ["bad_checksum", "unsynced_bytes"]
    assert errors["bad_checksum"].error.startswith(
        f"serial source 'scale2' ({pty.path}): frame dropped: crc16_modbus ")
    assert source.dropped == {"bad_checksum": 1, "unsynced_bytes": 1}


async def test_tail_of_a_record_after_opening_is_dropped_quietly(
    rec: Recording, ptys: list[Pty]
) -> None:
    """The first line after opening may be a record's tail: dropped, counted, not reported."""
    pty = new_pty(ptys)
    source = SerialSource(scale_config(pty.path), **FAST)
    async with running(source, rec):
        await asyncio.sleep(0.1)
        pty.write(b"+0012.500 kg\r\n" + record(12.5) + b"GS,+0012.500 kg\r\n" + record(13.0))
        await rec.until(lambda: len(good(rec)) == 2)
    assert source.dropped == {"partial_frame": 1, "no_match": 1}
    assert [(e.kind, e.code) for e in rec.events] == [("up", None), ("point_error", "no_match")]


async def test_unusable_value_fails_only_its_point(rec: Recording, ptys: list[Pty]) -> None:
    """A record whose integer field overflows: that point BAD, the other one GOOD."""
    pty = new_pty(ptys)
    config = SerialConfig.model_validate({
        "name": "meter1", "type": "serial", "port": pty.path, "terminator": "\r\n",
        "pattern": r"T=(?P<t>\S+);N=(?P<n>\S+)",
        "points": [{"id": "m1/temp", "field": "t"},
                   {"id": "m1/count", "field": "n", "type": "int32"}],
    })
    source = SerialSource(config, **FAST)
    async with running(source, rec):
        await asyncio.sleep(0.1)
        pty.write(b"T=21.5;N=7\r\nT=21.6;N=9999999999\r\n")
        await rec.until(lambda: len(rec.batches) == 2)
    first, second = ({s.point: s for s in b} for b in rec.batches)
    assert (first["m1/temp"].value, first["m1/count"].value) == (21.5, 7)
    assert (second["m1/temp"].value, second["m1/temp"].quality) == (21.6, Quality.GOOD)
    assert (second["m1/count"].value, second["m1/count"].quality) == (None, Quality.BAD)
    (error,) = rec.of("point_error")
    assert (error.point, error.code, error.error) == (
        "m1/count", "out_of_range",
        f"serial source 'meter1' ({pty.path}): point 'm1/count': '9999999999' is outside int32",
    )
