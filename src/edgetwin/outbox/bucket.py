"""A token bucket: the backlog drains at ``rate`` messages/s, with a short burst allowed."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate / 10 if burst is None else burst)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def available(self) -> int:
        """Whole tokens that can be spent now."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return int(self._tokens)

    def spend(self, tokens: int) -> None:
        """Take ``tokens`` (at most ``available()``)."""
        self._tokens -= tokens

    def wait_s(self) -> float:
        """Time until one whole token is there."""
        return max(0.0, (1.0 - self._tokens) / self.rate)
