"""How many commands the gateway takes from the broker before the safety policy sees them.

Each command the policy decides costs synced disk writes and two outbox records (its audit
entry and its answer), and audit records are the last the buffer evicts: a flood of commands,
forged or not, would wear the disk and push telemetry out of the buffer. The gate admits the
commands of one message as a whole, from a token bucket (a burst, refilled at a steady rate),
and never lets more than twice the burst await their verdicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CommandGate:
    """A token bucket over commands, plus a cap on those still awaiting a verdict."""

    def __init__(self, per_second: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = burst
        self.max_pending = 2 * burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def admit(self, count: int, pending: int) -> str | None:
        """Take ``count`` commands if they may all go on; else say why none may.

        ``pending`` is how many earlier commands still await their verdict.
        """
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if count > self.burst:
            return (f"{count} commands in one message; the gateway takes at most {self.burst} "
                    f"at once (sync.inbound_commands.burst)")
        if pending + count > self.max_pending:
            return (f"{pending} commands still await their verdict; at most {self.max_pending} "
                    f"may (twice sync.inbound_commands.burst)")
        if count > self._tokens:
            return (f"commands arrive faster than {self.per_second:g}/s "
                    f"(sync.inbound_commands.per_second, burst {self.burst})")
        self._tokens -= count
        return None
