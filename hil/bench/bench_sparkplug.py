"""Sparkplug B north side: metrics/s encoded and published, and change-to-subscriber latency.

Four measurements, each printed as a human line, then one JSON line for machines:

1. **encode**: ``EdgeNode.data()`` on deltas of 20-50 metrics (70 % doubles, 20 % integers,
   10 % booleans; 10 devices x 50 points), on one core: metrics/s, us/message, bytes/metric.
   Goal: at least 100,000 metrics/s.
2. **publish**: the same encoding plus aiomqtt publishes to a local Mosquitto, at QoS 1
   (the issue's figure: a message counts once its PUBACK is back) and at QoS 0 (what
   Sparkplug DATA really uses: counted once a QoS 1 fence published after it on the same
   connection is acknowledged, so the broker has read every one). ``--window`` publishes are
   in flight at most (the session's ``max_inflight`` default).
3. **session**: the gateway's whole north path in one process: samples -> ``TwinStore`` ->
   ``DurableOutbox`` (SQLite, group commit) -> ``MqttSession`` with ``schemes:
   [sparkplug]`` -> Mosquitto -> a subscriber process; metrics/s as the subscriber gets them.
4. **latency**: ``python -m edgetwin run`` as a subprocess polls a Modbus TCP device whose
   registers change ``--rate`` times per second in total; a subscriber process stamps each
   DDATA on arrival; per metric, latency = arrival - change time, as p50/p95/p99/max, split
   into the sampling delay (change -> read, the read time being the metric timestamp), the
   gateway's delay (read -> arrival), and that again at the payload timestamp (the moment
   ``EdgeNode.data`` encoded it): read -> encode (twin, outbox, group commit, claim) and
   encode -> arrival (MQTT). Goal: p99 of the gateway's delay within ``max_delay`` + 20 ms.

In 1-3 this process is pinned to CPU 0 and Mosquitto and the subscriber to the other CPUs
(when there are two or more), so "one core" is literal. In 4 the gateway and the device may
run on any CPU. Figures move with other load on the machine: each line also shows the CPU
share the measured process got, and metrics per CPU-second, which moves less.

Deviations from the issue's set-up, for (4):
- firmware-sim changes its registers once per plant tick (100 ms) and does not tell when a
  value changed, so it cannot make 10,000 changes/s with known change times. The bench
  serves its own minimal Modbus TCP device (function 3 only): ``--points`` holding
  registers, each a per-point change counter, bumped round-robin at ``--rate`` changes/s by
  a pacer that records the wall-clock time of every change (a register's value indexes that
  table, so the value a subscriber sees says which change it was). The gateway reads them as
  it reads a PLC (``uint16`` points, ``--poll``); all processes share one clock.
- The total (change -> arrival) includes the sampling delay, which no polling gateway avoids
  (up to one poll interval), so the goal is judged on the gateway's delay; the total is shown.
- The bench's broker sets ``set_tcp_nodelay true``, so the broker -> subscriber hop does not
  add Nagle delays of its own (Mosquitto's default is false; a host's broker should set it).
  The gateway -> broker hop is as edgetwin makes it; ``--tcp-nodelay`` shows the what-if of
  TCP_NODELAY on the gateway's MQTT socket too (patched in at launch; src/ is unchanged).

``--profile FILE`` runs the latency gateway under cProfile; ``--keep DIR`` keeps the
recordings, the gateway's config and its log; ``--parts`` picks measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from edgetwin.config.model import BufferConfig, SyncConfig
from edgetwin.core.tasks import cancel_and_wait
from edgetwin.core.types import Delta, PointSpec, PointState, Quality, Sample
from edgetwin.outbox import DurableOutbox
from edgetwin.sync.session import MqttSession
from edgetwin.sync.sparkplug.node import EdgeNode
from edgetwin.sync.sparkplug.sparkplug_b_pb2 import Payload
from edgetwin.telemetry import Telemetry
from edgetwin.twin import TwinStore

LOOPBACK = "127.0.0.1"
GOAL_METRICS_PER_S = 100_000
GOAL_MARGIN_S = 0.020  # the latency goal is max_delay + 20 ms
GROUP, NODE = "bench", "gw-bench"
PARTS = ["encode", "publish", "session", "latency"]
ASSETS, PER_ASSET = 10, 50  # devices x points of the throughput runs; the latency run's devices


# -- peers: CPU pinning, Mosquitto, a subscriber process ----------------------------------


CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pin(pid: int, measured: bool | None) -> None:
    """The measured process on CPU 0, the rest on the others (None: on every CPU again)."""
    if len(CPUS) < 2:  # nothing to separate on one CPU
        return
    os.sched_setaffinity(pid, set(CPUS) if measured is None else
                         {CPUS[0]} if measured else set(CPUS[1:]))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {LOOPBACK}:{port}") from None
            time.sleep(0.02)  # connect retry pacing while the broker starts


class Mosquitto:
    """A private broker on an ephemeral loopback port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
        if binary is None:
            raise SystemExit("mosquitto is not installed; `make bench` installs it")
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {LOOPBACK}\n"
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "allow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            f"log_dest file {workdir / 'mosquitto.log'}\nlog_type error\nlog_type warning\n"
        )
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        pin(self.proc.pid, measured=False)
        wait_port(self.port)

    def close(self) -> None:
        """Stop the broker."""
        self.proc.terminate()
        self.proc.wait(10)


