"""Run one scenario: start the peers and the gateway, play the timeline, record, judge, report.

Invariants:
- The gateway reaches the broker and the PLC only through the harness's proxies, so a
  link can be cut or slowed; the recorder and the operator talk to the broker directly,
  as the cloud side would.
- Nothing is judged from the gateway's inside: judges read only the run folder (what the
  broker delivered, what the sim served and logged, what /proc said).
- At the end the sim stops answering (a ``dropout`` fault) before the gateway is stopped,
  so every counter value it served had the chance to reach the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hil.harness import judges
from hil.harness.disk import TmpfsStateDir
from hil.harness.operator import command_payload, flood_payloads, make_keys, publish
from hil.harness.processes import LOOPBACK, Broker, Gateway, Sim, free_port
from hil.harness.profile import DEFAULT_VARS, MODEL, Profile, load_profile
from hil.harness.proxy import LinkProxy
from hil.harness.recorder import Recorder
from hil.harness.samplers import sample_metrics, sample_resources, sample_sim
from hil.harness.scenario import Action, Scenario

log = logging.getLogger("hil")

FAKETIME_LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1")
QUIET_S = 5.0  # at the end: no new counter value for this long means the gateway is done


@dataclass
class Event:
    """One timeline action as it happened (``events.jsonl``)."""

    t: float
    id: str
    action: str
    args: dict[str, Any] = field(default_factory=dict)
    end: float | None = None
    detail: str = ""


class Run:
    """One scenario run in its folder."""

    def __init__(self, scenario: Scenario, profile: Profile, out: Path, *,
                 gateway_cmd: list[str] | None = None) -> None:
        self.scenario = scenario
        self.profile = profile
        self.template = profile.template(scenario.gateway.template)
        out.mkdir(parents=True, exist_ok=False)  # a used folder holds another run's state
        self.out = out
        self.data = out / "data"
        self.logs = out / "logs"
        for folder in (self.data, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.gateway_cmd = gateway_cmd or profile.command
        self.events: list[Event] = []
        self.commands: list[dict[str, Any]] = []
        self.t0 = 0.0
        self.clock_offset_s = 0.0
        self.faketime_file = out / "faketime"
        self.keys = out / "keys"
        self.state = TmpfsStateDir(out / "state", scenario.gateway.state_tmpfs_kib)
        self.broker = Broker(out / "broker", persistence=scenario.broker_persistence)
        self.sim: Sim | None = None
        self.gateway: Gateway | None = None
        self.proxies: dict[str, LinkProxy] = {}
        self.recorder: Recorder | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sim_faults: dict[str, str] = {}  # action id -> sim fault id

    # -- set up and tear down ----------------------------------------------------------------

    async def _start_peers(self) -> dict[str, Any]:
        settings = self.scenario.sim
        await self.broker.start()
        self.sim = await Sim.start(seed=settings.seed, speedup=settings.speedup,
                                   tick=settings.tick)
        for name, port in (("broker", self.broker.port), ("plc", self.sim.port)):
            proxy = LinkProxy(name, LOOPBACK, port)
            await proxy.start()
            self.proxies[name] = proxy
        self.state.create()
        self.keys.mkdir(exist_ok=True)
        await make_keys(self.profile, str(self.keys))
        metrics_port = free_port()
        values = {**DEFAULT_VARS, **self.scenario.gateway.vars,
                  "broker_port": self.proxies["broker"].port,
                  "plc_port": self.proxies["plc"].port, "state_dir": self.state.path,
                  "metrics_port": metrics_port, "keys": self.keys, "model": MODEL}
        config = self.out / self.profile.config_name
        config.write_text(self.profile.render_config(self.scenario.gateway.template, values))
        return {"config": config, "metrics_port": metrics_port}

    def _gateway_env(self) -> dict[str, str]:
        if not self.scenario.gateway.faketime:
            return {}
        library = next((lib for lib in FAKETIME_LIBS if Path(lib).exists()), None)
        if library is None:
            raise RuntimeError("libfaketime is not installed; `make hil` installs it")
        self.faketime_file.write_text("+0\n")
        # Only the wall clock moves, as an NTP step would; monotonic time stays true.
        return {"LD_PRELOAD": library, "FAKETIME_TIMESTAMP_FILE": str(self.faketime_file),
                "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_CACHE_DURATION": "1"}

    async def _stop_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.gateway is not None:
            await self.gateway.stop()
        if self.recorder is not None:
            self.recorder.stop()
        for proxy in self.proxies.values():
            await proxy.stop()
        if self.sim is not None:
            await self.sim.stop()
        await self.broker.stop()
        self.state.remove()

    # -- the run -----------------------------------------------------------------------------

    async def execute(self) -> dict[str, Any]:
        """Run the scenario; returns the judgement (also written to ``results.json``)."""
        started = time.time()
        crash: str | None = None
        try:
            filled = await self._start_peers()
            assert self.sim is not None  # started above
            argv = self.profile.argv(self.gateway_cmd, filled)
            self.gateway = Gateway(argv, self._gateway_env(), self.logs)
            north = self.profile.northbound
            self.recorder = Recorder(
                self.broker.port, self.data / "messages.jsonl",
                counter_topic=f"{north.json_prefix}/{self.template.counter.split('/')[0]}"
                              "/reported",
                counter_name=self.template.counter.split("/", 1)[1])
            self.recorder.start()
            self._start_samplers(filled["metrics_port"])
            self.t0 = time.time()
            await self._play()
            freeze_t = await self._freeze_and_settle()
        except Exception as err:  # report what broke, judge what was recorded
            log.exception("scenario %s failed to run", self.scenario.name)
            crash = f"{type(err).__name__}: {err}"
            freeze_t = time.time()
        finally:
            served, writes = await self._fetch_sim_records()
            await self._stop_all()
        (self.data / "served.json").write_text(json.dumps(served))
        (self.data / "writes.json").write_text(json.dumps(writes))
        with (self.data / "events.jsonl").open("w") as file:
            for event in sorted(self.events, key=lambda e: e.t):
                file.write(json.dumps(asdict(event)) + "\n")
        inputs = judges.JudgeInputs(
            scenario=self.scenario, profile=self.profile.folder, freeze_t=freeze_t,
            commands=self.commands, exits=self.gateway.exits if self.gateway else [],
            crash=crash)
        inputs.save(self.data)
        results = judges.judge_run(inputs, self.profile, self.data)
        results.update(started=started, ended=time.time(),
                       gateway=shlex.join(self.gateway.argv) if self.gateway
                       else " ".join(self.gateway_cmd))
        (self.out / "results.json").write_text(json.dumps(results, indent=1))
        return results

    def _start_samplers(self, metrics_port: int) -> None:
        assert self.sim is not None
        assert self.gateway is not None
        gateway, sim = self.gateway, self.sim
        self._tasks.append(asyncio.create_task(
            sample_resources(lambda: gateway.pid, self.data / "resources.jsonl")))
        self._tasks.append(asyncio.create_task(sample_sim(sim.api, self.data / "sim.jsonl")))
        if self.profile.metrics_url:
            url = self.profile.metrics_url.format(metrics_port=metrics_port)
            self._tasks.append(asyncio.create_task(
                sample_metrics(url, self.profile.metrics, self.data / "metrics.jsonl")))
        self._tasks.append(asyncio.create_task(self._watch_gateway()))

    async def _watch_gateway(self) -> None:
        """Note a gateway that ends by itself (a crash), with its exit status."""
        assert self.gateway is not None
        while True:
            status = self.gateway.crashed()
            if status is not None:
                log.warning("the gateway exited by itself with status %s", status)
                self.events.append(Event(time.time(), "", "gateway_exited",
                                         {"status": status}))
            await asyncio.sleep(0.5)  # a poll of the process table, not synchronisation

    async def _play(self) -> None:
        """Run every action (and its undo) at its time."""
        steps: list[tuple[float, int, Action, bool]] = []
        for order, action in enumerate(self.scenario.timeline):
            steps.append((action.at, order, action, False))
            if action.for_s is not None:
                steps.append((action.at + action.for_s, order, action, True))
        steps.sort(key=lambda s: (s[0], s[1], not s[3]))
        open_events: dict[int, Event] = {}
        for at, order, action, undo in steps:
            await asyncio.sleep(max(0.0, self.t0 + at - time.time()))
            if undo:
                await self._undo(action)
                open_events[order].end = time.time()
                log.info("t+%.1f undo %s", time.time() - self.t0, action.label)
                continue
            event = Event(time.time(), action.id, action.do,
                          action.model_dump(exclude_defaults=True, by_alias=True,
                                            exclude={"at", "do", "id"}))
            event.detail = await self._do(action)
            self.events.append(event)
            open_events[order] = event
            log.info("t+%.1f %s %s", event.t - self.t0, action.label, event.detail)
        await asyncio.sleep(max(0.0, self.t0 + self.scenario.duration - time.time()))

    async def _do(self, action: Action) -> str:
        gateway, sim = self.gateway, self.sim
        assert gateway is not None
        assert sim is not None
        match action.do:
            case "gateway_start":
                await gateway.start()
                return f"pid {gateway.pid}"
            case "gateway_stop":
                await gateway.stop()
                return f"exit {gateway.exits[-1][1]}" if gateway.exits else ""
            case "gateway_kill":
                await gateway.kill()
                return "SIGKILL"
            case "gateway_restart":
                await gateway.stop()
                await gateway.start()
                return f"pid {gateway.pid}"
            case "broker_stop":
                await self.broker.stop()
            case "broker_start":
                await self.broker.start()
            case "link_cut":
                self.proxies[str(action.link)].cut()
            case "link_blackhole":
                self.proxies[str(action.link)].blackhole()
            case "link_slow":
                self.proxies[str(action.link)].slow(action.latency, action.rate)
            case "plc_reboot":
                duration = None if action.for_s else 3.0 * self.scenario.sim.speedup
                fault = await sim.api("POST", "/faults", {"kind": "reboot",
                                                          "duration_s": duration})
                self._sim_faults[action.label] = str(fault["id"])
            case "sim_fault":
                fault = await sim.api("POST", "/faults", {
                    "kind": action.fault["kind"], "target": action.fault.get("target", "*"),
                    "params": action.fault.get("params", {})})
                self._sim_faults[action.label] = str(fault["id"])
            case "plant_write":
                # Someone at the machine's own panel: not a gateway write, logged as "control".
                done = await sim.api("POST", "/write", {"name": action.input,
                                                        "value": action.value})
                return "accepted" if done.get("accepted") else f"refused: {done.get('reason')}"
            case "command":
                return await self._command(action)
            case "command_flood":
                return await self._command_flood(action)
            case "fill_disk":
                return f"{self.state.fill()} bytes written"
            case "clock_jump":
                self._jump_clock(action.seconds)
                return f"gateway clock {self.clock_offset_s:+.0f} s"
        return ""

    async def _undo(self, action: Action) -> None:
        assert self.gateway is not None
        assert self.sim is not None
        match action.do:
            case "gateway_stop" | "gateway_kill":
                await self.gateway.start()
            case "broker_stop":
                await self.broker.start()
            case "link_cut" | "link_blackhole" | "link_slow":
                self.proxies[str(action.link)].restore()
            case "plc_reboot" | "sim_fault":
                fault_id = self._sim_faults.pop(action.label, None)
                if fault_id is not None:
                    with contextlib.suppress(Exception):  # it may have ended by itself
                        await self.sim.api("DELETE", f"/faults/{fault_id}")
            case "fill_disk":
                self.state.free()
            case "clock_jump":
                self._jump_clock(-action.seconds)

    def _jump_clock(self, seconds: float) -> None:
        self.clock_offset_s += seconds
        self.faketime_file.write_text(f"{self.clock_offset_s:+.0f}\n")

    async def _command(self, action: Action) -> str:
        payload = await command_payload(self.profile, str(self.keys), action.point,
                                        action.value, action.signature)
        topic = f"{self.profile.northbound.json_prefix}/{self.profile.command_topic}"
        sent = time.time()
        await asyncio.to_thread(publish, self.broker.port, topic, payload)
        self.commands.append({"t": sent, "label": action.label, "id": payload.get("id"),
                              "point": action.point, "value": action.value,
                              "signature": action.signature, "expect": action.expect})
        return f"{action.signature} {action.point}={action.value} (expect {action.expect})"

    async def _command_flood(self, action: Action) -> str:
        payloads = flood_payloads(action.point, action.value, action.count)
        topic = f"{self.profile.northbound.json_prefix}/{self.profile.command_topic}"
        sent = time.time()
        await asyncio.to_thread(publish, self.broker.port, topic, *payloads)
        took = time.time() - sent
        self.commands.extend({"t": sent, "label": f"{action.label}#{i}", "id": p["id"],
                              "point": action.point, "value": action.value,
                              "signature": "unsigned", "expect": "denied", "flood": True}
                             for i, p in enumerate(payloads))
        return f"{action.count} unsigned {action.point}={action.value} in {took:.2f} s"

    async def _freeze_and_settle(self) -> float:
        """Stop the sim answering, then wait until the gateway delivered what it was served."""
        assert self.sim is not None
        assert self.recorder is not None
        freeze_t = time.time()
        await self.sim.api("POST", "/faults", {"kind": "dropout", "target": "modbus_tcp"})
        self.events.append(Event(freeze_t, "end", "freeze",
                                 detail="the sim stops answering; the gateway drains"))
        deadline = freeze_t + self.scenario.settle
        last_count, last_change = -1, time.time()
        while time.time() < deadline:
            served = await self.sim.api("GET", "/served")
            expected = judges.served_values(served.get(self.template.points[
                self.template.counter].signal, {}))
            received = self.recorder.counter_values
            if expected <= received:
                break
            if len(received) != last_count:
                last_count, last_change = len(received), time.time()
            elif time.time() - last_change > QUIET_S:
                break  # nothing more is coming: what is missing is judged as lost
            await asyncio.sleep(0.5)  # polling the sim's record, bounded by the deadline
        return freeze_t

    async def _fetch_sim_records(self) -> tuple[dict[str, Any], list[Any]]:
        if self.sim is None:
            return {}, []
        try:
            served = await self.sim.api("GET", "/served")
            writes = await self.sim.api("GET", "/writes")
        except Exception:  # a sim that died is judged by what else was recorded
            log.exception("could not read the sim's records")
            return {}, []
        return dict(served), list(writes)


async def run_scenario(scenario: Scenario, profile: Profile, out: Path, *,
                       gateway_cmd: list[str] | None = None,
                       report: Callable[[Path], object] | None = None,
                       ) -> dict[str, Any]:
    """Run ``scenario`` into ``out`` (a new folder) and, if given, write its report."""
    results = await Run(scenario, profile, out, gateway_cmd=gateway_cmd).execute()
    if report is not None:
        await asyncio.to_thread(report, out)  # plotting takes seconds; keep the loop free
    return results


def judge_again(out: Path, report: Callable[[Path], object] | None = None) -> dict[str, Any]:
    """Judge the finished scenario folder ``out`` again from its records; rewrite results.json.

    For a judge or a budget that changed after the run: an hour of soak need not run again.
    """
    data = out / "data"
    inputs = judges.JudgeInputs.load(data)
    results = judges.judge_run(inputs, load_profile(inputs.profile), data)
    with contextlib.suppress(FileNotFoundError, ValueError):
        before = json.loads((out / "results.json").read_text())
        results.update({k: before[k] for k in ("started", "ended", "gateway") if k in before})
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if report is not None:
        report(out)
    return results
