"""LinkProxy: pass-through integrity, cut, blackhole, slow, upstream moves, stop and stats."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from hil.harness.proxy import QUEUE_LIMIT_BYTES, LinkProxy

from tests.helpers.waiting import until

LOOPBACK = "127.0.0.1"
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Peer:
    """A TCP server on loopback that hands every accepted connection to the test."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[Stream] = asyncio.Queue()
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.accepted.put_nowait((reader, writer))

    async def next(self) -> Stream:
        """The next connection the proxy made to this peer."""
        async with asyncio.timeout(5):
            return await self.accepted.get()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await _close_all(self.writers)
        if self._server is not None:
            await self._server.wait_closed()


async def _close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.fixture(autouse=True)
async def _no_leftover_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves a task running (the proxy's connect tasks included)."""
    yield
    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert not left, f"tasks left behind: {left}"


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    server = Peer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A loopback port whose accept queue is full, so a new connection attempt hangs."""
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):  # Linux queues backlog + 1; beyond that it drops the SYN
        filler = socket.socket()
        filler.settimeout(0)  # non-blocking: the connect completes (or not) in the kernel
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    yield int(listener.getsockname()[1])
    for sock in [*fillers, listener]:
        sock.close()


def _proxy_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("proxy[")]


@pytest.fixture
async def link(peer: Peer) -> AsyncIterator[LinkProxy]:
    proxy = LinkProxy("test", LOOPBACK, peer.port)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def dial(link: LinkProxy) -> AsyncIterator[Callable[[], Awaitable[Stream]]]:
    """Open gateway-side connections to the proxy; all are closed after the test."""
    writers: list[asyncio.StreamWriter] = []

    async def connect() -> Stream:
        reader, writer = await asyncio.open_connection(LOOPBACK, link.port)
        writers.append(writer)
        return reader, writer

    yield connect
    await _close_all(writers)


async def _through(dial: Callable[[], Awaitable[Stream]], peer: Peer) -> tuple[Stream, Stream]:
    """A connection through the proxy, proven to be connected end to end."""
    client = await dial()
    far = await peer.next()
    client[1].write(b"?")
    far[1].write(b"!")
    async with asyncio.timeout(5):
        assert await far[0].readexactly(1) == b"?"
        assert await client[0].readexactly(1) == b"!"
    return client, far


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything until EOF; a reset counts as the end too (the proxy aborts on cut)."""
    async with asyncio.timeout(5):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def _send(writer: asyncio.StreamWriter, data: bytes, piece: int = 65536) -> None:
    for start in range(0, len(data), piece):
        writer.write(data[start : start + piece])
        await writer.drain()


def _queued(link: LinkProxy) -> int:
    value = link.stats()["queued_bytes"]
    assert isinstance(value, int)
    return value


def _payload(nbytes: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(nbytes)


async def test_pass_through_keeps_both_streams_intact(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """A few MB each way at once arrive byte for byte, and every byte is counted."""
    up, down = _payload(4_000_000, 1), _payload(3_000_000, 2)
    (c_reader, c_writer), (p_reader, p_writer) = await _through(dial, peer)

    async with asyncio.timeout(8):
        _, _, got_up, got_down = await asyncio.gather(
            _send(c_writer, up),
            _send(p_writer, down),
            p_reader.readexactly(len(up)),
            c_reader.readexactly(len(down)),
        )

    assert got_up == up
    assert got_down == down
    stats = link.stats()
    assert stats["bytes_up"] == len(up) + 1
    assert stats["bytes_down"] == len(down) + 1


async def test_mode_changes_under_load_keep_the_stream_intact(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """Switching pass → slow → blackhole → pass mid-transfer neither loses nor reorders."""
    data = _payload(2_000_000, 3)
    (_, c_writer), (p_reader, _) = await _through(dial, peer)
    modes: list[Callable[[], None]] = [
        lambda: link.slow(latency_s=0.005),
        link.blackhole,
        link.restore,
        lambda: link.slow(rate_bytes_s=50_000_000),
        link.restore,
    ]

    async def send_switching() -> None:
        for index, start in enumerate(range(0, len(data), 65536)):
            c_writer.write(data[start : start + 65536])
            modes[index % len(modes)]()
            await c_writer.drain()
        link.restore()

    async with asyncio.timeout(8):
        _, got = await asyncio.gather(send_switching(), p_reader.readexactly(len(data)))

    assert got == data


async def test_cut_resets_open_connections(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """cut() ends every open connection on both sides and leaves none open."""
    (c_reader, _), (p_reader, _) = await _through(dial, peer)

    link.cut()

    assert await _read_to_end(c_reader) == b""
    assert await _read_to_end(p_reader) == b""
    assert link.state == "cut"
    assert link.stats()["connections_open"] == 0


async def test_cut_refuses_new_connections_until_restore(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """While cut, a new connection is reset without reaching the peer; after restore it works."""
    link.cut()
    refused_reader, _ = await dial()
    assert await _read_to_end(refused_reader) == b""
    assert link.stats()["refused"] == 1
    assert peer.accepted.empty()

    link.restore()
    await _through(dial, peer)

    stats = link.stats()
    assert stats["state"] == "pass"
    assert stats["connections_total"] == 2
    assert stats["connections_open"] == 1


async def test_blackhole_holds_bytes_and_restore_delivers_them_in_order(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """Nothing crosses a blackhole either way; restore() delivers the held bytes in order."""
    (c_reader, c_writer), (p_reader, p_writer) = await _through(dial, peer)

    link.blackhole()
    c_writer.write(b"up-1;")
    p_writer.write(b"down-1;")
    reads = {
        asyncio.create_task(p_reader.readexactly(len(b"up-1;up-2;"))),
        asyncio.create_task(c_reader.readexactly(len(b"down-1;"))),
    }
    await until(lambda: _queued(link) == len(b"up-1;down-1;"), 5, "bytes held")
    done, _ = await asyncio.wait(reads, timeout=0.3)  # the one timed negative check
    assert not done
    c_writer.write(b"up-2;")
    await c_writer.drain()

    link.restore()

    async with asyncio.timeout(5):
        done, _ = await asyncio.wait(reads)
    assert sorted(task.result() for task in done) == [b"down-1;", b"up-1;up-2;"]
    assert link.stats()["connections_open"] == 1


async def test_blackhole_accepts_new_connections_without_connecting_through(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """A connection made during a blackhole reaches the peer, with its bytes, only on restore."""
    link.blackhole()
    _, c_writer = await dial()
    c_writer.write(b"hello")
    await until(lambda: _queued(link) == len(b"hello"), 5, "bytes held")
    assert peer.accepted.empty()
    assert link.stats()["connections_open"] == 1

    link.restore()

    p_reader, _ = await peer.next()
    async with asyncio.timeout(5):
        assert await p_reader.readexactly(5) == b"hello"


async def test_blackholed_pair_whose_client_closes_is_cleaned_up(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """When the gateway gives up on a blackholed connection, both ends are closed."""
    (_, c_writer), (p_reader, _) = await _through(dial, peer)
    link.blackhole()
    _, pending_writer = await dial()  # accepted during the blackhole, never connected through
    await until(lambda: link.stats()["connections_open"] == 2, 5, "both connections open")

    c_writer.close()
    pending_writer.close()

    assert await _read_to_end(p_reader) == b""
    await until(lambda: link.stats()["connections_open"] == 0, 5, "pairs cleaned up")


async def test_blackhole_keeps_a_peer_close_from_the_gateway_until_restore(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """The peer's last bytes and close reach the gateway only when the link comes back."""
    (c_reader, _), (_, p_writer) = await _through(dial, peer)
    link.blackhole()
    p_writer.write(b"bye")
    p_writer.close()
    await p_writer.wait_closed()
    await until(lambda: _queued(link) == len(b"bye"), 5, "bytes held")
    assert link.stats()["connections_open"] == 1

    link.restore()

    assert await _read_to_end(c_reader) == b"bye"
    await until(lambda: link.stats()["connections_open"] == 0, 5, "pair closed")


async def test_slow_after_blackhole_releases_the_held_bytes_late(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """Going from blackhole straight to slow releases held bytes and pending connections."""
    (_, c_writer), (p_reader, _) = await _through(dial, peer)
    link.blackhole()
    _, pending_writer = await dial()
    c_writer.write(b"held")
    pending_writer.write(b"waiting")
    await until(lambda: _queued(link) == len(b"heldwaiting"), 5, "bytes held")

    link.slow(latency_s=0.05)

    pending_far, _ = await peer.next()
    async with asyncio.timeout(5):
        assert await p_reader.readexactly(4) == b"held"
        assert await pending_far.readexactly(7) == b"waiting"


async def test_blackhole_stops_reading_when_its_hold_is_full(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """A blackhole holds at most QUEUE_LIMIT_BYTES in the proxy, then pushes back on the sender."""
    data = _payload(3 * QUEUE_LIMIT_BYTES, 4)
    (_, c_writer), (p_reader, _) = await _through(dial, peer)
    link.blackhole()
    sending = asyncio.create_task(_send(c_writer, data))
    await until(lambda: _queued(link) >= QUEUE_LIMIT_BYTES, 5, "hold full")
    assert _queued(link) < QUEUE_LIMIT_BYTES + 300_000  # one read past the limit at most

    link.restore()

    async with asyncio.timeout(5):
        got = await p_reader.readexactly(len(data))
        await sending
    assert got == data


async def test_slow_adds_latency_each_way_and_keeps_order(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """Every chunk arrives at least latency_s after it was sent, in order, without stacking up."""
    latency_s = 0.2
    (c_reader, c_writer), (p_reader, p_writer) = await _through(dial, peer)
    link.slow(latency_s=latency_s)
    messages = [f"m{index:03d};".encode() for index in range(50)]

    started = time.monotonic()
    for message in messages:
        c_writer.write(message)
        p_writer.write(message)
    async with asyncio.timeout(5):
        got_up, got_down = await asyncio.gather(
            p_reader.readexactly(len(b"".join(messages))),
            c_reader.readexactly(len(b"".join(messages))),
        )
    elapsed = time.monotonic() - started

    assert got_up == got_down == b"".join(messages)
    assert elapsed >= latency_s
    assert elapsed < 10 * latency_s  # latency is added once per chunk, not per chunk in turn
    assert link.state == "slow"


async def test_one_way_slow_delays_only_the_answers(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """both_ways=False: a request reaches the peer at once, its answer is latency_s late."""
    latency_s = 0.3
    (c_reader, c_writer), (p_reader, p_writer) = await _through(dial, peer)
    link.slow(latency_s=latency_s, both_ways=False)

    started = time.monotonic()
    c_writer.write(b"request;")
    async with asyncio.timeout(5):
        assert await p_reader.readexactly(8) == b"request;"
        arrived_s = time.monotonic() - started
        p_writer.write(b"answer;")
        assert await c_reader.readexactly(7) == b"answer;"
    answered_s = time.monotonic() - started - arrived_s

    assert arrived_s < latency_s / 2
    assert answered_s >= latency_s
    assert not link.both_ways


async def test_rate_cap_bounds_throughput_each_way(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """With a rate cap, N bytes take at least about N / rate seconds and arrive intact."""
    rate_bytes_s = 200_000
    up, down = _payload(200_000, 5), _payload(200_000, 6)
    (c_reader, c_writer), (p_reader, p_writer) = await _through(dial, peer)
    link.slow(rate_bytes_s=rate_bytes_s)

    started = time.monotonic()
    async with asyncio.timeout(5):
        _, _, got_up, got_down = await asyncio.gather(
            _send(c_writer, up),
            _send(p_writer, down),
            p_reader.readexactly(len(up)),
            c_reader.readexactly(len(down)),
        )
    elapsed = time.monotonic() - started

    assert got_up == up
    assert got_down == down
    assert elapsed >= 0.8 * len(up) / rate_bytes_s


async def test_restore_after_slow_releases_delayed_bytes_at_once(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """restore() removes the latency from bytes already waiting, not only from new ones."""
    (_, c_writer), (p_reader, _) = await _through(dial, peer)
    link.slow(latency_s=30.0)
    c_writer.write(b"late")
    await until(lambda: _queued(link) == len(b"late"), 5, "bytes delayed")

    link.restore()

    async with asyncio.timeout(5):
        assert await p_reader.readexactly(4) == b"late"


async def test_cut_after_slow_drops_the_delayed_bytes_with_the_connection(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """Bytes still delayed when the link is cut are lost together with their connection."""
    (_, c_writer), (p_reader, _) = await _through(dial, peer)
    link.slow(latency_s=30.0)
    c_writer.write(b"never")
    await until(lambda: _queued(link) == len(b"never"), 5, "bytes delayed")

    link.cut()

    assert await _read_to_end(p_reader) == b""
    assert _queued(link) == 0


async def test_a_close_on_either_side_closes_the_other_after_its_bytes(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """Bytes sent just before a close are delivered, then the other side sees EOF."""
    (c_reader, c_writer), (p_reader, p_writer) = await _through(dial, peer)
    p_writer.write(b"last words")
    p_writer.close()
    assert await _read_to_end(c_reader) == b"last words"

    (c_reader, c_writer), (p_reader, p_writer) = await _through(dial, peer)
    link.slow(latency_s=0.05)
    c_writer.write(b"delayed, then closed")
    c_writer.close()
    assert await _read_to_end(p_reader) == b"delayed, then closed"
    await until(lambda: link.stats()["connections_open"] == 0, 5, "pairs closed")


async def test_set_upstream_moves_new_connections_only(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """After set_upstream() new connections reach the new peer; an open one stays put."""
    (_, old_writer), (old_far_reader, _) = await _through(dial, peer)
    moved = Peer()
    await moved.start()
    try:
        link.set_upstream(LOOPBACK, moved.port)
        await _through(dial, moved)
        old_writer.write(b"still here")
        async with asyncio.timeout(5):
            assert await old_far_reader.readexactly(10) == b"still here"
        assert peer.accepted.empty()
    finally:
        await moved.close()


async def test_unreachable_upstream_closes_the_gateway_connection(
    link: LinkProxy, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """If the peer refuses the connection, the gateway's is closed and the failure counted."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        nobody = int(sock.getsockname()[1])  # bound, never listening: connections are refused
        link.set_upstream(LOOPBACK, nobody)
        reader, _ = await dial()
        assert await _read_to_end(reader) == b""
    await until(lambda: link.stats()["connect_failures"] == 1, 5, "failure counted")
    assert link.stats()["connections_open"] == 0


async def test_cut_during_a_connection_attempt_abandons_it(
    link: LinkProxy, dial: Callable[[], Awaitable[Stream]], stalled_port: int
) -> None:
    """A cut while the proxy is still connecting upstream resets the gateway, ends the attempt."""
    link.set_upstream(LOOPBACK, stalled_port)
    reader, _ = await dial()
    await until(lambda: len(_proxy_tasks()) == 1, 5, "connection attempt under way")

    link.cut()

    assert await _read_to_end(reader) == b""
    await until(lambda: not _proxy_tasks(), 5, "connection attempt ended")
    assert link.stats()["connections_open"] == 0
    assert link.stats()["connect_failures"] == 0


async def test_stop_ends_connection_attempts_before_returning(
    link: LinkProxy, dial: Callable[[], Awaitable[Stream]], stalled_port: int
) -> None:
    """stop() returns only after the proxy's connection attempts have finished."""
    link.set_upstream(LOOPBACK, stalled_port)
    await dial()
    await until(lambda: len(_proxy_tasks()) == 1, 5, "connection attempt under way")

    await link.stop()

    assert _proxy_tasks() == []


async def test_stop_closes_everything_and_is_idempotent(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """stop() ends open connections, stops listening, and can be called again."""
    (c_reader, _), (p_reader, _) = await _through(dial, peer)
    link.blackhole()
    await dial()  # a pending connection too

    await link.stop()
    await link.stop()

    assert await _read_to_end(c_reader) == b""
    assert await _read_to_end(p_reader) == b""
    assert link.stats()["connections_open"] == 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(LOOPBACK, link.port)


async def test_stats_count_connections_and_bytes(
    link: LinkProxy, peer: Peer, dial: Callable[[], Awaitable[Stream]]
) -> None:
    """stats() counts every connection, the open ones, and the bytes each way."""
    (_, first_writer), (first_far, _) = await _through(dial, peer)
    (second_reader, _), (_, second_far_writer) = await _through(dial, peer)
    first_writer.write(b"12345")
    second_far_writer.write(b"1234567")
    async with asyncio.timeout(5):
        await first_far.readexactly(5)
        await second_reader.readexactly(7)
    first_writer.close()
    await until(lambda: link.stats()["connections_open"] == 1, 5, "one closed")

    assert link.stats() == {
        "state": "pass",
        "connections_total": 2,
        "connections_open": 1,
        "bytes_up": 2 + 5,
        "bytes_down": 2 + 7,
        "refused": 0,
        "connect_failures": 0,
        "queued_bytes": 0,
    }


@pytest.mark.parametrize(
    ("upstream", "listen"),
    [("192.0.2.10", LOOPBACK), (LOOPBACK, "0.0.0.0"), ("localhost", LOOPBACK)],
)
def test_only_loopback_addresses_are_accepted(upstream: str, listen: str) -> None:
    """A proxy refuses to listen on or forward to anything but a loopback IP address."""
    with pytest.raises(ValueError, match="is not a loopback IP address"):
        LinkProxy("test", upstream, 1, listen_host=listen)


def test_slow_refuses_negative_latency_and_non_positive_rate() -> None:
    """slow() refuses settings that cannot describe a link."""
    proxy = LinkProxy("test", LOOPBACK, 1)
    with pytest.raises(ValueError, match="latency_s -1"):
        proxy.slow(latency_s=-1)
    with pytest.raises(ValueError, match="rate_bytes_s 0"):
        proxy.slow(rate_bytes_s=0)
    assert proxy.state == "pass"