class Subscriber:
    """This script in ``--subscriber`` mode: a paho client in its own process, off CPU 0."""

    def __init__(self, port: int, topic: str, out: Path, count: int = 0) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--subscriber", str(port), topic, str(out), str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        pin(self.proc.pid, measured=False)
        if self.proc.stdout.readline().strip() != "subscribed":
            raise RuntimeError("the subscriber did not subscribe")

    def finish(self, *, stop: bool = True, timeout_s: float = 60.0,
               ) -> list[tuple[int, str, bytes]]:
        """Stop recording (``stop``) or wait for its count; (arrival ns, topic, payload)s."""
        assert self.proc.stdin is not None
        if not stop:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout_s)  # it ends by itself once it has its count
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
        self.proc.wait(timeout_s)
        rows = []
        with self.out.open() as lines:
            for line in lines:
                ns, topic, payload = json.loads(line)
                rows.append((ns, topic, base64.b64decode(payload)))
        return rows


def subscriber_main(port: int, topic: str, out: Path, count: int) -> None:
    """Record every message with its arrival time until ``count`` DDATA or a line on stdin."""
    rows: list[tuple[int, str, bytes]] = []
    done = threading.Event()
    ddata = 0

    def on_message(_client: Any, _userdata: Any, msg: paho.MQTTMessage) -> None:
        nonlocal ddata
        rows.append((time.time_ns(), msg.topic, msg.payload))
        ddata += "/DDATA/" in msg.topic
        if count and ddata >= count:
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=0)
    client.on_subscribe = lambda *_a: print("subscribed", flush=True)
    client.connect(LOOPBACK, port)
    client.loop_start()
    threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
    done.wait()
    client.disconnect()
    client.loop_stop()
    with out.open("w") as sink:
        for ns, name, payload in rows:
            sink.write(json.dumps([ns, name, base64.b64encode(payload).decode()]) + "\n")


# -- workload -----------------------------------------------------------------------------


def point_ids(count: int) -> list[str]:
    """``a00/p000`` ... : PER_ASSET points per device, in order."""
    return [f"a{i // PER_ASSET:02d}/p{i % PER_ASSET:03d}" for i in range(count)]


def point_index(device: str, name: str) -> int:
    """The inverse of ``point_ids``: ``("a03", "p012")`` -> 162."""
    return int(device[1:]) * PER_ASSET + int(name[1:])


def value_of(index: int, visit: int) -> float | int | bool:
    """Point ``index``'s value at its ``visit``-th change: 70 % doubles, 20 % ints, 10 % bools.

    Each point keeps its type, so no change outgrows the datatype of its birth.
    """
    kind = index % 10
    if kind < 7:
        return 20.0 + index * 0.25 + visit * 0.5
    if kind < 9:
        return index * 1000 + visit
    return visit % 2 == 1


