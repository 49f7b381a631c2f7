"""The composition root: builds every stage from the config, wires them, runs them in one TaskGroup.

Invariants:
- only this module knows both ends of any queue: sources emit into ``_ingest``, which feeds
  the twin and the outbox that sync drains;
- READY=1 goes to systemd only after the config is valid and the state directory is open
  (and locked: one gateway per state directory);
- a failed source is restarted by the supervisor; a failed core task ends the process;
- on stop: sources first, all at once, each finishing the read in flight (what a device
  served is queued), then sync drains within the budget, then the outbox commits what is
  left and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from edgetwin import __version__
from edgetwin.analytics.stage import (
    AnomalyStage,
    VibrationStage,
    WaveformSource,
    anomaly_points,
    feature_points,
)
from edgetwin.config import GatewayConfig, InvalidConfig, SourceConfig, load_config
from edgetwin.core.counter import write_atomically
from edgetwin.core.errors import ConfigError, StoreError
from edgetwin.core.ports import Source
from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import (
    Command,
    Delta,
    PointSpec,
    Quality,
    Record,
    Sample,
    Value,
    Verdict,
    WriteOutcome,
    asset_of,
)
from edgetwin.daemon.allocator import HeapGauges, refreeze
from edgetwin.daemon.statelock import lock_state_dir
from edgetwin.daemon.supervisor import supervise
from edgetwin.outbox import DurableOutbox
from edgetwin.safety import SafetyPolicy
from edgetwin.sources import BUILTIN_SOURCES, SourceSpec
from edgetwin.sync import MqttSession
from edgetwin.telemetry import (
    HttpEndpoint,
    SystemdNotifier,
    Telemetry,
    configure_logging,
    run_watchdog,
    start_http,
)
from edgetwin.twin import TwinStore

log = structlog.get_logger("edgetwin.daemon")

STOP_BUDGET_S = 4.5  # SIGTERM to exit; systemd's TimeoutStopSec is longer, the issue asks 5 s
SYNC_DRAIN_S = 3.0
HOUSEKEEPING_S = 0.5
RUN_FILE = "daemon.json"
# A stopping source finishes the request in flight (a source's timeout, 1 s by default).
STOP_SOURCE_S = 1.5


def point_specs(config: GatewayConfig) -> dict[str, PointSpec]:
    """What the twin needs of every configured point, and of every derived one."""
    specs = {
        point.id: PointSpec(
            point=point.id,
            source=source.name,
            deadband=point.deadband,
            stale_after_s=point.stale_after,
            unit=point.unit,
            writable=point.writable,
        )
        for source in config.sources
        for point in source.points
    }
    sources = waveform_sources(config)
    for entry in config.vibration:
        wave = specs.get(entry.point)
        if wave is None or entry.point not in sources:
            continue
        for pid in feature_points(entry, sources[entry.point]):
            specs[pid] = PointSpec(pid, wave.source, stale_after_s=wave.stale_after_s)
    for pid in anomaly_points(config.anomaly):
        specs[pid] = PointSpec(pid, "anomaly")
    return specs


def waveform_sources(config: GatewayConfig) -> dict[str, WaveformSource]:
    """The sample rate and unit of every waveform point a ``vibration:`` entry names."""
    points = config.points()
    out = {}
    for entry in config.vibration:
        _source, point = points[entry.point]
        waveform = getattr(point, "waveform", None)
        if waveform is not None:
            out[entry.point] = WaveformSource(float(waveform.sample_rate), waveform.unit)
    return out


class Daemon:
    """One gateway process: sources -> twin -> outbox -> MQTT, supervised, reloadable."""

    def __init__(
        self,
        config_path: Path,
        config: GatewayConfig,
        registry: Sequence[SourceSpec] = BUILTIN_SOURCES,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self._registry = {spec.type: spec for spec in registry}
        self._source_configs = tuple(spec.config for spec in registry)
        self.telemetry = Telemetry()
        self.notifier = SystemdNotifier(environ)
        self.stop_event = asyncio.Event()
        self.reload_event = asyncio.Event()
        self.started_ns = time.time_ns()
        self._sources: dict[str, tuple[SourceConfig, asyncio.Task[None] | None]] = {}
        self._live: dict[str, Source] = {}  # running source instances, by name
        self._signal_tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._heartbeat = time.monotonic()
        self.http: HttpEndpoint | None = None
        self.session: MqttSession | None = None
        self._sync_stop = asyncio.Event()
        self._sync_task: asyncio.Task[None] | None = None
        t = self.telemetry
        self._samples = t.counter("edgetwin_source_samples_total", "Samples read", ("source",))
        self._deltas = t.counter("edgetwin_twin_deltas_total", "Twin deltas queued for sync")
        self._waveforms = t.counter(
            "edgetwin_waveforms_unprocessed_total",
            "Waveform samples received with no analytics stage to take them",
        )
        self._points = t.gauge("edgetwin_twin_points", "Points in the twin", ("quality",))
        self._heap = HeapGauges(t)

        self.vibration: VibrationStage | None = None
        self.anomaly: AnomalyStage | None = None
        self._build_analytics(config)
        state_dir = config.gateway.state_dir
        self._state_lock = lock_state_dir(state_dir)
        try:
            self.outbox = DurableOutbox(
                state_dir, config.buffer, self.telemetry,
                max_delay_s=config.sync.max_delay, max_batch=config.sync.max_batch,
                hold_s=1.5 * config.sync.mqtt.keepalive,
            )
            self.twin = TwinStore(point_specs(config), state_dir, self.outbox.restored_twin)
            # The only caller of _write: no other code path reaches a device.
            self.policy = SafetyPolicy(config.commands, point_specs(config), self.twin.get,
                                       self._write, state_dir, on_audit=self.outbox.put,
                                       keys_dir=config_path.parent)
        except BaseException:
            self._state_lock.close()
            raise
        self._outbox_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until ``stop_event``; returns the process exit status."""
        loop = asyncio.get_running_loop()
        for signum, event in ((signal.SIGTERM, self.stop_event), (signal.SIGINT, self.stop_event),
                              (signal.SIGHUP, self.reload_event)):
            loop.add_signal_handler(signum, event.set)
        # SIGUSR2: the emergency read-only switch, on at once (`systemctl kill -s USR2`);
        # SIGUSR1: `edgetwin readonly on|off` changed the stored switch, read it again.
        loop.add_signal_handler(signal.SIGUSR2, self._readonly_signal, True)
        loop.add_signal_handler(signal.SIGUSR1, self._readonly_signal, False)
        try:
            await self._start_http()
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._outbox_task = group.create_task(self.outbox.run(), name="outbox.commit")
                await self.policy.hand_on_recovered()  # the last run's open commands
                self._start_sync(self.config)
                for source in self.config.sources:
                    self._start_source(source)
                helpers = [
                    group.create_task(self._housekeeping(), name="daemon.housekeeping"),
                    group.create_task(self._reload_loop(), name="daemon.reload"),
                ]
                if self.config.health.watchdog:
                    helpers.append(group.create_task(
                        run_watchdog(self.notifier, self._healthy), name="daemon.watchdog"
                    ))
                self.notifier.notify(READY=1, STATUS=self._status_line())
                log.info("Gateway running", gateway=self.config.gateway.id,
                         sources=len(self.config.sources), version=__version__,
                         config=str(self.config_path))
                await self.stop_event.wait()
                self.notifier.notify(STOPPING=1, STATUS="Stopping: draining the outbox")
                log.info("Stopping", queued=self.outbox.depth())
                await self._shutdown(helpers)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                           signal.SIGUSR2):
                loop.remove_signal_handler(signum)
            if self.http is not None:
                await self.http.close()
            with contextlib.suppress(FileNotFoundError):
                (self.config.gateway.state_dir / RUN_FILE).unlink()
            self.notifier.close()
            self._state_lock.close()
        log.info("Stopped", abandoned=self.outbox.depth())
        return 0

    async def _shutdown(self, helpers: list[asyncio.Task[None]]) -> None:
        deadline = time.monotonic() + STOP_BUDGET_S
        await self._stop_sources(list(self._sources))
        if self.vibration is not None:
            await self.vibration.close()
        await self._flush_stale()
        self._sync_stop.set()
        if self._sync_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._sync_task),
                                       max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("Sync did not finish in time; cancelling it",
                            abandoned=self.outbox.depth())
                await cancel_and_wait(self._sync_task)
        await self.policy.close()
        if self._outbox_task is not None:
            await cancel_and_wait(self._outbox_task)
        await self.outbox.close()
        for task in helpers:
            task.cancel()

    async def _start_http(self) -> None:
        address = self.config.health.metrics.host_port()
        if address is not None:
            try:
                self.http = await start_http(*address, {
                    "/metrics": self.telemetry.metrics_route,
                    "/status": lambda: ("application/json", json.dumps(self.status()).encode()),
                })
            except OSError as err:
                # The plant keeps running without its metrics; the operator sees why.
                self.telemetry.emit_error(
                    "daemon", "metrics_listen_failed", "start", err,
                    listen=self.config.health.metrics.listen,
                    message="Metrics and status endpoint unavailable; running without it",
                )
        run_file = {
            "pid": os.getpid(),
            "started_ns": self.started_ns,
            "http": f"{self.http.host}:{self.http.port}" if self.http else None,
        }
        write_atomically(self.config.gateway.state_dir / RUN_FILE, json.dumps(run_file).encode())

    # -- sources -------------------------------------------------------------------------------

    def _start_source(self, config: SourceConfig) -> None:
        assert self._group is not None
        health = self.telemetry.source_health(config.name)
        spec = self._registry[config.type]
        if spec.factory is None:
            health.mark("no_driver", f"source type {config.type!r} has no driver in this version")
            self.telemetry.emit_error(
                "daemon", "no_driver", "start",
                f"source {config.name!r}: type {config.type!r} has no driver in this version;"
                " its points stay empty", source=config.name,
            )
            self._sources[config.name] = (config, None)
            return
        factory = spec.factory
        health.mark("starting", None)
        def make() -> Source:
            source = factory(config)
            self._live[config.name] = source  # the instance the policy's writes go to
            return source

        task = self._group.create_task(
            supervise(make, functools.partial(self._ingest, config.name), health,
                      self.telemetry),
            name=f"source[{config.name}]",
        )
        self._sources[config.name] = (config, task)

    async def _stop_sources(self, names: Sequence[str]) -> None:
        """Together: a slow device's read in flight holds up none of the others."""
        await asyncio.gather(*(self._stop_source(name) for name in names))

    async def _stop_source(self, name: str) -> None:
        self._live.pop(name, None)
        _config, task = self._sources.pop(name)
        if task is not None and not await cancel_and_wait(task, STOP_SOURCE_S):
            self.telemetry.emit_error(
                "daemon", "stop_timeout", "stop",
                f"source {name!r} did not stop within {STOP_SOURCE_S} s; left behind",
                source=name,
            )
        self.telemetry.source_health(name).mark("stopped", None)

    async def _ingest(self, source: str, batch: Sequence[Sample]) -> None:
        """One batch from a source: into the twin, and its deltas into the outbox."""
        self._samples.labels(source).inc(len(batch))
        scalars = [s for s in batch if not isinstance(s.value, np.ndarray)]
        if len(scalars) != len(batch):
            for sample in batch:
                if not isinstance(sample.value, np.ndarray):
                    continue
                if self.vibration is not None and self.vibration.handles(sample.point):
                    self.vibration.offer(sample)  # features come back through _ingest_derived
                else:
                    self._waveforms.inc()
        await self._ingest_derived(scalars)

    async def _ingest_derived(self, samples: Sequence[Sample]) -> None:
        """Samples into the twin; models whose inputs changed are scored; all into the outbox."""
        deltas = self.twin.apply(samples)
        items: list[Delta | Record] = list(deltas)
        if deltas and self.anomaly is not None:
            changed = [f"{d.asset}/{name}" for d in deltas for name in d.changes]
            scores, alarms = self.anomaly.update(changed, self.twin.get)
            if scores:
                items += self.twin.apply(scores)
            items += alarms
        if items:
            self._deltas.inc(sum(1 for i in items if isinstance(i, Delta)))
            await self.outbox.put(items)

    async def _reload_analytics(self, old: GatewayConfig, new: GatewayConfig) -> None:
        """SIGHUP: models are read again (a new file takes effect); changed entries rebuilt."""
        if new.vibration == old.vibration and new.anomaly == old.anomaly:
            if self.anomaly is not None:
                log.info("Anomaly models reloaded", sha256=self.anomaly.reload())
            return
        if self.vibration is not None:
            await self.vibration.close()
        try:
            self._build_analytics(new)
        except ConfigError as err:
            self.telemetry.emit_error("daemon", "analytics_invalid", "reload", err,
                                      message="Analytics cannot be built; running without them")
            self.vibration = self.anomaly = None

    async def _write(self, point: str, value: Value) -> WriteOutcome:
        """The one route from the gateway to a device; only the safety policy calls it."""
        spec = self.twin.spec(point)
        source = self._live.get(spec.source) if spec is not None else None
        if source is None:
            return WriteOutcome(False, f"the source of {point} is not running")
        return await source.write(point, value)

    def _speed_of(self, point: str) -> float | None:
        """A running-speed point's trusted value (Hz), or None to have it estimated."""
        state = self.twin.get(point)
        if state is None or state.quality not in (Quality.GOOD, Quality.UNCERTAIN):
            return None
        value = state.value
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else None

    def _build_analytics(self, config: GatewayConfig) -> None:
        """The vibration and anomaly stages of ``config`` (each only when configured)."""
        sources = waveform_sources(config)
        entries = [e for e in config.vibration if e.point in sources]
        for entry in config.vibration:
            if entry.point not in sources:
                self.telemetry.emit_error(
                    "vibration", "not_a_waveform", "start",
                    f"vibration entry {entry.point}: the point is not a waveform point",
                    point=entry.point)
        self.vibration = VibrationStage(entries, sources, self.telemetry, self._ingest_derived,
                                        self._speed_of) if entries else None
        self.anomaly = AnomalyStage(config.anomaly, self.telemetry,
                                    self.config_path.parent) if config.anomaly else None

    # -- sync ----------------------------------------------------------------------------------

    def _start_sync(self, config: GatewayConfig) -> None:
        assert self._group is not None
        self._sync_stop = asyncio.Event()
        self.session = MqttSession(
            config.sync, config.gateway.id, self.outbox, self.twin, self.telemetry,
            group=config.gateway.group, state_dir=config.gateway.state_dir,
            points=list(config.points()), submit=self._submit_command,
        )
        self.session.set_alive(self._assets_alive())
        self._sync_task = self._group.create_task(
            self.session.run(self._sync_stop, SYNC_DRAIN_S), name="sync.session"
        )

    async def _restart_sync(self, config: GatewayConfig) -> None:
        self._sync_stop.set()
        if self._sync_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._sync_task), SYNC_DRAIN_S + 1.5)
            except TimeoutError:
                await cancel_and_wait(self._sync_task)
        self._start_sync(config)

    # -- housekeeping, reload, health ----------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Staleness, gauges, STATUS=; its heartbeat feeds the watchdog."""
        last_status = ""
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)  # a period, not synchronisation
            self._heartbeat = time.monotonic()
            await self._flush_stale()
            for quality, count in self.twin.qualities().items():
                self._points.labels(quality).set(count)
            self._heap.update()
            if self.session is not None:
                self.session.set_alive(self._assets_alive())
            status = self._status_line()
            if status != last_status:  # `systemctl status` shows the latest STATUS= line
                self.notifier.notify(STATUS=status)
                last_status = status

    async def _flush_stale(self) -> None:
        deltas = self.twin.sweep_stale()
        if deltas:
            self._deltas.inc(len(deltas))
            await self.outbox.put(deltas)

    def _assets_alive(self) -> dict[str, bool]:
        """An asset is alive while at least one of the sources feeding it is up."""
        alive: dict[str, bool] = {}
        for source in self.config.sources:
            up = self.telemetry.source_health(source.name).state == "up"
            for point in source.points:
                asset = asset_of(point.id)
                alive[asset] = alive.get(asset, False) or up
        return alive

    async def _submit_command(self, command: Command) -> Verdict:
        """Every command gets exactly one verdict, from the safety policy."""
        return await self.policy.decide(command)

    def _readonly_signal(self, on: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._set_readonly(on))
        self._signal_tasks.add(task)
        task.add_done_callback(self._signal_tasks.discard)

    async def _set_readonly(self, from_signal: bool) -> None:
        try:
            if from_signal:
                await self.policy.set_readonly(True, by="signal SIGUSR2")
            else:
                await self.policy.reload_readonly()
        except StoreError as err:
            self.telemetry.emit_error("safety", "readonly_store", "signal", err)

    def _healthy(self) -> bool:
        """For the watchdog: housekeeping ran recently, and sync and the outbox are alive."""
        fresh = time.monotonic() - self._heartbeat < 10 * HOUSEKEEPING_S + 5
        alive = [self._sync_task, self._outbox_task]
        return fresh and all(t is not None and not t.done() for t in alive)

    async def _reload_loop(self) -> None:
        while True:
            await self.reload_event.wait()
            self.reload_event.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Re-read the config file; apply it when valid, keep the running one when not."""
        log.info("Reloading configuration", config=str(self.config_path))
        try:
            new = load_config(self.config_path, self._source_configs)
        except InvalidConfig as err:
            self.telemetry.emit_error(
                "daemon", "reload_invalid", "reload",
                f"{len(err.problems)} problem(s); keeping the running configuration",
                problems=[str(p) for p in err.problems],
            )
            self.notifier.notify(STATUS=f"Reload refused: {len(err.problems)} problem(s)")
            return False
        await self.apply(new)
        refreeze()
        self.notifier.notify(STATUS=self._status_line())
        return True

    async def apply(self, new: GatewayConfig) -> None:
        """Switch to a validated config: restart only what changed."""
        old = self.config
        if new.gateway.model_dump(exclude={"log_format"}) != old.gateway.model_dump(
            exclude={"log_format"}
        ) or new.health != old.health or new.buffer != old.buffer:
            log.warning("Changes to gateway, health or buffer take effect at the next restart")
            new = new.model_copy(update={"gateway": old.gateway.model_copy(
                update={"log_format": new.gateway.log_format}), "health": old.health,
                "buffer": old.buffer})
        if new.gateway.log_format != old.gateway.log_format:
            configure_logging(new.gateway.log_format.value)
        try:
            self.policy.reconfigure(new.commands, point_specs(new), self.config_path.parent)
        except ConfigError as err:
            self.telemetry.emit_error("daemon", "reload_invalid", "reload", err,
                                      message="Command rules refused; keeping the running ones")
            new = new.model_copy(update={"commands": old.commands})
        self.config = new
        await self._reload_analytics(old, new)
        self.twin.update_specs(point_specs(new))
        wanted = {s.name: s for s in new.sources}
        changed = [n for n, (c, _) in self._sources.items() if wanted.get(n) != c]
        await self._stop_sources(changed)
        started = [s for s in new.sources if s.name not in self._sources]
        for source in started:
            self._start_source(source)
        # Births and the command decoder list every point: a new point set restarts sync.
        sync_changed = new.sync != old.sync or set(new.points()) != set(old.points())
        if sync_changed:
            await self._restart_sync(new)
        log.info("Configuration applied", restarted_sources=sorted(changed),
                 started_sources=sorted(s.name for s in started), sync_restarted=sync_changed)

    # -- status ----------------------------------------------------------------------------

    def _status_line(self) -> str:
        up = sum(1 for n in self._sources if self.telemetry.source_health(n).state == "up")
        broker = "broker connected" if self.session and self.session.connected else "broker down"
        return f"{len(self._sources)} sources ({up} up), {broker}, {self.outbox.depth()} queued"

    def status(self) -> dict[str, Any]:
        """Everything ``edgetwin status`` shows."""
        by_source: dict[str, dict[str, int]] = {}
        for source in self.config.sources:
            counts = {q.value: 0 for q in Quality}
            for point in source.points:
                state = self.twin.get(point.id)
                if state is not None:
                    counts[state.quality.value] += 1
            by_source[source.name] = counts
        sources = []
        for name, (config, _task) in self._sources.items():
            health = self.telemetry.source_health(name).snapshot()
            sources.append({
                "name": name, "type": config.type, "points": len(config.points),
                "qualities": by_source.get(name, {}), **health,
            })
        assets = sorted({asset_of(p) for p in self.config.points()})
        return {
            "gateway": self.config.gateway.id,
            "group": self.config.gateway.group,
            "version": __version__,
            "pid": os.getpid(),
            "config": str(self.config_path),
            "started_ns": self.started_ns,
            "uptime_s": round((time.time_ns() - self.started_ns) / 1e9, 1),
            "sources": sources,
            "twin": {"points": len(self.twin), "qualities": self.twin.qualities(),
                     "assets": {a: self.twin.asset_version(a) for a in assets}},
            "outbox": {**dataclasses.asdict(self.outbox.stats()),
                       "max_bytes": self.config.buffer.max_bytes},
            "broker": self.session.status() if self.session else None,
            "alarms": self.outbox.active_alarms() + [
                m for m in (self.anomaly.status() if self.anomaly else []) if m.get("alarm_active")
            ],
            "models": self.anomaly.status() if self.anomaly else [],
            "commands": {"enabled": self.config.commands.enabled,
                         "readonly": self.policy.readonly,
                         "verdicts": dict(self.policy.counts)},
        }

