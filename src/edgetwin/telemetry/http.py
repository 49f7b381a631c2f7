"""A tiny HTTP/1.1 server on the event loop for /metrics and /status, and its CLI client."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from structlog.typing import FilteringBoundLogger

from edgetwin.core.errors import EdgetwinError

_log: FilteringBoundLogger = structlog.get_logger("edgetwin.telemetry.http")

Route = Callable[[], tuple[str, bytes]]
"""Returns ``(content_type, body)``; called on the event loop, so it must be quick."""

MAX_HEAD_BYTES: Final = 8 * 1024  # request line plus headers
REQUEST_TIMEOUT_S: Final = 5.0  # to receive the head, and again to send the response
JSON_CONTENT_TYPE: Final = "application/json"


class EndpointUnavailable(EdgetwinError, ConnectionError):
    """Nothing answered at the address: refused, reset or timed out (daemon not running?)."""


class EndpointError(EdgetwinError, ValueError):
    """The endpoint answered, but not with status 200 and a JSON object.

    A ``ValueError`` like ``json.JSONDecodeError``, so callers that catch
    ``(OSError, ValueError)`` handle both failures of ``fetch_json``.
    """


class _BadRequest(Exception):
    """The request could not be parsed; carries the status to answer with."""

    def __init__(self, status: HTTPStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def json_body(data: object) -> tuple[str, bytes]:
    """Encode ``data`` as a route result; values JSON cannot encode are written as ``str``."""
    return JSON_CONTENT_TYPE, json.dumps(data, default=str).encode() + b"\n"


class HttpEndpoint:
    """A running server started by ``start_http``.

    ``close()`` stops listening, cancels requests in flight and waits for them, so
    nothing started by the server outlives it. Usable as an async context manager.
    """

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        max_connections: int,
        timeout_s: float,
    ) -> None:
        self._routes = dict(routes)
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        self._active: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._closed = False
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:9108``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def active_connections(self) -> int:
        """Connections being served right now (for status output and tests)."""
        return len(self._active)

    async def _start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD_BYTES)
        # With a name that resolves to several addresses and port 0, each socket gets its
        # own port; we report the first. Pass a literal address to avoid the ambiguity.
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = str(sockname[0]), int(sockname[1])

    async def close(self) -> None:
        """Stop listening and end every connection in flight. Safe to call twice."""
        server = self._server
        if server is None or self._closed:
            return
        self._closed = True
        server.close()
        tasks = list(self._active)
        for task in tasks:
            task.cancel()
        # return_exceptions: each handler ends in the CancelledError we just asked for.
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> HttpEndpoint:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or self._closed or len(self._active) >= self._max_connections:
            # Bounded: a flood of idle connections must not grow memory or tasks. A
            # connection accepted just before close() is not served either.
            writer.transport.abort()
            return
        self._active.add(task)
        try:
            response = await self._respond(reader)
            if response is not None:
                writer.write(response)
                async with asyncio.timeout(self._timeout_s):
                    await writer.drain()
        except (TimeoutError, ConnectionError):
            writer.transport.abort()
        finally:
            self._active.discard(task)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(self._timeout_s):
                    await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                method, target = await _read_head(reader)
        except _BadRequest as err:
            _log.debug("HTTP request refused", status=int(err.status), detail=str(err))
            return _response(err.status, "text/plain; charset=utf-8", f"{err}\n".encode())
        except TimeoutError:
            return _error(HTTPStatus.REQUEST_TIMEOUT)
        except asyncio.IncompleteReadError as err:
            # The peer closed first; if it sent nothing at all there is nobody to answer.
            return _error(HTTPStatus.BAD_REQUEST) if err.partial else None

        path = urlsplit(target).path
        route = self._routes.get(path)
        if route is None:
            status = HTTPStatus.NOT_FOUND
            reply = _error(status)
        elif method != "GET":
            status = HTTPStatus.METHOD_NOT_ALLOWED
            reply = _error(status, extra=(("Allow", "GET"),))
        else:
            try:
                content_type, body = route()
            except Exception:
                _log.exception("HTTP route failed", path=path)
                status = HTTPStatus.INTERNAL_SERVER_ERROR
                reply = _error(status)
            else:
                status = HTTPStatus.OK
                reply = _response(status, content_type, body)
        _log.debug("HTTP request served", method=method, path=path, status=int(status))
        return reply


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Read the request line and headers; return (method, target)."""
    lines: list[bytes] = []
    total = 0
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as err:
            raise _BadRequest(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large"
            ) from err
        total += len(line)
        if total > MAX_HEAD_BYTES:
            raise _BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        line = line.rstrip(b"\r\n")
        if not line:
            if lines:
                break
            continue  # RFC 9112 section 2.2: ignore empty lines before the request line
        lines.append(line)

    try:
        request_line = lines[0].decode("ascii")
    except UnicodeDecodeError as err:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "request line is not ASCII") from err
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, _version = parts
    if not target.startswith("/"):
        raise _BadRequest(HTTPStatus.BAD_REQUEST, "request target must be a path")
    for header in lines[1:]:
        if b":" not in header:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed header line")
    return method, target


