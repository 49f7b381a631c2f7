"""The command policy: the one gate between a command from the cloud and a device write.

Every command is decided in this order; the first denial wins (FACTS §7.2, issue 8):

1. writes disabled (``commands.enabled: false``) or the read-only switch on;
2. authentication: an Ed25519 signature by a configured key over the canonical command
   (required with ``require_signature``; a signature that is present is always checked);
3. freshness and replay: ``issued_at`` within ``max_age`` (+ ``clock_skew``), not ahead by
   more than ``clock_skew``, ``expires_at`` not passed; the id is remembered on disk;
4. allowlist: the point is configured, ``writable``, and has a rule;
5. value: type with lossless coercion, ``min``/``max``, ``allowed``;
6. ``max_step`` against the current twin value (which must be GOOD); the rate limit;
7. the interlock, on live twin values (every input GOOD);
8. select-before-operate, for rules that ask for it;
9. under the point's lock: steps 1, 6 and 7 again on the freshest twin state, then the
   write through the writer (``Source.write``); the read-back must match.

Invariants:
- ``decide`` returns exactly one Verdict per command, never raises, and appends exactly one
  ``verdict`` entry for it to the audit log (synced) before returning; only when the disk
  fails is the verdict given without its entry, and that is logged as an error;
- an operate reaches the write only after its id and a ``pending`` audit entry (what the
  checks read) are synced: the device is never written without evidence on disk;
- steps 4-8 change nothing, so they are worked out before the id is stored and their
  outcome goes to disk in the same trip; the order still holds, a replay (step 3) wins;
- the writer is called only in step 9, while holding the point's lock, immediately after
  steps 1, 6 and 7 held with no ``await`` in between: what was checked is the twin state
  at the moment of writing. Commands for one point are serialised; others proceed;
- the writer is called at most once per command, with the coerced value, never retried;
- a command cancelled after its ``pending`` entry (a stop) gets an ``interrupted`` verdict
  before the cancel goes on; a start closes each command a hard stop left open the same
  way, and the rate limit counts the last minute's writes again (interrupted commands as
  writes): see ``recovery``;
- anything unexpected (an unknown point, an unreadable value, a failed store, a bug in a
  check) denies; nothing here lets a command through by default.
"""

from __future__ import annotations

import asyncio
import collections
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog

from edgetwin.config.model import CommandRule, CommandsConfig, Confirm
from edgetwin.core.errors import ConfigError, StoreError
from edgetwin.core.tasks import finish_despite_cancel
from edgetwin.core.types import (
    Command,
    PointSpec,
    PointState,
    Record,
    RecordKind,
    Value,
    Verdict,
    WriteOutcome,
    asset_of,
)
from edgetwin.safety.audit import AuditLog, audit_dir, tail_entries
from edgetwin.safety.interlock import Interlock, InterlockError, parse_interlock
from edgetwin.safety.readonly import read_readonly, write_readonly
from edgetwin.safety.recovery import (
    RECOVERY_TAIL_BYTES,
    interrupted_verdict,
    recover,
)
from edgetwin.safety.replay import Remembered, ReplayStore, freshness_problem
from edgetwin.safety.rules import (
    Denial,
    RateLimiter,
    coerce,
    describe,
    json_value,
    range_problem,
    read_back_matches,
    state_doc,
    step_problem,
    type_of,
)
from edgetwin.safety.sbo import Selections, new_token
from edgetwin.safety.signing import KeyRing, self_test

log = structlog.get_logger("edgetwin.safety")

REPLAY_FILE = "seen.sqlite"  # in audit_dir(state_dir), next to the audit log

TwinGetter = Callable[[str], PointState | None]
"""The twin's current state of a point, or None. Must be cheap and must not await."""

Writer = Callable[[str, Value], Awaitable[WriteOutcome]]
"""Writes a point through its source (``Source.write``); never raises for device trouble."""

AuditSink = Callable[[Sequence[Record]], Awaitable[None]]
"""Takes audit records for the broker, e.g. ``Outbox.put``."""

_T = TypeVar("_T")
_TOKEN = re.compile(r"(token=[0-9a-f]{8})[0-9a-f]{24}")


