"""The HIL bench's link proxy for tests that drive processes from plain (blocking) code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from hil.harness.proxy import LinkProxy

_T = TypeVar("_T")


class ThreadedLink:
    """A ``LinkProxy`` on its own event loop thread; every call hops onto that loop."""

    def __init__(self, name: str, upstream_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"link-{name}",
                                        daemon=True)
        self._thread.start()
        self.proxy = LinkProxy(name, "127.0.0.1", upstream_port)
        self.port = asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(10)

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` (e.g. ``lambda: link.proxy.slow(0.3)``) on the proxy's loop."""
        async def run() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
