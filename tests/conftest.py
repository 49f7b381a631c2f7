"""Fixtures shared by the whole suite: real peers on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from plcsim import Sim, SimProcess
from tests.helpers.mounts import mount_tmpfs, unmount
from tests.helpers.mqtt import Recorder
from tests.helpers.procs import Broker, PlcSim
from tests.helpers.tls import PkiPaths, make_pki

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def interop_python() -> Path:
    """The interop venv's interpreter (pysparkplug); ``$EDGETWIN_INTEROP_PYTHON`` overrides it."""
    path = Path(os.environ.get("EDGETWIN_INTEROP_PYTHON", REPO / ".venv-interop/bin/python"))
    if not path.exists():
        pytest.fail(f"{path} is missing: `make interop-venv` (or `make test`) creates it")
    return path


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
async def modbus_sim() -> AsyncIterator[SimProcess]:
    """The same skid through plcsim's async launcher, which also offers kill/pause/resume."""
    sim = await SimProcess.start("modbus", "--host", "127.0.0.1", "--port", "0")
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def ticking_sim() -> AsyncIterator[Sim]:
    """A simulation ticking in real time (50 ms ticks), for faces and drivers following it."""
    simulation = Sim(seed=1, tick_s=0.05)
    task = asyncio.create_task(simulation.run())
    yield simulation
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
def recorder_factory(broker: Broker) -> Iterator[Callable[..., Recorder]]:
    """Make recording subscribers on the test broker; all are closed after the test."""
    made: list[Recorder] = []

    def make(*topics: str) -> Recorder:
        rec = Recorder(broker.port, *topics)
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.close()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, unmounted after the test."""
    where = tmp_path / "small-fs"
    mount_tmpfs(where, 2048)
    yield where
    unmount(where)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    """A throwaway PKI (two CAs, a loopback server certificate, client certificates)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: PkiPaths) -> Iterator[Callable[..., Broker]]:
    """Start private Mosquitto brokers whose one listener speaks TLS with ``pki``.

    Call it as ``tls_broker(require_certificate=True, users={...})``, or with ``tls=`` for
    other certificates than ``pki``'s; every broker it started is stopped after the test.
    """
    started: list[Broker] = []

    def start(*, require_certificate: bool = False, users: dict[str, str] | None = None,
              tls: PkiPaths = pki) -> Broker:
        workdir = tmp_path / f"tls-broker{len(started)}"
        workdir.mkdir()
        instance = Broker(workdir, users=users, tls=tls, require_certificate=require_certificate)
        started.append(instance)
        instance.start()
        return instance

    yield start
    for instance in started:
        instance.stop(kill=True)


@pytest.fixture
def subscriber(pki: PkiPaths) -> Iterator[Callable[..., Recorder]]:
    """Recording subscribers on any test broker; all are closed after the test.

    On a TLS broker they connect over TLS, trusting ``pki.ca`` and presenting the trusted
    client certificate (so they pass ``require_certificate`` too).
    """
    made: list[Recorder] = []

    def make(broker: Broker, *topics: str, login: tuple[str, str] | None = None) -> Recorder:
        tls = pki.client_context() if broker.tls is not None else None
        made.append(Recorder(broker.port, *topics, tls=tls, login=login))
        return made[-1]

    yield make
    for rec in made:
        rec.close()