def deltas_for(ids: Sequence[str], count: int, sizes: tuple[int, int], seed: int = 7,
               ) -> Iterator[Delta]:
    """``count`` deltas, each of one device and of ``sizes[0]..sizes[1]`` changed points."""
    by_asset: dict[str, list[tuple[int, str]]] = {}
    for index, pid in enumerate(ids):
        by_asset.setdefault(pid.partition("/")[0], []).append((index, pid))
    assets = sorted(by_asset)
    state = seed
    now = time.time_ns()
    for n in range(count):
        state = (state * 1103515245 + 12345) % 2**31  # a small LCG: repeatable, no numpy
        asset = assets[n % len(assets)]
        points = by_asset[asset]
        size = sizes[0] + state % (sizes[1] - sizes[0] + 1)
        start = state % len(points)
        chosen = [points[(start + k) % len(points)] for k in range(min(size, len(points)))]
        ts = now + n * 1_000_000
        changes = {pid.partition("/")[2]: PointState(value_of(i, n + 1), ts, Quality.GOOD, n + 1)
                   for i, pid in chosen}
        yield Delta(asset, n + 1, ts, changes)


def born_node(ids: Sequence[str], state_dir: Path) -> EdgeNode:
    """An EdgeNode whose devices are born from a twin holding every point's first value."""
    twin = TwinStore({pid: PointSpec(pid, "bench") for pid in ids}, state_dir)
    twin.apply([Sample(pid, value_of(i, 0), Quality.GOOD, time.time_ns())
                for i, pid in enumerate(ids)])
    node = EdgeNode(GROUP, NODE, ids, twin, state_dir)
    node.next_will()
    node.births()
    return node


# -- 1. encode ----------------------------------------------------------------------------


def bench_encode(ids: Sequence[str], sizes: tuple[int, int], seconds: float,
                 state_dir: Path) -> dict[str, Any]:
    node = born_node(ids, state_dir)
    deltas = list(deltas_for(ids, 5000, sizes))
    metrics = messages = payload_bytes = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall0 < seconds:
        for delta in deltas:
            for message in node.data(delta):
                payload_bytes += len(message.payload)
                messages += 1
            metrics += len(delta.changes)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"metrics": metrics, "messages": messages, "seconds": round(wall, 3),
            "metrics_per_s": round(metrics / wall), "metrics_per_cpu_s": round(metrics / cpu),
            "us_per_message": round(wall / messages * 1e6, 2),
            "bytes_per_metric": round(payload_bytes / metrics, 1)}


# -- 2. encode + publish ------------------------------------------------------------------


async def bench_publish(port: int, ids: Sequence[str], sizes: tuple[int, int], qos: int,
                        window: int, seconds: float, state_dir: Path) -> dict[str, Any]:
    node = born_node(ids, state_dir)
    deltas = itertools.cycle(list(deltas_for(ids, 5000, sizes)))  # built before the clock runs
    metrics = messages = 0
    async with aiomqtt.Client(LOOPBACK, port, identifier=f"bench-qos{qos}",
                              max_inflight_messages=window) as client:
        client.pending_calls_threshold = window + 1  # the window is the point, not a warning
        started = time.perf_counter()
        cpu0 = time.process_time()
        until = started + seconds

        async def worker() -> None:
            nonlocal metrics, messages
            while time.perf_counter() < until:
                delta = next(deltas)
                # No await between encoding and paho's publish call: seq order is wire order.
                for message in node.data(delta):
                    await client.publish(message.topic, message.payload, qos=qos)
                    messages += 1
                metrics += len(delta.changes)

        async with asyncio.TaskGroup() as group:
            for n in range(window):
                group.create_task(worker(), name=f"bench.publisher{n}")
        # QoS 0 writes are confirmed by a QoS 1 publish behind them on the same connection.
        await client.publish(f"bench/fence/{qos}", b"", qos=1)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return {"qos": qos, "window": window, "metrics": metrics, "messages": messages,
            "seconds": round(wall, 3), "metrics_per_s": round(metrics / wall),
            "messages_per_s": round(messages / wall), "cpu_share": round(cpu / wall, 2),
            "metrics_per_cpu_s": round(metrics / cpu)}


# -- 3. the session path ------------------------------------------------------------------