@dataclass(slots=True)
class _Trail:
    """What one decision read and did, for its audit entry."""

    value: Value  # the coerced value once step 5 passed; the raw value before
    code: str = ""
    reads: dict[str, dict[str, Any]] = field(default_factory=dict)
    before: dict[str, Any] | None = None
    read_back: Any = None
    written_ns: int | None = None
    audited: bool = False  # the verdict's entry is in the audit log already
    pending: dict[str, Any] | None = None  # the pending entry, once on disk

    def deny(self, denial: Denial) -> Verdict:
        self.code = denial.code
        return Verdict(False, f"denied: {denial.reason}")


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A rule with its interlock parsed."""

    rule: CommandRule
    interlock: Interlock | None


class SafetyPolicy:
    """Decides every command; the only caller of the writer.

    Args:
        config: the ``commands`` section.
        specs: every point the twin knows (configured and derived), by id.
        twin: the current twin state of a point. The policy trusts GOOD to mean fresh, so
            the getter must report a point STALE once it missed its ``stale_after``, and must
            not present a state restored from disk after a restart as GOOD before the
            source has read the point again.
        writer: writes a point through the source that owns it and reads it back.
        state_dir: ``gateway.state_dir``; the policy keeps its files in ``safety/`` there.
        on_audit: takes each audit record for the broker (``Outbox.put``); a failure there is
            logged, the local audit log is the durable record.
        keys_dir: where relative ``commands.keys`` paths start (the config file's folder).
        wall_ns: the wall clock (Unix epoch, ns), for freshness and the audit.
        monotonic: a monotonic clock (s), for rate limits and select timeouts.
        new_token: makes select tokens.

    Raises:
        ConfigError: a key file cannot be used, or an interlock does not parse.
        StoreError: the files in ``state_dir`` cannot be opened.
    """

    def __init__(
        self,
        config: CommandsConfig,
        specs: Mapping[str, PointSpec],
        twin: TwinGetter,
        writer: Writer,
        state_dir: Path,
        *,
        on_audit: AuditSink | None = None,
        keys_dir: Path | None = None,
        wall_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        new_token: Callable[[], str] = new_token,
    ) -> None:
        self._twin = twin
        self._writer = writer
        self._on_audit = on_audit
        self._wall_ns = wall_ns
        self._monotonic = monotonic
        self.state_dir = state_dir
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self.counts: collections.Counter[str] = collections.Counter()  # verdicts by code
        self._closed = False
        self._apply(config, specs, keys_dir)
        self._rate = RateLimiter(config.rate_limit.per_point_per_minute)
        self._selections = Selections(config.select_timeout, new_token)
        folder = audit_dir(state_dir)
        self._audit = AuditLog(folder, config.audit.max_bytes, config.audit.keep)
        try:
            self._replay = ReplayStore(folder / REPLAY_FILE, config.max_remembered_ids,
                                       self._skew_ms)
        except StoreError:
            self._audit.close()
            raise
        switch = read_readonly(state_dir)
        self._readonly = switch.on
        if switch.on:
            log.warning("Commands are read-only (local switch)", by=switch.by)
        self._disk_thread = ThreadPoolExecutor(1, thread_name_prefix="safety-disk")
        # At start-up, not with the first command: the disk thread, the ids that expired
        # while the gateway was down, what the last run left open, and a self-test of the
        # signature check.
        self._recovered: list[dict[str, Any]] = []  # interrupted verdicts to hand on
        try:
            self._disk_thread.submit(self._replay.purge, self._wall_ns() // 10**6).result()
        except sqlite3.Error as err:
            self._replay.close()
            self._audit.close()
            self._disk_thread.shutdown()
            raise StoreError(f"replay store {self._replay.path}: {err}") from err
        self._disk_thread.submit(self._recover).result()
        self.verifier_fault: str | None = None
        self._self_tested = False
        if config.enabled:
            self._self_test()

    def _recover(self) -> None:
        """Close the commands the last run left open; count its last minute's writes again.

        A log that cannot be read or appended to is logged, not fatal: the gateway starts,
        and the next start tries again.
        """
        try:
            entries = tail_entries(self._audit.directory, RECOVERY_TAIL_BYTES)
        except OSError as err:
            log.error("Audit log unreadable; the last run's open commands stay open",
                      error=str(err))
            return
        recovered = recover(entries)
        now_ms, now = self._wall_ns() // 10**6, self._monotonic()
        for point, written_ms in recovered.writes:
            age_s = max(0.0, (now_ms - written_ms) / 1000)  # a clock stepped back: now
            if age_s < self._rate.window_s:
                self._rate.record(point, now - age_s)
        for pending in recovered.interrupted:
            try:
                entry = self._audit.append(self._interrupted(pending, "the last stop"))
            except StoreError as err:
                self._not_closed(pending, err)
                return
            self._recovered.append(entry)

    async def _close_interrupted(self, pending: dict[str, Any]) -> None:
        """A cancelled command (the gateway stopping) gets its verdict before it goes."""
        try:
            await self._append(self._interrupted(pending, "a stop"))
        except StoreError as err:  # the next start closes it from the pending entry
            self._not_closed(pending, err)

    def _interrupted(self, pending: dict[str, Any], by: str) -> dict[str, Any]:
        """The ``interrupted`` verdict of a pending command, counted and logged."""
        self.counts["interrupted"] += 1
        log.warning(f"Command interrupted by {by}; the device may or may not hold its value",
                    command=pending.get("id"), point=pending.get("point"),
                    value=pending.get("value"), pending_since_ms=pending.get("ts"))
        return interrupted_verdict(pending, self._wall_ns() // 10**6)

    @staticmethod
    def _not_closed(pending: dict[str, Any], err: StoreError) -> None:
        log.error("Interrupted command not closed in the audit log", error=str(err),
                  command=pending.get("id"))

    async def hand_on_recovered(self) -> None:
        """Hand the interrupted verdicts found at start-up to ``on_audit``, once it runs."""
        recovered, self._recovered = self._recovered, []
        for entry in recovered:
            await self._hand_on(entry)

    def _self_test(self) -> None:
        """Prove the signature check before the first command that needs it, once per process."""
        self._self_tested = True
        self.verifier_fault = self_test()
        if self.verifier_fault is not None:
            log.error("Signature self-test failed; every command will be denied",
                      fault=self.verifier_fault)

    def _apply(self, config: CommandsConfig, specs: Mapping[str, PointSpec],
               keys_dir: Path | None) -> None:
        """Take a configuration: keys loaded, interlocks parsed, or ConfigError and no change."""
        # Keys are read only when writes are on: a disabled gateway needs none of the files.
        keys = KeyRing(config.keys, keys_dir) if config.enabled else KeyRing({})
        compiled: dict[str, _Compiled] = {}
        for index, rule in enumerate(config.rules):
            interlock = None
            if rule.interlock is not None:
                try:
                    interlock = parse_interlock(rule.interlock, specs.__contains__)
                except InterlockError as err:
                    raise ConfigError(f"commands.rules[{index}].interlock: {err}") from err
            compiled[rule.point] = _Compiled(rule, interlock)
        self.config = config
        self._specs = dict(specs)
        self._keys = keys
        self._rules = compiled
        self._max_age_ms = round(config.max_age * 1000)
        self._skew_ms = round(config.clock_skew * 1000)

    def reconfigure(self, config: CommandsConfig, specs: Mapping[str, PointSpec],
                    keys_dir: Path | None = None) -> None:
        """Take a reloaded configuration; active selects are dropped, rate history is kept.

        Raises:
            ConfigError: as the constructor; the running configuration then stays.
        """
        self._apply(config, specs, keys_dir)
        if config.enabled and not self._self_tested:  # commands turned on by this reload
            self._self_test()
        self._rate.set_limit(config.rate_limit.per_point_per_minute)
        self._selections.clear()
        self._selections.timeout_s = config.select_timeout
        self._audit.max_bytes, self._audit.keep = config.audit.max_bytes, config.audit.keep
        self._replay.configure(config.max_remembered_ids, self._skew_ms)

    # -- the read-only switch ------------------------------------------------------------------

    @property
    def readonly(self) -> bool:
        """Whether the local read-only switch is on (every command is then denied)."""
        return self._readonly

    async def set_readonly(self, on: bool, *, by: str) -> None:
        """Turn the switch on or off, persist it, and audit the change.

        ``by`` says who, e.g. ``"signal SIGUSR2"`` or ``"edgetwin readonly on"``.

        Raises:
            StoreError: the switch could not be stored; it is ON in memory then when ``on``
                was asked, and unchanged otherwise.
        """
        if on:
            self._readonly = True  # takes effect now, before anything touches the disk
        try:
            await self._disk(write_readonly, self.state_dir, on, by, self._wall_ns() // 10**6)
        except OSError as err:
            raise StoreError(f"read-only switch cannot be stored: {err}") from err
        self._readonly = on
        log.warning("Read-only switch set", readonly=on, by=by)
        await self._append({"ts": self._wall_ns() // 10**6, "event": "readonly",
                            "readonly": on, "by": by})

    async def reload_readonly(self) -> bool:
        """Read the switch from its file again (after ``edgetwin readonly`` changed it)."""
        switch = await self._disk(read_readonly, self.state_dir)
        if switch.on != self._readonly:
            self._readonly = switch.on
            log.warning("Read-only switch set", readonly=switch.on, by=switch.by)
            await self._append({"ts": self._wall_ns() // 10**6, "event": "readonly",
                                "readonly": switch.on, "by": switch.by})
        return self._readonly

    # -- deciding --------------------------------------------------------------------------------

    async def decide(self, command: Command) -> Verdict:
        """Decide one command; write it when every step allows. Never raises for a command.

        May be called concurrently, for any points; commands for one point are written one
        at a time. The returned verdict is audited (synced) and handed to ``on_audit``.
        """
        if self._closed:
            return Verdict(False, "denied: the safety policy is shut down")
        trail = _Trail(command.value)
        try:
            verdict = await self._decide(command, trail)
        except asyncio.CancelledError:
            if trail.pending is not None:  # the write may be under way: say so on disk now
                await self._close_interrupted(trail.pending)
            raise
        except Exception as err:  # a bug in a check must deny, not take the gateway down
            log.exception("Command check failed", command=command.id, point=command.point)
            verdict = trail.deny(Denial("internal", f"internal error in the safety policy "
                                                    f"({type(err).__name__}); see the log"))
        await self._audit_verdict(command, trail, verdict)
        return verdict

    async def _decide(self, command: Command, trail: _Trail) -> Verdict:
        # 1. writes disabled
        if (denial := self._gate()) is not None:
            return trail.deny(denial)
        # 2. authentication
        signed = command.signature is not None or command.key_id is not None
        if (self.config.require_signature or signed) and (
                problem := self._keys.check(command)) is not None:
            return trail.deny(Denial(*problem))
        # 3. freshness, then replay: an authenticated, fresh id is used up, whatever follows.
        now_ms = self._wall_ns() // 10**6
        if (problem := freshness_problem(command, now_ms, self._max_age_ms,
                                         self._skew_ms)) is not None:
            return trail.deny(Denial(*problem))
        # Steps 4-8 read memory and the twin and change nothing, so they are worked out
        # before the id goes to disk and their audit entry (the verdict of a denial, the
        # pending entry of a write) is written in the same trip to the disk thread. The
        # order holds: a replayed id is the verdict, whatever steps 4-8 found.
        planned = self._plan(command, trail)
        fields: dict[str, Any] | None = None
        if isinstance(planned, Denial):
            fields = self._verdict_fields(command, trail, trail.deny(planned))
        elif command.operation == "operate":
            fields = {**self._entry_head(command, trail), "event": "pending",
                      "reads": trail.reads}
        issued_ms = now_ms if command.issued_at_ms is None else command.issued_at_ms  # fresh
        until = issued_ms + self._max_age_ms + self._skew_ms  # too old to pass step 3 after
        try:
            remembered, entry, failure = await self._disk(
                self._remember_and_append, command.id, until, now_ms, fields)
        except StoreError as err:
            log.error("Replay store failed", error=str(err))
            trail.reads.clear()
            return trail.deny(Denial("replay_store", "the replay store failed; no command "
                                                     "can be checked for replay"))
        if (denial := self._replay_denial(command, remembered, now_ms)) is not None:
            trail.reads.clear()  # steps 4-8 never ran, as far as the verdict goes
            trail.value = command.value
            return trail.deny(denial)
        if entry is not None:
            if entry["event"] == "pending":
                trail.pending = entry
            await self._hand_on(entry)
        if isinstance(planned, Denial):
            trail.audited = failure is None
            return trail.deny(planned)
        compiled, value = planned
        if command.operation == "select":
            # An await has passed since the plan: another select may have taken the point.
            now = self._monotonic()
            if (denial := self._selections.busy(command.point, now)) is not None:
                return trail.deny(denial)
            selection = self._selections.select(command, value, now)
            trail.code = "selected"
            return Verdict(True, f"selected: token={selection.token}; operate "
                                 f"{command.point}={describe(value)} with this token within "
                                 f"{self._selections.timeout_s:g} s")
        if failure is not None:  # the evidence of a write goes to disk before the write
            log.error("Audit log failed", error=str(failure))
            return trail.deny(Denial("audit", "the audit log cannot be written; no write "
                                              "without its audit entry"))
        # 9. check again and write, one command per point at a time
        async with self._locks[command.point]:
            return await self._write(command, compiled, value, trail)

    def _plan(self, command: Command, trail: _Trail) -> Denial | tuple[_Compiled, Value]:
        """Steps 4-8 without side effects: a denial, or the rule and the coerced value."""
        # 4. allowlist
        spec = self._specs.get(command.point)
        if spec is None:
            return Denial("unknown_point", f"{command.point} is not a configured point")
        if not spec.writable:
            return Denial("not_writable", f"{command.point} is not writable")
        compiled = self._rules.get(command.point)
        if compiled is None:
            return Denial("no_rule", f"{command.point} has no command rule; nothing is "
                                     f"writable without one")
        rule = compiled.rule
        # 5. value
        value = self._coerce(command, rule)
        if isinstance(value, Denial):
            return value
        trail.value = value
        if (denial := range_problem(rule, value)) is not None:
            return denial
        # 6, 7. step, rate and interlock on the twin as it is now (again in step 9)
        if (denial := self._live_checks(command.point, compiled, value, trail)) is not None:
            return denial
        # 8. select-before-operate (looked at here; a select is taken, an operate's select
        # used up, only later)
        now = self._monotonic()
        sbo = rule.confirm is Confirm.SELECT_BEFORE_OPERATE
        if command.operation == "select":
            if not sbo:
                return Denial("sbo_not_used", f"{command.point} does not use "
                                              f"select-before-operate; send operate")
            if (denial := self._selections.busy(command.point, now)) is not None:
                return denial
        elif command.operation != "operate":
            return Denial("bad_op", f"unknown op {command.operation!r}")
        elif sbo:
            if (denial := self._selections.check(command, value, now)) is not None:
                return denial
        elif command.token is not None:
            return Denial("sbo_not_used", f"{command.point} does not use "
                                          f"select-before-operate; send no token")
        return compiled, value

    async def _write(
        self, command: Command, compiled: _Compiled, value: Value, trail: _Trail
    ) -> Verdict:
        """Step 9, under the point's lock."""
        point = command.point
        # Nothing below awaits until the writer is called: these checks describe the twin
        # at the moment of writing.
        if (denial := self._gate()) is not None:
            return trail.deny(denial)
        if self._rules.get(point) is not compiled:
            return trail.deny(Denial("reconfigured", f"the rules of {point} changed while the "
                                                     f"command waited; send it again"))
        if (denial := self._live_checks(point, compiled, value, trail)) is not None:
            return trail.deny(denial)
        now = self._monotonic()
        if compiled.rule.confirm is Confirm.SELECT_BEFORE_OPERATE:
            # Another operate with this token may have used it while this one waited.
            if (denial := self._selections.check(command, value, now)) is not None:
                return trail.deny(denial)
            self._selections.consume(point)
        self._rate.record(point, now)
        trail.before = state_doc(self._twin(point))
        trail.written_ns = self._wall_ns()
        try:
            async with asyncio.timeout(self.config.write_timeout):
                outcome = await self._writer(point, value)
        except TimeoutError:
            trail.code = "write_failed"
            return Verdict(False, f"failed: write to {point} took over "
                                  f"{self.config.write_timeout:g} s and was abandoned; the "
                                  f"device may or may not hold {describe(value)}")
        except Exception as err:  # the writer's contract is to return, not raise
            log.exception("Writer raised", point=point)
            trail.code = "write_failed"
            return Verdict(False, f"failed: write to {point} raised {type(err).__name__}: {err}")
        trail.read_back = json_value(outcome.read_back)
        if not outcome.ok:
            trail.code = "write_failed"
            return Verdict(False, f"failed: write to {point} failed: "
                                  f"{outcome.reason or 'the source gave no reason'}")
        if outcome.read_back is None or not read_back_matches(value, outcome.read_back):
            trail.code = "read_back"
            return Verdict(False, f"failed: {point} reads back {describe(outcome.read_back)} "
                                  f"after writing {describe(value)}")
        trail.code = "accepted"
        return Verdict(True, f"accepted: wrote {describe(value)} to {point}, read back "
                             f"{describe(outcome.read_back)}")

    def _gate(self) -> Denial | None:
        """Step 1 (and a policy shutting down writes nothing more)."""
        if self._closed:
            return Denial("closed", "the safety policy is shut down")
        if not self.config.enabled:
            return Denial("disabled", "writes are disabled on this gateway (commands.enabled "
                                      "is false)")
        if self._readonly:
            return Denial("readonly", "the gateway is read-only (local switch: edgetwin "
                                      "readonly off to allow writes)")
        if self.verifier_fault is not None:
            return Denial("verifier_fault", "the signature check failed its self-test "
                                            f"({self.verifier_fault})")
        return None

    def _remember_and_append(
        self, command_id: str, until_ms: int, now_ms: int, fields: dict[str, Any] | None
    ) -> tuple[Remembered, dict[str, Any] | None, StoreError | None]:
        """On the disk thread: remember the id; when it is new, append ``fields``.

        Raises:
            StoreError: the replay store failed (nothing was appended).
        """
        remembered = self._replay.remember(command_id, until_ms, now_ms)
        if remembered is not Remembered.NEW or fields is None:
            return remembered, None, None
        try:
            return remembered, self._audit.append(fields), None
        except StoreError as err:
            return remembered, None, err

    def _replay_denial(self, command: Command, remembered: Remembered,
                       now_ms: int) -> Denial | None:
        """Step 3's replay half, from what the replay store said."""
        if remembered is Remembered.SEEN:
            return Denial("replay", f"command id {command.id!r} was seen before (replay)")
        if remembered is Remembered.FULL:
            return Denial("replay_full", f"the replay store holds "
                                         f"{self.config.max_remembered_ids} live ids; no more "
                                         f"commands until some expire")
        if remembered is Remembered.CLOCK:
            behind = (self._replay.high_water_ms - now_ms) / 1000
            return Denial("clock", f"the gateway's clock is {behind:.1f} s behind the latest "
                                   f"time it recorded; writes are refused until it catches up")
        return None

    def _coerce(self, command: Command, rule: CommandRule) -> Value | Denial:
        """Step 5's type half: the rule's type, or that of the twin's current value."""
        value_type = rule.type
        if value_type is None:
            current = self._twin(command.point)
            value_type = type_of(current.value) if current is not None else None
            if value_type is None:
                return Denial("wrong_type", f"the value type of {command.point} is unknown: "
                                            f"its rule has no type and the twin no value")
        return coerce(command.value, value_type)

    def _live_checks(
        self, point: str, compiled: _Compiled, value: Value, trail: _Trail
    ) -> Denial | None:
        """Steps 6 and 7 on the twin as it is now; records what they read."""
        denial, read = step_problem(point, compiled.rule, value, self._twin(point))
        if read is not None:
            trail.reads[point] = read
        if denial is not None:
            return denial
        if (denial := self._rate.allows(point, self._monotonic())) is not None:
            return denial
        if compiled.interlock is not None:
            outcome = compiled.interlock.evaluate(self._twin)
            trail.reads.update(outcome.reads)
            if not outcome.ok:
                return Denial(outcome.code, outcome.reason)
        return None

    # -- audit -----------------------------------------------------------------------------------

    def _entry_head(self, command: Command, trail: _Trail) -> dict[str, Any]:
        return {
            "ts": self._wall_ns() // 10**6,
            "id": command.id,
            "origin": command.origin.value,
            "point": command.point,
            "value": json_value(trail.value),
            "op": command.operation,
            "key_id": command.key_id,
        }

    def _verdict_fields(self, command: Command, trail: _Trail,
                        verdict: Verdict) -> dict[str, Any]:
        """The audit entry of a verdict (``seq`` and ``prev`` come with the append)."""
        decided_ns = self._wall_ns()
        return {
            **self._entry_head(command, trail),
            "event": "verdict",
            "accepted": verdict.accepted,
            "code": trail.code or ("accepted" if verdict.accepted else "denied"),
            "reason": _TOKEN.sub(r"\1...", verdict.reason),  # the audit travels; tokens don't
            "reads": trail.reads,
            "before": trail.before,
            "read_back": trail.read_back,
            "received_ms": command.received_ns // 10**6,
            "decided_ms": decided_ns // 10**6,
            "written_ms": None if trail.written_ns is None else trail.written_ns // 10**6,
        }

    async def _audit_verdict(self, command: Command, trail: _Trail, verdict: Verdict) -> None:
        """Count and log the verdict, and append its entry unless that happened already."""
        fields = self._verdict_fields(command, trail, verdict)
        self.counts[fields["code"]] += 1
        log_fields = {"command": command.id, "point": command.point, "code": fields["code"],
                      "origin": command.origin.value, "reason": fields["reason"]}
        if verdict.accepted:
            log.info("Command accepted", **log_fields)
        else:
            log.info("Command denied", **log_fields)
        if trail.audited:
            return
        try:
            await self._append(fields)
        except StoreError as err:
            # The verdict stands (a write may have happened); the trail is lost only locally.
            log.error("Audit entry not stored", command=command.id, error=str(err))

    async def _append(self, fields: dict[str, Any]) -> None:
        """Append to the audit log (fsynced) and hand the entry on as a Record.

        Raises:
            StoreError: the local append failed.
        """
        await self._hand_on(await self._disk(self._audit.append, fields))

    async def _hand_on(self, entry: dict[str, Any]) -> None:
        """Give an appended entry to ``on_audit``; a failure there is only logged."""
        if self._on_audit is None:
            return
        record = Record(RecordKind.AUDIT, asset_of(str(entry.get("point") or "")),
                        entry["ts"] * 10**6, entry)
        try:
            await self._on_audit([record])
        except Exception as err:  # the local log holds it; the broker copy is best effort
            log.error("Audit record not handed on", error=str(err), seq=entry["seq"])

    async def _disk(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking file or SQLite call on the policy's one disk thread.

        Raises:
            StoreError: the policy is closed (also when it closed while this waited).
        """
        if self._closed:
            raise StoreError("the safety policy is closed")
        return await self._on_disk_thread(fn, *args)

    async def _on_disk_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            future = asyncio.get_running_loop().run_in_executor(self._disk_thread, fn, *args)
        except RuntimeError as err:  # the executor was shut down: close() won the race
            raise StoreError("the safety policy is closed") from err
        return await finish_despite_cancel(future)

    async def close(self) -> None:
        """Close the replay store and the audit log; ``decide`` denies everything afterwards.

        Call after the last ``decide`` has returned (commands still deciding may fail).
        """
        if self._closed:
            return
        self._closed = True
        await self._on_disk_thread(self._replay.close)
        await self._on_disk_thread(self._audit.close)
        self._disk_thread.shutdown(wait=True)
