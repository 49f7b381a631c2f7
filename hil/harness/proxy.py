"""A loopback TCP proxy the harness puts between the gateway and a peer, to break the link.

Invariants:

- A byte stream through the proxy is intact or closed: bytes leave in the order they came
  in, and none is dropped while both ends of a connection are open. Bytes are only lost
  together with their connection (``cut``, ``stop``, or one end going away).
- At most ``QUEUE_LIMIT_BYTES`` wait inside the proxy per direction of a connection.
  Beyond that the proxy stops reading the sender, whose TCP window then closes
  (backpressure); no queue grows without bound.
- In ``blackhole`` nothing is forwarded either way. Held bytes are delivered, in order,
  on ``restore()`` (or when the mode changes to ``slow``).
- Listening and upstream addresses are loopback IP literals; anything else is refused.
- No threads. The only tasks are upstream connection attempts; ``stop()`` cancels and
  awaits them, and returns only after every socket the proxy opened is closed.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
from collections import deque
from typing import Final, cast

__all__ = ["QUEUE_LIMIT_BYTES", "LinkMode", "LinkProxy"]

_log = logging.getLogger(__name__)

QUEUE_LIMIT_BYTES: Final = 1 << 20
"""Bytes held or delayed per direction of a connection before the proxy stops reading.