async def bench_session(port: int, ids: Sequence[str], per_batch: int, batches: int,
                        workdir: Path, max_delay_s: float) -> dict[str, Any]:
    state_dir = workdir / "session"
    state_dir.mkdir()
    telemetry = Telemetry()
    config = SyncConfig.model_validate({
        "mqtt": {"host": LOOPBACK, "port": port}, "schemes": ["sparkplug"],
        "max_delay": max_delay_s})
    outbox = DurableOutbox(state_dir, BufferConfig(max_bytes=1 << 30), telemetry,
                           max_delay_s=max_delay_s, max_batch=config.max_batch)
    twin = TwinStore({pid: PointSpec(pid, "bench") for pid in ids}, state_dir,
                     outbox.restored_twin)
    twin.apply([Sample(pid, value_of(i, 0), Quality.GOOD, time.time_ns())
                for i, pid in enumerate(ids)])
    session = MqttSession(config, NODE, outbox, twin, telemetry, group=GROUP,
                          state_dir=state_dir, points=ids)
    assert session.node is not None
    # One poll cycle of one device per batch: ``per_batch`` of its points changed.
    index = {pid: i for i, pid in enumerate(ids)}
    by_asset = [ids[k:k + PER_ASSET] for k in range(0, len(ids), PER_ASSET)]
    work = []
    for step in range(batches):
        visit, points = step // len(by_asset) + 1, by_asset[step % len(by_asset)]
        window = [points[(step * 7 + k) % len(points)] for k in range(per_batch)]
        work.append([Sample(pid, value_of(index[pid], visit), Quality.GOOD, time.time_ns())
                     for pid in window])
    subscriber = await asyncio.to_thread(Subscriber, port, f"spBv1.0/{GROUP}/DDATA/#",
                                         workdir / "session.jsonl", batches)
    stop = asyncio.Event()
    committer = asyncio.create_task(outbox.run(), name="outbox.commit")
    runner = asyncio.create_task(session.run(stop, 5.0), name="sync.session")
    # The session tells no one when its births are out: look, at a pace, while it connects.
    while len(session.node.born()) < len(by_asset):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    started_ns = time.time_ns()
    cpu0 = time.process_time()
    metrics = 0
    for batch in work:
        deltas = twin.apply(batch)
        metrics += sum(len(d.changes) for d in deltas)
        await outbox.put(deltas)
        await asyncio.sleep(0)  # a source yields between poll cycles
    rows = await asyncio.to_thread(subscriber.finish, stop=False)
    cpu = time.process_time() - cpu0
    stop.set()
    await runner
    await cancel_and_wait(committer)
    await outbox.close()
    received = sum(len(Payload.FromString(p).metrics) for _, _, p in rows)
    wall = (rows[-1][0] - started_ns) / 1e9
    return {"metrics": metrics, "received_metrics": received, "messages": len(rows),
            "seconds": round(wall, 3), "metrics_per_s": round(received / wall),
            "cpu_share": round(cpu / wall, 2), "metrics_per_cpu_s": round(received / cpu)}


# -- 4. latency ---------------------------------------------------------------------------


class RegisterBank:
    """A minimal Modbus TCP device: function 3 on ``count`` holding registers, nothing else.

    Register ``i`` counts the changes of point ``i``; ``changed_ns[i][v - 1]`` is when it
    took the value ``v``.
    """

    def __init__(self, count: int) -> None:
        self.registers = [0] * count
        self.changed_ns: list[list[int]] = [[] for _ in range(count)]
        self.reads = 0
        self.first_read = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: answer its requests in order until it closes."""
        try:
            while True:
                tid, _proto, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                if pdu[0] == 3 and len(pdu) == 5:  # read holding registers
                    start, count = struct.unpack(">HH", pdu[1:])
                    if 1 <= count <= 125 and start + count <= len(self.registers):
                        answer = struct.pack(f">BB{count}H", 3, 2 * count,
                                             *self.registers[start:start + count])
                    else:
                        answer = bytes((0x83, 2))  # illegal data address
                else:
                    answer = bytes((pdu[0] | 0x80, 1))  # illegal function
                writer.write(struct.pack(">HHHB", tid, 0, len(answer) + 1, unit) + answer)
                self.reads += 1
                self.first_read.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def pace(self, rate: float, seconds: float) -> tuple[int, float]:
        """Bump registers round-robin at ``rate`` changes/s; returns (changes, seconds)."""
        count = len(self.registers)
        done = 0
        started = time.perf_counter()
        while (now := time.perf_counter()) - started < seconds:
            due = int((now - started) * rate)
            stamp = time.time_ns()
            while done < due:
                point = done % count
                self.registers[point] += 1
                self.changed_ns[point].append(stamp)
                done += 1
            await asyncio.sleep(0.001)  # pacing: the next batch of changes is due in ~1 ms
        return done, time.perf_counter() - started


def gateway_yaml(state_dir: Path, device: int, broker: int, ids: Sequence[str], poll_s: float,
                 max_delay_s: float, metrics: int) -> str:
    points = "".join(f"      - {{id: {pid}, address: {i}, type: uint16}}\n"
                     for i, pid in enumerate(ids))
    return f"""\
