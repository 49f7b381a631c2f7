"""The inbound command gate: a burst, a steady rate, whole messages, a cap on pending ones."""

from edgetwin.sync.admission import CommandGate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_rate_refills_it() -> None:
    clock = Clock()
    gate = CommandGate(per_second=2.0, burst=64, clock=clock)
    assert gate.admit(64, pending=0) is None
    assert gate.admit(1, pending=0) == (
        "commands arrive faster than 2/s (sync.inbound_commands.per_second, burst 64)")
    clock.now += 0.5  # one token back
    assert gate.admit(1, pending=0) is None
    assert gate.admit(1, pending=0) is not None
    clock.now += 3600.0  # never more than the burst
    assert gate.admit(64, pending=0) is None
    assert gate.admit(1, pending=0) is not None


def test_a_message_is_admitted_whole_or_not_at_all() -> None:
    clock = Clock()
    gate = CommandGate(per_second=1.0, burst=64, clock=clock)
    assert gate.admit(60, pending=0) is None
    assert gate.admit(5, pending=0) is not None  # 4 tokens left: none of the 5 go on
    assert gate.admit(4, pending=0) is None


def test_a_message_larger_than_the_burst_never_passes() -> None:
    gate = CommandGate(per_second=1000.0, burst=64, clock=Clock())
    assert gate.admit(65, pending=0) == (
        "65 commands in one message; the gateway takes at most 64 at once "
        "(sync.inbound_commands.burst)")


def test_commands_awaiting_verdicts_are_capped_at_twice_the_burst() -> None:
    gate = CommandGate(per_second=1000.0, burst=64, clock=Clock())
    assert gate.admit(1, pending=127) is None
    assert gate.admit(1, pending=128) == (
        "128 commands still await their verdict; at most 128 may "
        "(twice sync.inbound_commands.burst)")


def test_an_empty_message_costs_nothing() -> None:
    clock = Clock()
    gate = CommandGate(per_second=1.0, burst=64, clock=clock)
    assert gate.admit(64, pending=0) is None
    assert gate.admit(0, pending=0) is None  # a desired message that only withdraws values