With a latency of ``L`` seconds this caps one direction's throughput at about
``QUEUE_LIMIT_BYTES / L`` bytes per second (1 MiB at 100 ms: about 10 MiB/s), which is
far above what a gateway's MQTT or Modbus traffic needs.
"""

_MTU_BYTES: Final = 1500
"""Smallest piece the rate cap lets through at once, unless the chunk itself is smaller."""

_BURST_S: Final = 0.05
"""Token-bucket depth of the rate cap, in seconds of the configured rate (at least one MTU)."""


class LinkMode(enum.StrEnum):
    """What the link does to the connections through it."""

    PASS = "pass"
    CUT = "cut"  # a cable pulled: open connections are reset, new ones refused
    BLACKHOLE = "blackhole"  # a silent link death: nothing forwarded, nothing closed
    SLOW = "slow"  # latency and/or a bandwidth cap per direction


class _Role(enum.Enum):
    CLIENT = "client"  # the gateway's socket, accepted by the proxy
    PEER = "peer"  # the proxy's socket to the broker or PLC


class _Flow:
    """One direction of a connection pair: bytes read from ``src`` and written to ``dst``.

    ``queue`` holds what arrived but has not been written yet, each chunk with its arrival
    time on the loop clock, so a chunk's due time follows the latency in force when it is
    looked at (slow → pass releases everything at once).
    """

    __slots__ = (
        "dst",
        "dst_paused",
        "link",
        "queue",
        "queued_bytes",
        "reading",
        "refilled",
        "src",
        "src_ended",
        "timer",
        "tokens",
        "upstream",
    )

    def __init__(self, link: LinkProxy, *, upstream: bool) -> None:
        self.link = link
        self.upstream = upstream  # client → peer; counted as bytes_up
        self.src: asyncio.Transport | None = None
        self.dst: asyncio.Transport | None = None
        self.queue: deque[tuple[float, bytes | memoryview]] = deque()
        self.queued_bytes = 0
        self.dst_paused = False  # dst's write buffer is above its high-water mark
        self.src_ended = False  # src is gone: close dst once the queue is empty
        self.reading = True
        self.timer: asyncio.TimerHandle | None = None
        self.tokens = 0.0  # rate-cap token bucket, in bytes
        self.refilled = 0.0  # loop time of the last refill; 0 fills the bucket at once

    def received(self, data: bytes) -> None:
        """Forward ``data`` now if the link passes it straight through, else queue it."""
        link = self.link
        if link.mode is LinkMode.PASS and not self.queue and self.dst is not None:
            self.dst.write(data)
            link.count(upstream=self.upstream, nbytes=len(data))
            return
        self.queue.append((link.loop.time(), data))
        self.queued_bytes += len(data)
        self.pump()

    def pump(self) -> None:
        """Write every queued byte the mode lets through now; arm a timer for the rest."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        link = self.link
        mode = link.mode
        dst = self.dst
        if dst is not None and mode in (LinkMode.PASS, LinkMode.SLOW):
            loop = link.loop
            now = loop.time()
            latency_s = 0.0
            if mode is LinkMode.SLOW:
                latency_s = link.latency_s if not self.upstream or link.both_ways else 0.0
            rate = link.rate_bytes_s if mode is LinkMode.SLOW else None
            while self.queue and not self.dst_paused:
                arrived, chunk = self.queue[0]
                due = arrived + latency_s
                if due > now:
                    self.timer = loop.call_at(due, self.pump)
                    break
                nbytes = len(chunk)
                if rate is not None:
                    self._refill(now, rate)
                    need = min(nbytes, _MTU_BYTES)
                    if self.tokens < need:
                        self.timer = loop.call_at(now + (need - self.tokens) / rate, self.pump)
                        break
                    nbytes = min(nbytes, int(self.tokens))
                    self.tokens -= nbytes
                if nbytes < len(chunk):
                    view = memoryview(chunk)
                    self.queue[0] = (arrived, view[nbytes:])
                    chunk = view[:nbytes]
                else:
                    self.queue.popleft()
                self.queued_bytes -= nbytes
                dst.write(chunk)  # may call pause_writing() at once, ending the loop
                link.count(upstream=self.upstream, nbytes=nbytes)
            if self.src_ended and not self.queue:
                dst.close()  # flushes what the transport still buffers, then FIN
        self.sync_reading()

    def _refill(self, now: float, rate: float) -> None:
        burst = max(rate * _BURST_S, _MTU_BYTES)
        self.tokens = min(burst, self.tokens + (now - self.refilled) * rate)
        self.refilled = now

    def reset_bucket(self) -> None:
        """Start the rate cap over with a full bucket (the rate changed)."""
        self.tokens = 0.0
        self.refilled = 0.0

    def sync_reading(self) -> None:
        """Read from ``src`` only while ``dst`` keeps up and the queue has room."""
        if self.src is None:
            return
        want = not self.dst_paused and self.queued_bytes < QUEUE_LIMIT_BYTES
        if want != self.reading:
            self.reading = want
            if want:
                self.src.resume_reading()
            else:
                self.src.pause_reading()

    def discard(self) -> None:
        """Drop the queue and any timer: the connection this flow belongs to is gone."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.queued_bytes = 0


class _Pair:
    """The gateway's connection and, once connected through, the proxy's one to the peer."""

    def __init__(self, link: LinkProxy, client: asyncio.Transport) -> None:
        self.link = link
        self.client: asyncio.Transport | None = client
        self.peer: asyncio.Transport | None = None
        self.up = _Flow(link, upstream=True)
        self.down = _Flow(link, upstream=False)
        self.up.src = client
        self.down.dst = client
        self.connecting: asyncio.Task[None] | None = None
        self.closed = False

    def flow_into(self, role: _Role) -> _Flow:
        """The flow that writes to the ``role`` end."""
        return self.down if role is _Role.CLIENT else self.up

    def sync(self) -> None:
        """Apply the link's current mode: connect through if allowed, move queued bytes."""
        if self.closed:
            return
        forwarding = self.link.mode in (LinkMode.PASS, LinkMode.SLOW)
        if forwarding and self.peer is None and self.connecting is None:
            self.connecting = self.link.connect_through(self)
        self.up.pump()
        self.down.pump()

    def peer_connected(self, transport: asyncio.Transport) -> None:
        """The upstream connection is up: start moving bytes both ways."""
        self.connecting = None
        self.peer = transport
        self.up.dst = transport
        self.down.src = transport
        self.sync()

    def received(self, role: _Role, data: bytes) -> None:
        """Bytes arrived from the ``role`` end."""
        if not self.closed:
            (self.up if role is _Role.CLIENT else self.down).received(data)

    def end_lost(self, role: _Role) -> None:
        """The ``role`` end closed: deliver what it sent, then close the other end."""
        if role is _Role.CLIENT:
            self.client, inbound, outbound, other = None, self.up, self.down, self.peer
        else:
            self.peer, inbound, outbound, other = None, self.down, self.up, self.client
        inbound.src = None
        inbound.src_ended = True
        outbound.dst = None
        outbound.discard()  # its receiver is gone
        if self.closed:
            return
        if other is None:
            self.close()
        elif role is _Role.CLIENT and self.link.mode is LinkMode.BLACKHOLE:
            # A silent link would not carry the close either, but the gateway has given
            # up on this connection: reset the peer's end now rather than leave it open
            # until restore(). The other way round the gateway is the one under test, so
            # it must not learn of the peer's close before restore() delivers it.
            self.abort()
        else:
            inbound.pump()  # closes `other` once the queue has drained (held in blackhole)

    def abort(self) -> None:
        """Reset both ends at once; queued bytes go with the connection."""
        for transport in (self.client, self.peer):
            if transport is not None:
                transport.abort()
        self.close()

    def close(self) -> None:
        """Forget the pair: no more forwarding, no pending connection attempt."""
        if self.closed:
            return
        self.closed = True
        self.up.discard()
        self.down.discard()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        self.link.forget(self)