gateway: {{id: {NODE}, group: {GROUP}, state_dir: {state_dir}, log_format: json}}
sources:
  - name: bank
    type: modbus_tcp
    host: {LOOPBACK}
    port: {device}
    poll_interval: {poll_s}
    timeout: 0.5
    points:
{points}sync:
  mqtt: {{host: {LOOPBACK}, port: {broker}}}
  schemes: [sparkplug]
  max_delay: {max_delay_s}
health:
  metrics: {{listen: "{LOOPBACK}:{metrics}"}}
"""


# What-if for --tcp-nodelay: the gateway as `python -m edgetwin`, with TCP_NODELAY on its MQTT
# socket (aiomqtt's socket_options), to show what that one-line change in MqttSession buys.
NODELAY_LAUNCH = """
import functools, runpy, socket, aiomqtt
_init = aiomqtt.Client.__init__
@functools.wraps(_init)
def _with_nodelay(self, *args, **kwargs):
    kwargs.setdefault("socket_options", ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),))
    _init(self, *args, **kwargs)
aiomqtt.Client.__init__ = _with_nodelay
runpy.run_module("edgetwin", run_name="__main__", alter_sys=True)
"""


def commit_seconds(port: int) -> dict[str, float]:
    """The gateway's group commits so far, from its Prometheus endpoint: count and mean ms."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("edgetwin_outbox_commit_seconds_sum", "edgetwin_outbox_commit_seconds_count"):
            values[name.rsplit("_", 1)[1]] = float(value)
    count = values.get("count", 0.0)
    return {"commits": count,
            "commit_mean_ms": round(values.get("sum", 0.0) / count * 1000, 2) if count else 0.0}


def percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {f"p{round(q * 100)}_ms": round(percentile(ordered, q), 2)
            for q in (0.5, 0.95, 0.99)} | {"max_ms": round(ordered[-1], 2) if ordered else 0.0}


def latencies(rows: list[tuple[int, str, bytes]], bank: RegisterBank, from_ns: int,
              ) -> dict[str, Any]:
    """Per delivered change: total, sampling (change -> read) and gateway (read -> arrival).

    The gateway's part is split at the payload timestamp (the time ``EdgeNode.data`` encoded
    it): read -> encode is twin, outbox and group commit; encode -> arrival is the publish.
    """
    point_of: dict[int, int] = {}
    total: list[float] = []
    sampling: list[float] = []
    gateway: list[float] = []
    queued: list[float] = []
    publish: list[float] = []
    for arrival_ns, topic, raw in rows:
        kind = topic.split("/")[2]
        payload = Payload.FromString(raw)
        if kind == "DBIRTH":
            device = topic.rsplit("/", 1)[1]
            point_of.update({m.alias: point_index(device, m.name) for m in payload.metrics})
        if kind != "DDATA":
            continue
        for metric in payload.metrics:
            point, value = point_of[metric.alias], metric.long_value
            changed_ns = bank.changed_ns[point][value - 1] if value else 0
            if changed_ns < from_ns:
                continue  # the warm-up, or the initial value
            read_ns = metric.timestamp * 1_000_000
            total.append((arrival_ns - changed_ns) / 1e6)
            sampling.append((read_ns - changed_ns) / 1e6)
            gateway.append((arrival_ns - read_ns) / 1e6)
            queued.append(payload.timestamp - metric.timestamp)
            publish.append(arrival_ns / 1e6 - payload.timestamp)
    return {"delivered": len(total), "total": spread(total), "sampling": spread(sampling),
            "gateway": spread(gateway), "read_to_encode": spread(queued),
            "encode_to_arrival": spread(publish)}


