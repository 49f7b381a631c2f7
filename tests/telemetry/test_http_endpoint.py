"""The /metrics and /status HTTP endpoint and the CLI's fetch_json, over real TCP sockets."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest

from edgetwin.telemetry import (
    EndpointError,
    EndpointUnavailable,
    HttpEndpoint,
    Telemetry,
    fetch_json,
    json_body,
    start_http,
)


async def _until_active(server: HttpEndpoint, count: int) -> None:
    """Wait (bounded) until the server has accepted ``count`` connections."""
    async with asyncio.timeout(2.0):
        # Polling a count, bounded by the timeout; an Event on the endpoint just for
        # tests would be more machinery than this.
        while server.active_connections < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def _boom() -> tuple[str, bytes]:
    msg = "route bug"
    raise RuntimeError(msg)


@pytest.fixture
async def endpoint() -> AsyncIterator[HttpEndpoint]:
    """A server on 127.0.0.1 with /metrics, /status and a failing /boom route."""
    telemetry = Telemetry()
    telemetry.source_health("skid1").up()
    routes = {
        "/metrics": telemetry.metrics_route,
        "/status": lambda: json_body({"state": "running", "sources": ["skid1"]}),
        "/boom": _boom,
    }
    server = await start_http("127.0.0.1", 0, routes)
    yield server
    await server.close()


async def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes, parse the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


async def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    return await _exchange(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())


async def test_metrics_served_on_an_ephemeral_port(endpoint: HttpEndpoint) -> None:
    """GET /metrics returns the exposition with Content-Length and Connection: close."""
    assert endpoint.port != 0
    assert endpoint.host == "127.0.0.1"
    status, headers, body = await _get(endpoint.port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert b'edgetwin_source_up{source="skid1"} 1.0' in body


async def test_status_served_as_json(endpoint: HttpEndpoint) -> None:
    """GET /status (query string ignored) returns the route's JSON."""
    status, headers, body = await _get(endpoint.port, "/status?verbose=1")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"state": "running", "sources": ["skid1"]}


async def test_unknown_path_is_404(endpoint: HttpEndpoint) -> None:
    """A path without a route answers 404."""
    status, _, body = await _get(endpoint.port, "/nope")
    assert status == 404
    assert body == b"404 Not Found\n"


async def test_other_methods_are_405(endpoint: HttpEndpoint) -> None:
    """POST to a known path answers 405 with Allow: GET."""
    status, headers, _ = await _exchange(
        endpoint.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    assert status == 405
    assert headers["allow"] == "GET"


@pytest.mark.parametrize(
    "garbage",
    [
        b"hello\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS ClientHello
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        b"half a request",
    ],
)
async def test_garbage_gets_400_and_the_server_keeps_running(
    endpoint: HttpEndpoint, garbage: bytes
) -> None:
    """A malformed request answers 400; the next request is served normally."""
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(garbage)
    writer.write_eof()
    raw = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    await writer.wait_closed()
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")

    status, _, _ = await _get(endpoint.port, "/status")
    assert status == 200


async def test_oversized_head_gets_431(endpoint: HttpEndpoint) -> None:
    """More than 8 KiB of request head answers 431 and the server keeps running."""
    request = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n"
    status, _, _ = await _exchange(endpoint.port, request)
    assert status == 431
    many = b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 2000 + b"\r\n"
    status, _, _ = await _exchange(endpoint.port, many)
    assert status == 431
    assert (await _get(endpoint.port, "/status"))[0] == 200


async def test_failing_route_is_500_and_logged(endpoint: HttpEndpoint, logs) -> None:
    """A route that raises answers 500, logs the traceback, and other routes still work."""
    status, _, _ = await _get(endpoint.port, "/boom")
    assert status == 500
    (failed,) = logs.events("HTTP route failed")
    assert failed["path"] == "/boom"
    assert "RuntimeError: route bug" in failed["exception"]
    assert (await _get(endpoint.port, "/metrics"))[0] == 200


async def test_silent_client_is_dropped_and_server_survives(endpoint: HttpEndpoint) -> None:
    """A client that connects and closes without a byte gets nothing and breaks nothing."""
    _, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.close()
    await writer.wait_closed()
    assert (await _get(endpoint.port, "/status"))[0] == 200


async def test_slow_client_times_out_with_408() -> None:
    """A request head that does not arrive within the timeout answers 408."""
    async with await start_http(
        "127.0.0.1", 0, {"/status": lambda: json_body({})}, timeout_s=0.2
    ) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /status HTTP/1.1\r\n")
        raw = await asyncio.wait_for(reader.read(), 2.0)
        writer.close()
        await writer.wait_closed()
    assert raw.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_connections_beyond_the_limit_are_closed() -> None:
    """With max_connections=1 a second concurrent connection is closed without an answer."""
    async with await start_http(
        "127.0.0.1", 0, {"/status": lambda: json_body({})}, max_connections=1
    ) as server:
        _, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await _until_active(server, 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            raw = await asyncio.wait_for(reader.read(), 2.0)
        except ConnectionResetError:
            raw = b""
        writer.close()
        idle_writer.close()
    assert raw == b""


async def test_close_ends_connections_in_flight() -> None:
    """close() with an idle client connected returns promptly and leaves no task behind."""
    server = await start_http("127.0.0.1", 0, {"/status": lambda: json_body({})})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await _until_active(server, 1)  # the handler is now waiting for the request head
    await asyncio.wait_for(server.close(), 1.0)
    await server.close()  # idempotent
    assert await asyncio.wait_for(reader.read(), 1.0) == b""
    writer.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(OSError, match=r"Connect call failed|refused"):
        await asyncio.open_connection("127.0.0.1", server.port)


async def test_fetch_json_reads_status(endpoint: HttpEndpoint) -> None:
    """fetch_json (blocking, so run in a thread here) returns the decoded object."""
    data = await asyncio.to_thread(fetch_json, "127.0.0.1", endpoint.port, "/status")
    assert data == {"state": "running", "sources": ["skid1"]}


async def test_fetch_json_refuses_non_json_and_errors(endpoint: HttpEndpoint) -> None:
    """A 404 or a non-JSON body raises EndpointError naming the URL."""
    with pytest.raises(EndpointError, match="answered 404 Not Found"):
        await asyncio.to_thread(fetch_json, "127.0.0.1", endpoint.port, "/nope")
    with pytest.raises(EndpointError, match="did not return JSON") as info:
        await asyncio.to_thread(fetch_json, "127.0.0.1", endpoint.port, "/metrics")
    assert isinstance(info.value, ValueError)


def test_fetch_json_to_a_closed_port_raises_connection_error() -> None:
    """Nothing listening raises EndpointUnavailable, a ConnectionError, with a clear message."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match="nothing is listening at") as info:
        fetch_json("127.0.0.1", port, "/status", timeout_s=1.0)
    assert isinstance(info.value, EndpointUnavailable)


def test_fetch_json_times_out() -> None:
    """A peer that accepts but never answers raises EndpointUnavailable after the timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(EndpointUnavailable, match=r"did not answer within 0\.2 s"):
            fetch_json("127.0.0.1", port, "/status", timeout_s=0.2)
