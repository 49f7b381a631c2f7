"""A plain asyncua client for tests that talk to an OPC UA server (plcsim's face)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError

CONNECTION_FAILED = (OSError, TimeoutError, UaError)  # ConnectionError is an OSError


@contextlib.asynccontextmanager
async def connected(endpoint: str, timeout_s: float = 2.0,
                    prepare: Callable[[Client], Awaitable[None]] | None = None,
                    ) -> AsyncIterator[Client]:
    """A connected client; the watchdog is slowed so it never reconnects on its own.

    ``prepare`` runs before connecting (security, login).
    """
    client = Client(endpoint, timeout=timeout_s, watchdog_intervall=60.0)
    if prepare is not None:
        await prepare(client)
    await client.connect()
    try:
        yield client
    finally:
        with contextlib.suppress(*CONNECTION_FAILED):
            await client.disconnect()