def _response(
    status: HTTPStatus,
    content_type: str,
    body: bytes,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    headers = [
        f"HTTP/1.1 {int(status)} {status.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in extra),
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + body


def _error(status: HTTPStatus, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    body = f"{int(status)} {status.phrase}\n".encode()
    return _response(status, "text/plain; charset=utf-8", body, extra)


async def start_http(
    host: str,
    port: int,
    routes: Mapping[str, Route],
    *,
    max_connections: int = 16,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> HttpEndpoint:
    """Start serving ``routes`` (path -> route) on the running loop.

    Scope: GET of a fixed set of paths, one request per connection (``Connection:
    close``), no request bodies, no keep-alive, no TLS and no authentication, so bind it
    to loopback or a management network. Anything more belongs behind a reverse proxy.

    Answers GET only (405 otherwise), 404 for unknown paths, 500 (logged with its
    traceback) when a route raises, 400/431/408 for malformed, oversized or slow requests;
    none of these stop the server. The query string is ignored.

    Args:
        host: Address to bind, e.g. ``127.0.0.1``.
        port: Port to bind; 0 picks a free one (see ``HttpEndpoint.port``).
        routes: Exact paths to routes, copied at start.
        max_connections: Connections served at once; more are closed straight away.
        timeout_s: Limit for receiving the request head, and for sending the response.

    Raises:
        OSError: The address cannot be bound.
    """
    endpoint = HttpEndpoint(routes, max_connections=max_connections, timeout_s=timeout_s)
    await endpoint._start(host, port)
    _log.info("HTTP endpoint listening", url=endpoint.url, paths=sorted(routes))
    return endpoint


def fetch_json(host: str, port: int, path: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """GET ``path`` from a running daemon and decode its JSON object (for the CLI).

    Blocking, by design: the CLI has no event loop. Not for use inside the daemon.

    Raises:
        EndpointUnavailable: Nothing listens there, or it did not answer in ``timeout_s``.
        EndpointError: It answered with a status other than 200 or not a JSON object.
    """
    display_host = f"[{host}]" if ":" in host else host
    url = f"http://{display_host}:{port}{path}"
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Accept": JSON_CONTENT_TYPE})
        response = conn.getresponse()
        body = response.read()
    except ConnectionRefusedError as err:
        msg = f"nothing is listening at {url} (is the daemon running?)"
        raise EndpointUnavailable(msg) from err
    except TimeoutError as err:
        msg = f"{url} did not answer within {timeout_s} s"
        raise EndpointUnavailable(msg) from err
    except (OSError, http.client.HTTPException) as err:
        msg = f"GET {url} failed: {err}"
        raise EndpointUnavailable(msg) from err
    finally:
        conn.close()

    if response.status != HTTPStatus.OK:
        msg = f"GET {url} answered {response.status} {response.reason}"
        raise EndpointError(msg)
    try:
        data = json.loads(body)
    except ValueError as err:
        msg = f"GET {url} did not return JSON: {err}"
        raise EndpointError(msg) from err
    if not isinstance(data, dict):
        msg = f"GET {url} returned JSON {type(data).__name__}, not an object"
        raise EndpointError(msg)
    return data