async def bench_latency(args: argparse.Namespace, broker: int, workdir: Path) -> dict[str, Any]:
    # No "one core" here: the gateway and this process (the device) may run anywhere, so a
    # busy CPU does not hold either back; the broker and the subscriber stay off CPU 0.
    pin(os.getpid(), measured=None)
    ids = point_ids(args.points)
    bank = RegisterBank(len(ids))
    server = await asyncio.start_server(bank.serve, LOOPBACK, 0)
    device = server.sockets[0].getsockname()[1]
    config = workdir / "gateway.yaml"
    metrics = free_port()
    config.write_text(gateway_yaml(workdir / "gateway-state", device, broker, ids, args.poll,
                                   args.max_delay, metrics))
    subscriber = await asyncio.to_thread(Subscriber, broker, f"spBv1.0/{GROUP}/#",
                                         workdir / "latency.jsonl")
    with (workdir / "gateway.log").open("wb") as log:
        profile = ["-m", "cProfile", "-o", str(args.profile)] if args.profile else []
        launch = ["-c", NODELAY_LAUNCH] if args.tcp_nodelay else ["-m", "edgetwin"]
        gateway = await asyncio.create_subprocess_exec(
            sys.executable, *profile, *launch, "run", "-c", str(config),
            stdout=log, stderr=subprocess.STDOUT)
    try:
        await asyncio.wait_for(bank.first_read.wait(), 30)
        await bank.pace(args.rate, args.warmup)  # births, connections, caches settle
        from_ns, cpu0, reads0 = time.time_ns(), cpu_seconds(gateway.pid), bank.reads
        changes, seconds = await bank.pace(args.rate, args.latency_seconds)
        cpu = cpu_seconds(gateway.pid) - cpu0
        reads = bank.reads - reads0
        commits = await asyncio.to_thread(commit_seconds, metrics)
        await asyncio.sleep(args.poll + args.max_delay + 0.5)  # the last changes arrive
    finally:
        with contextlib.suppress(ProcessLookupError):
            gateway.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(gateway.wait(), 15)
        except TimeoutError:
            gateway.kill()
            await gateway.wait()
        server.close()
    rows = await asyncio.to_thread(subscriber.finish)
    result = latencies(rows, bank, from_ns)
    goal_ms = (args.max_delay + GOAL_MARGIN_S) * 1000
    return {"points": len(ids), "poll_s": args.poll, "max_delay_s": args.max_delay,
            "rate_target": args.rate, "changes": changes, "seconds": round(seconds, 2),
            "changes_per_s": round(changes / seconds),
            "delivered_per_s": round(result["delivered"] / seconds),
            "modbus_reads_per_s": round(reads / seconds),
            "gateway_cpu_share": round(cpu / seconds, 2), "goal_p99_ms": round(goal_ms, 1),
            **commits,
            **result}


# -- main ---------------------------------------------------------------------------------