class _End(asyncio.Protocol):
    """The protocol of one socket of a pair; hands every event to the pair."""

    def __init__(self, link: LinkProxy, role: _Role, pair: _Pair | None = None) -> None:
        self.link = link
        self.role = role
        self.pair = pair  # a client end gets its pair when the connection is made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast("asyncio.Transport", transport)  # TCP server or connection: a stream
        self.link.end_opened()
        if self.pair is None:
            self.pair = self.link.accepted(transport)
        elif self.pair.closed:
            transport.abort()  # the client left or the link was cut while connecting
        else:
            self.pair.peer_connected(transport)

    def data_received(self, data: bytes) -> None:
        if self.pair is not None:
            self.pair.received(self.role, data)

    def eof_received(self) -> bool | None:
        return None  # half-close is not modelled: the transport closes, then end_lost

    def connection_lost(self, _exc: Exception | None) -> None:
        self.link.end_closed()
        if self.pair is not None:
            self.pair.end_lost(self.role)

    def pause_writing(self) -> None:
        if self.pair is not None:
            flow = self.pair.flow_into(self.role)
            flow.dst_paused = True
            flow.sync_reading()

    def resume_writing(self) -> None:
        if self.pair is not None:
            flow = self.pair.flow_into(self.role)
            flow.dst_paused = False
            flow.pump()


