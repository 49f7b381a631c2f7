"""The fault-injection and inspection API: HTTP/JSON on a loopback port, and its client.

| method | path | body / query | answer |
|---|---|---|---|
| GET | /state | — | true plant state (no sensor faults) |
| GET | /faults | — | active faults |
| POST | /faults | {"kind", "target", "duration_s", "params": {...}} | the new fault |
| DELETE | /faults, /faults/<id> | — | {"cleared": n} |
| GET | /writes | ?face=&name=&since=&accepted=true|false | the write log |
| GET | /served | ?name= | values served: {"counter": {"reads", "runs", "dropped_runs"}} |
| POST | /write | {"name", "value"} | a write as an operator panel would make it |
| POST | /scenario | a scenario document (see scenario.py) | {"actions": n} |

Errors answer 400/404 with {"error": "..."}; the simulator keeps running whatever arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict
from typing import Any

from plcsim.faults import FaultError
from plcsim.scenario import Scenario, ScenarioError
from plcsim.sim import Sim

_MAX_REQUEST = 1 << 20
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 500: "Internal Server Error"}


class ControlError(Exception):
    """A request the API refuses; becomes a 4xx answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlServer:
    """Serves the control API for one ``Sim``."""

    def __init__(self, sim: Sim, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._scenarios: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        """Bind and serve; returns the base URL."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.url

    async def stop(self) -> None:
        """Stop serving and cancel running scenarios."""
        for task in self._scenarios:
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def run_scenario(self, scenario: Scenario) -> None:
        """Play ``scenario`` against the sim in the background."""
        task = asyncio.get_running_loop().create_task(scenario.play(self.sim))
        self._scenarios.add(task)
        task.add_done_callback(self._scenarios.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                status, body = await self._respond(reader)
        except TimeoutError:
            status, body = 400, {"error": "request timed out"}
        except ControlError as err:
            status, body = err.status, {"error": str(err)}
        except (ValueError, UnicodeDecodeError, asyncio.IncompleteReadError) as err:
            status, body = 400, {"error": f"malformed request: {err}"}
        data = json.dumps(body).encode()
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + data)
            await writer.drain()
        writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        request_line = (await reader.readline()).decode("latin-1").strip()
        method, target, _version = request_line.split(" ", 2)
        length = 0
        while (line := (await reader.readline()).decode("latin-1").strip()):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length > _MAX_REQUEST:
            raise ControlError(413, "request body too large")
        raw = await reader.readexactly(length) if length else b""
        body = json.loads(raw) if raw else None
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        return 200, self._route(method, url.path.rstrip("/") or "/", query, body)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        sim = self.sim
        if path == "/state" and method == "GET":
            return sim.state()
        if path == "/faults" and method == "GET":
            return [f.as_dict() for f in sim.faults.active()]
        if path == "/faults" and method == "POST":
            if not isinstance(body, dict) or "kind" not in body:
                raise ControlError(400, 'body must be {"kind": ..., "target": ..., ...}')
            try:
                fault = sim.faults.add(str(body["kind"]), str(body.get("target", "*")),
                                       body.get("duration_s"), **dict(body.get("params", {})))
            except (FaultError, TypeError) as err:
                raise ControlError(400, str(err)) from None
            return fault.as_dict()
        if path.startswith("/faults") and method == "DELETE":
            rest = path.removeprefix("/faults").strip("/")
            return {"cleared": sim.faults.clear(int(rest) if rest else None)}
        if path == "/writes" and method == "GET":
            accepted = query.get("accepted")
            return sim.writes.as_dicts(
                face=query.get("face"), name=query.get("name"),
                since_seq=int(query.get("since", 0)),
                accepted=None if accepted is None else accepted == "true",
            )
        if path == "/served" and method == "GET":
            name = query.get("name")
            if name is not None and name not in sim.served.names:
                raise ControlError(404, f"{name!r} is not recorded; recorded: "
                                        f"{', '.join(sim.served.names)}")
            return sim.served.as_dict(name)
        if path == "/write" and method == "POST":
            if not isinstance(body, dict) or "name" not in body or "value" not in body:
                raise ControlError(400, 'body must be {"name": ..., "value": ...}')
            return asdict(sim.write("control", "control", str(body["name"]), body["value"]))
        if path == "/scenario" and method == "POST":
            try:
                scenario = Scenario.from_dict(body)
            except ScenarioError as err:
                raise ControlError(400, str(err)) from None
            self.run_scenario(scenario)
            return {"actions": len(scenario.actions)}
        known = ("/state", "/faults", "/writes", "/served", "/write", "/scenario")
        if path in known or path.startswith("/faults/"):
            raise ControlError(405, f"{method} is not allowed on {path}")
        raise ControlError(404, f"no such path {path}")


def call(base_url: str, method: str, path: str, body: Any = None, timeout_s: float = 5.0) -> Any:
    """Client side of the API (for the CLI, tests and harnesses); raises on 4xx/5xx."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # loopback API
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = json.loads(err.read() or b"{}").get("error", err.reason)
        raise ControlError(err.code, str(detail)) from None