async def network_parts(args: argparse.Namespace, ids: list[str], sizes: tuple[int, int],
                        broker: Mosquitto, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"publish": []}
    for qos in (1, 0) if "publish" in args.parts else ():
        state = workdir / f"publish-qos{qos}"
        state.mkdir()
        result = await bench_publish(broker.port, ids, sizes, qos, args.window, args.seconds,
                                     state)
        out["publish"].append(result)
        label = "QoS 1, PUBACKed" if qos else "QoS 0, fenced "
        print(f"publish   {label}: {result['metrics_per_s']:>9,} metrics/s "
              f"{result['messages_per_s']:>7,} messages/s  window {args.window}  (CPU "
              f"{result['cpu_share']:.0%} of a core; {result['metrics_per_cpu_s']:,} per CPU-s)",
              flush=True)
    if "session" in args.parts:
        out["session"] = s = await bench_session(broker.port, ids, 40, args.session_batches,
                                                 workdir, args.max_delay)
        print(f"session   outbox -> MqttSession -> subscriber: {s['metrics_per_s']:>9,} "
              f"metrics/s ({s['received_metrics']:,} of {s['metrics']:,} metrics received; "
              f"CPU {s['cpu_share']:.0%} of a core; {s['metrics_per_cpu_s']:,} per CPU-s)",
              flush=True)
    if "latency" in args.parts:
        out["latency"] = lat = await bench_latency(args, broker.port, workdir)
        ok = lat["gateway"]["p99_ms"] <= lat["goal_p99_ms"]
        print(f"latency   {lat['changes_per_s']:,} changes/s on {lat['points']} points, poll "
              f"{lat['poll_s'] * 1000:.0f} ms, max_delay {lat['max_delay_s'] * 1000:.0f} ms: "
              f"{lat['delivered_per_s']:,} changes/s delivered; gateway CPU "
              f"{lat['gateway_cpu_share']:.0%}, {lat['modbus_reads_per_s']} reads/s, group "
              f"commit {lat['commit_mean_ms']} ms on average", flush=True)
        for part, what in (("gateway", "read -> subscriber"), ("read_to_encode", "read -> encode"),
                           ("encode_to_arrival", "encode -> subscriber"),
                           ("sampling", "change -> read"), ("total", "change -> subscriber")):
            d = lat[part]
            print(f"latency   {what:>20}: p50 {d['p50_ms']:6.1f}  p95 {d['p95_ms']:6.1f}  "
                  f"p99 {d['p99_ms']:6.1f}  max {d['max_ms']:6.1f} ms", flush=True)
        print(f"latency   goal p99 {lat['goal_p99_ms']:.0f} ms (max_delay + 20 ms) for the "
              f"gateway's delay: {'met' if ok else 'MISSED'}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput run")
    parser.add_argument("--window", type=int, default=200, help="publishes in flight")
    parser.add_argument("--session-batches", type=int, default=12_000,
                        help="deltas of 40 metrics through the session path")
    parser.add_argument("--rate", type=float, default=10_000, help="changes/s (latency)")
    parser.add_argument("--points", type=int, default=500, help="Modbus points (latency)")
    parser.add_argument("--poll", type=float, default=0.02, help="poll interval, s (latency)")
    parser.add_argument("--max-delay", type=float, default=0.05, help="sync.max_delay, s")
    parser.add_argument("--warmup", type=float, default=3.0, help="s before measuring latency")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    parser.add_argument("--keep", type=Path, help="work in this new directory and keep it "
                        "(recordings, the gateway's config and log)")
    parser.add_argument("--tcp-nodelay", action="store_true",
                        help="what-if: launch the latency gateway with TCP_NODELAY on its "
                        "MQTT socket (a patch at launch; src/ unchanged)")
    parser.add_argument("--profile", type=Path, help="run the latency gateway under cProfile, "
                        "writing its stats to this file")
    parser.add_argument("--subscriber", nargs=4, metavar=("PORT", "TOPIC", "OUT", "COUNT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile and args.tcp_nodelay:
        parser.error("--profile runs `-m edgetwin` under cProfile; it excludes --tcp-nodelay")
    if args.subscriber:
        port, topic, out, count = args.subscriber
        subscriber_main(int(port), topic, Path(out), int(count))
        return
    pin(os.getpid(), measured=True)
    ids = point_ids(ASSETS * PER_ASSET)
    sizes = (20, 50)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.keep is not None:
            workdir = args.keep
            workdir.mkdir(parents=True, exist_ok=False)
        encode: dict[str, Any] = {}
        if "encode" in args.parts:
            (workdir / "encode").mkdir()
            encode = bench_encode(ids, sizes, args.seconds, workdir / "encode")
            met = "met" if encode["metrics_per_s"] >= GOAL_METRICS_PER_S else "MISSED"
            print(f"encode    EdgeNode.data, {sizes[0]}-{sizes[1]} metrics per delta: "
                  f"{encode['metrics_per_s']:>9,} metrics/s  {encode['us_per_message']:.1f} "
                  f"us/message  {encode['bytes_per_metric']} bytes/metric  (goal "
                  f"{GOAL_METRICS_PER_S:,}: {met}; {encode['metrics_per_cpu_s']:,} per CPU-s)",
                  flush=True)
        broker = Mosquitto(workdir)
        try:
            network = asyncio.run(network_parts(args, ids, sizes, broker, workdir))
        finally:
            broker.close()
    print(json.dumps({"bench": "sparkplug", "python": platform.python_version(),
                      "machine": platform.machine(), "goal_metrics_per_s": GOAL_METRICS_PER_S,
                      "encode": encode, **network}))


if __name__ == "__main__":
    main()