def _require_loopback(name: str, what: str, host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        msg = f"link proxy {name!r}: {what} {host!r} is not a loopback IP address"
        raise ValueError(msg)


class LinkProxy:
    """A loopback TCP proxy between a gateway and one peer, with network faults on demand.

    Calling contract: every method runs on the event loop that called ``start()``; none
    blocks. The fault methods (``cut``, ``blackhole``, ``slow``, ``restore``) take effect
    at once on open connections and can be called in any order, before or after
    ``start()``; each replaces the previous mode. After ``stop()`` no socket of the proxy
    is open and it cannot be started again. ``mode``, ``latency_s``, ``both_ways`` and
    ``rate_bytes_s`` are for reading; change them only through the fault methods.

    Args:
        name: Instance name for log lines and task names, e.g. ``"broker"`` or ``"plc"``.
        upstream_host: The peer's loopback IP address.
        upstream_port: The peer's port.
        listen_host: The loopback IP address the gateway connects to.
        listen_port: The port to listen on; 0 picks a free one (see ``start()``).
    """

    def __init__(
        self,
        name: str,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        _require_loopback(name, "upstream", upstream_host)
        _require_loopback(name, "listen address", listen_host)
        self.name = name
        self.port = listen_port
        self._listen_host = listen_host
        self._upstream = (upstream_host, upstream_port)
        self.mode = LinkMode.PASS
        self.latency_s = 0.0
        self.both_ways = True
        self.rate_bytes_s: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._stopped = False
        self._pairs: set[_Pair] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open_ends = 0  # sockets opened and not yet reported lost
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self._connections_total = 0
        self._refused = 0
        self._connect_failures = 0
        self._bytes_up = 0
        self._bytes_down = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the proxy runs on (the one that called ``start()``)."""
        if self._loop is None:
            msg = f"link proxy {self.name!r} is not started"
            raise RuntimeError(msg)
        return self._loop

    async def start(self) -> int:
        """Listen for the gateway.

        Returns:
            The listening port, also kept in ``self.port``.

        Raises:
            RuntimeError: The proxy was already started, or stopped.
            OSError: The address cannot be bound.
        """
        if self._loop is not None or self._stopped:
            msg = f"link proxy {self.name!r} was already started or stopped"
            raise RuntimeError(msg)
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _End(self, _Role.CLIENT),
            self._listen_host,
            self.port,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        _log.info(
            "Link proxy is listening",
            extra={"link": self.name, "port": self.port, "upstream": self._upstream},
        )
        return self.port

    async def stop(self) -> None:
        """Close the listener and reset every connection; a second call does nothing.

        Returns once every socket the proxy opened is closed and every task it started
        has finished.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            pair.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._server is not None:
            await self._server.wait_closed()
        await self._all_closed.wait()  # connection_lost runs one loop turn after abort()

    def set_upstream(self, host: str, port: int) -> None:
        """Point new connections at another peer; open ones stay where they are."""
        _require_loopback(self.name, "upstream", host)
        self._upstream = (host, port)

    def cut(self) -> None:
        """Pull the cable: reset every open connection and refuse new ones until restore."""
        self._set_mode(LinkMode.CUT)
        for pair in list(self._pairs):
            pair.abort()

    def blackhole(self) -> None:
        """Let the link die silently: hold every byte and every new connection until restore.

        Open connections stay open and forward nothing either way. The proxy keeps reading
        (so it notices an end going away) until ``QUEUE_LIMIT_BYTES`` per direction are
        held, then stops; the sender's TCP window then fills. New connections are
        accepted but connected through only on ``restore()``.

        A peer that closes its end is not reported to the gateway until ``restore()``
        delivers its last bytes and the close. A gateway that closes its end has the
        peer's end reset at once, so no abandoned connection stays open.
        """
        self._set_mode(LinkMode.BLACKHOLE)
        self._sync_pairs()

    def slow(
        self, latency_s: float = 0.0, rate_bytes_s: float | None = None, *,
        both_ways: bool = True,
    ) -> None:
        """Delay every chunk by ``latency_s`` each way; cap each direction at ``rate_bytes_s``.

        ``both_ways=False`` delays only what the peer sends: a request arrives at once and
        its answer is late, so an answer is in transit for ``latency_s`` after the peer
        sent it. Order is kept. The rate cap is a token bucket holding 50 ms of the rate (at least
        1500 bytes), so a burst can pass at once. Bytes held by a blackhole are released
        under these settings.

        Raises:
            ValueError: ``latency_s`` is negative or ``rate_bytes_s`` is not positive.
        """
        if latency_s < 0:
            msg = f"link proxy {self.name!r}: latency_s {latency_s} is negative"
            raise ValueError(msg)
        if rate_bytes_s is not None and rate_bytes_s <= 0:
            msg = f"link proxy {self.name!r}: rate_bytes_s {rate_bytes_s} is not positive"
            raise ValueError(msg)
        self.latency_s = latency_s
        self.rate_bytes_s = rate_bytes_s
        self.both_ways = both_ways
        for pair in self._pairs:
            pair.up.reset_bucket()
            pair.down.reset_bucket()
        self._set_mode(LinkMode.SLOW)
        self._sync_pairs()

    def restore(self) -> None:
        """Back to pass-through: held and delayed bytes are delivered now, in order."""
        self.latency_s = 0.0
        self.rate_bytes_s = None
        self.both_ways = True
        self._set_mode(LinkMode.PASS)
        self._sync_pairs()

    @property
    def state(self) -> str:
        """The current mode: ``"pass"``, ``"cut"``, ``"blackhole"`` or ``"slow"``."""
        return self.mode.value

    def stats(self) -> dict[str, int | str]:
        """Counters since start.

        ``connections_total`` counts every connection the gateway opened, including the
        ``refused`` ones (reset at once because the link was cut); ``connect_failures``
        counts gateway connections closed because the peer could not be reached;
        ``bytes_up`` (gateway → peer) and ``bytes_down`` count bytes delivered;
        ``queued_bytes`` are held or delayed now.
        """
        return {
            "state": self.state,
            "connections_total": self._connections_total,
            "connections_open": len(self._pairs),
            "bytes_up": self._bytes_up,
            "bytes_down": self._bytes_down,
            "refused": self._refused,
            "connect_failures": self._connect_failures,
            "queued_bytes": sum(p.up.queued_bytes + p.down.queued_bytes for p in self._pairs),
        }

    # The methods below are the pairs' and protocols' way back into the proxy.

    def accepted(self, transport: asyncio.Transport) -> _Pair | None:
        """A gateway connection came in; returns its pair, or None if it was refused."""
        self._connections_total += 1
        if self.mode is LinkMode.CUT or self._stopped:
            self._refused += 1
            transport.abort()
            return None
        pair = _Pair(self, transport)
        self._pairs.add(pair)
        pair.sync()
        return pair

    def connect_through(self, pair: _Pair) -> asyncio.Task[None]:
        """Start connecting ``pair`` to the current upstream."""
        task = self.loop.create_task(self._connect(pair), name=f"proxy[{self.name}].connect")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _connect(self, pair: _Pair) -> None:
        host, port = self._upstream
        try:
            await self.loop.create_connection(lambda: _End(self, _Role.PEER, pair), host, port)
        except OSError as err:
            self._connect_failures += 1
            _log.warning(
                "Link proxy could not reach its upstream; closing the gateway connection",
                extra={"link": self.name, "upstream": (host, port), "error": str(err)},
            )
            pair.connecting = None
            pair.abort()

    def forget(self, pair: _Pair) -> None:
        """``pair`` is closed: it no longer counts as open."""
        self._pairs.discard(pair)

    def count(self, *, upstream: bool, nbytes: int) -> None:
        """Count ``nbytes`` delivered in one direction."""
        if upstream:
            self._bytes_up += nbytes
        else:
            self._bytes_down += nbytes

    def end_opened(self) -> None:
        """A socket of the proxy is open."""
        self._open_ends += 1
        self._all_closed.clear()

    def end_closed(self) -> None:
        """A socket of the proxy is closed."""
        self._open_ends -= 1
        if self._open_ends == 0:
            self._all_closed.set()

    def _set_mode(self, mode: LinkMode) -> None:
        if mode is not self.mode:
            _log.info(
                "Link mode changed",
                extra={"link": self.name, "from": self.mode.value, "to": mode.value},
            )
        self.mode = mode

    def _sync_pairs(self) -> None:
        for pair in list(self._pairs):
            pair.sync()
