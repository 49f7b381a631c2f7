"""OPC UA client driver: one session, one subscription, batched samples, polling fallback.

How it behaves (README.md has the operator's view):

- One asyncua session per source. asyncua's own reconnect is off: on a lost link we drop
  the client and build a new session and subscription with jittered backoff
  (``core.backoff``), re-resolving every node id, so a server restart never leaves points
  at BadNodeIdUnknown or waiting on a subscription id the server no longer knows.
- At connect every point's node is checked with one Read of its DataType attribute (also
  cached for writes). A node the server does not know makes that point BAD with
  ``health.point_error(point, "bad_node_id", ...)``; the other points go on.
- Points in mode ``subscribe`` become monitored items of ONE subscription. The handler
  only appends to a buffer and sets an event; a flush task emits everything that arrived
  in one publish response as one batch. A monitored item the server refuses (e.g.
  Bad_DeadbandFilterInvalid), or every item when the server refuses the subscription,
  falls back to polling.
- Points in mode ``poll`` (and the fallbacks) are read with one Read request per distinct
  poll interval and cycle; deadlines sit on a fixed grid.
- The link is lost when asyncua's watchdog probe fails (``watchdog_interval``), the
  subscription reports a Bad status change, or a poll Read fails. Then every point is
  emitted BAD once, ``health.down`` is reported, and the source reconnects; the first batch
  after that reports ``health.up``.
- Security (policy other than None): certificate, key and optional server pin are read at
  every connect and handed to asyncua's ``set_security``; the application URI comes from
  the certificate. There is no fallback to an unsecured channel. A server refusing the
  session over the certificate or the login is ``certificate_rejected`` or
  ``login_rejected``, with what to fix; retrying alone will not cure it, but a fixed trust
  list or password file is picked up by the next attempt.
- A poll Read once sent ends: cancelling the source waits for the answer in flight and
  emits it before the loop stops, so a value the server served is never dropped.
- ``write`` coerces the value to the node's cached DataType without loss, writes, reads
  back, and returns a ``WriteOutcome``; device trouble never raises.

No asyncua object leaves this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509

from edgetwin.core.backoff import Backoff
from edgetwin.core.errors import DecodeError, SourceUnavailable
from edgetwin.core.ports import Emit, SourceHealth
from edgetwin.core.tasks import cancel_and_wait, finish_despite_cancel, raise_if_cancelling
from edgetwin.core.types import Quality, Sample, Value, WriteOutcome
from edgetwin.sources.opcua.config import (
    DeadbandType,
    OpcuaConfig,
    OpcuaPoint,
    PointMode,
    SecurityMode,
    SecurityPolicy,
)

LINK_ERRORS = (OSError, TimeoutError, UaError)  # ConnectionError is an OSError
MAX_BUFFERED = 10_000  # notifications held while emit blocks; then the oldest are dropped
CLOSE_TIMEOUT_S = 0.5  # a disconnect from a frozen server must not hold up a cancellation
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NSU = re.compile(r"^nsu=([^;]+);([isgb]=.+)$")  # namespace URI form of a NodeId string
_CLIENT_HANDLE_BASE = 1000  # our own handles; asyncua's helpers count up from 200
_INT_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT_TYPES = (ua.VariantType.Float, ua.VariantType.Double)
_POLICIES: dict[SecurityPolicy, type[security_policies.SecurityPolicy]] = {
    SecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
    SecurityPolicy.AES128_SHA256_RSAOAEP: security_policies.SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicy.AES256_SHA256_RSAPSS: security_policies.SecurityPolicyAes256Sha256RsaPss,
}
# Refusals of CreateSession/ActivateSession that retrying cannot cure: someone has to act.
_CERTIFICATE_REFUSALS = frozenset({
    StatusCodes.BadCertificateUntrusted, StatusCodes.BadCertificateInvalid,
    StatusCodes.BadCertificateTimeInvalid, StatusCodes.BadCertificateIssuerTimeInvalid,
    StatusCodes.BadCertificateUriInvalid, StatusCodes.BadCertificateUseNotAllowed,
    StatusCodes.BadCertificateIssuerUseNotAllowed, StatusCodes.BadCertificateRevoked,
    StatusCodes.BadCertificateIssuerRevoked, StatusCodes.BadCertificateRevocationUnknown,
    StatusCodes.BadCertificateIssuerRevocationUnknown, StatusCodes.BadCertificateHostNameInvalid,
    StatusCodes.BadSecurityChecksFailed,
})
_LOGIN_REFUSALS = frozenset({
    StatusCodes.BadUserAccessDenied, StatusCodes.BadIdentityTokenInvalid,
    StatusCodes.BadIdentityTokenRejected, StatusCodes.BadUserSignatureInvalid,
})
_MODES = {
    SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
    SecurityMode.NONE: ua.MessageSecurityMode.None_,
}


class _LinkLost(Exception):  # control flow inside this module, never seen outside it
    """The session is gone; ``error_code`` and ``error`` say why."""

    def __init__(self, error_code: str, error: BaseException) -> None:
        super().__init__(error_code)
        self.error_code = error_code
        self.error = error


class _WriteRefused(Exception):  # control flow inside this module
    """A write cannot be made; the message is the WriteOutcome reason."""


# -- values ------------------------------------------------------------------------------


def status_quality(code: int) -> Quality:
    """Quality of an OPC UA StatusCode by its severity bits (FACTS 4.3, Part 4 7.39)."""
    severity = code >> 30
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD  # 10 Bad, 11 reserved: treated as Bad


def describe(err: BaseException) -> str:
    """``TimeoutError`` or ``ConnectionRefusedError: [Errno 111] ...`` for messages."""
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def status_text(code: int) -> str:
    """``BadOutOfRange (0x803C0000)``."""
    name, _ = ua.status_codes.get_name_and_doc(code)
    return f"{name} (0x{code:08X})"


def _ts_ns(stamp: datetime | None) -> int | None:
    """Unix ns of an OPC UA DateTime; None when unset (OPC UA's null time is 1601)."""
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)  # asyncua decodes UTC
    delta = stamp - _EPOCH
    if delta.days < 0:
        return None
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def convert_value(raw: Any) -> Value:
    """A Variant's Python value as a Sample value.

    Raises:
        DecodeError: no value, or a type with no Sample form (structures, NodeIds, ...).
    """
    if isinstance(raw, bool | int | float | str):
        return raw
    if isinstance(raw, ua.LocalizedText):
        return raw.Text or ""
    if isinstance(raw, datetime):
        ns = _ts_ns(raw)
        if ns is not None:
            return ns
    if isinstance(raw, list | tuple) and raw:
        if all(isinstance(x, bool) for x in raw):
            array = np.asarray(raw, dtype=bool)
        elif all(isinstance(x, int | float) and not isinstance(x, bool) for x in raw):
            array = np.asarray(raw, dtype=np.float64)
        else:
            raise DecodeError(f"array of {type(raw[0]).__name__} has no sample form")
        array.flags.writeable = False
        return array
    if raw is None:
        raise DecodeError("Good status but no value")
    raise DecodeError(f"a {type(raw).__name__} value has no sample form")


def coerce_for_write(value: Value, vtype: ua.VariantType) -> Any:
    """``value`` as the Python value of ``vtype``, refused where that would lose anything.

    Raises:
        _WriteRefused: bool only for Boolean, str only for String, no fractions into
            integers, no out-of-range or non-finite numbers.
    """
    numeric = vtype in _INT_RANGES or vtype in _FLOAT_TYPES
    if vtype not in (ua.VariantType.Boolean, ua.VariantType.String) and not numeric:
        raise _WriteRefused(f"the node's data type {vtype.name} is not writable by this driver")
    kind = type(value).__name__
    article = "an" if kind[:1] in "aeiou" else "a"
    wrong = _WriteRefused(f"{article} {kind} cannot be written to a {vtype.name} node")
    if vtype is ua.VariantType.Boolean:
        if not isinstance(value, bool):
            raise wrong
        return value
    if vtype is ua.VariantType.String:
        if not isinstance(value, str):
            raise wrong
        return value
    # a bool is an int to Python, never a number to a PLC
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong
    if vtype in _INT_RANGES:
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise _WriteRefused(f"{value!r} is not a whole number; the node is {vtype.name}")
        low, high = _INT_RANGES[vtype]
        whole = int(value)
        if not low <= whole <= high:
            raise _WriteRefused(f"{value!r} is outside {vtype.name} ({low}..{high})")
        return whole
    number = float(value)
    if not math.isfinite(number) or (isinstance(value, int) and int(number) != value):
        raise _WriteRefused(f"{value!r} is not exactly representable as {vtype.name}")
    if vtype is ua.VariantType.Float:
        try:
            return struct.unpack("<f", struct.pack("<f", number))[0]  # what the node will hold
        except OverflowError:
            raise _WriteRefused(f"{value!r} is outside Float") from None
    return number


def certificate_uri(certificate: bytes) -> str:
    """The application URI in a DER or PEM certificate's subjectAltName.

    Raises:
        ValueError: not a certificate, or one without a URI (OPC UA Part 6 6.2.2 needs one).
    """
    if certificate.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(certificate)
    else:
        cert = x509.load_der_x509_certificate(certificate)
    try:
        alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise ValueError("the certificate has no subjectAltName with an application URI") from None
    uris = alt_names.value.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise ValueError("the certificate's subjectAltName holds no application URI")
    return uris[0]


def variant_type_of(data_type: ua.NodeId) -> ua.VariantType | None:
    """The built-in variant type of a DataType node id (namespace 0, ids 1..25), or None."""
    if data_type.NamespaceIndex == 0 and isinstance(data_type.Identifier, int):
        with contextlib.suppress(ValueError):
            vtype = ua.VariantType(data_type.Identifier)
            if 1 <= vtype.value <= 25:  # Part 6 5.1.2: the built-in types
                return vtype
    return None


# -- one session -------------------------------------------------------------------------


@dataclass(slots=True)
class _Resolved:
    """A point whose node the server knows."""

    point: OpcuaPoint
    node: Any  # asyncua Node
    vtype: ua.VariantType | None  # None: not a built-in type (writes refused)


@dataclass(slots=True)
class _Handler:
    """asyncua subscription handler: buffers notifications, never awaits."""

    session: _Session

    def datachange_notification(self, node: Any, val: Any, data: DataChangeNotif) -> None:
        """One monitored item changed; buffered until the burst is flushed."""
        del node, val
        item = data.monitored_item
        self.session.buffer_notification(int(item.ClientHandle), item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        """The subscription's status changed: a Bad status means it is gone."""
        code = int(status.Status.value) if status.Status is not None else 0
        if status_quality(code) is Quality.BAD:
            self.session.lose(
                "subscription_lost",
                SourceUnavailable(
                    f"{self.session.where}: subscription ended: {status_text(code)}"
                ),
            )


@dataclass(eq=False)
class _Session:
    """One connected client with its subscription and poll loops."""

    source: OpcuaSource
    client: Client
    emit: Emit
    health: SourceHealth
    resolved: dict[str, _Resolved] = field(default_factory=dict)
    handles: dict[int, str] = field(default_factory=dict)  # client handle -> point id
    polled: dict[float, list[_Resolved]] = field(default_factory=dict)
    subscription: Subscription | None = None
    flowing: bool = False
    _buffer: list[Sample] = field(default_factory=list)
    _burst_started_s: float = 0.0
    _pending: asyncio.Event = field(default_factory=asyncio.Event)
    _lost: asyncio.Event = field(default_factory=asyncio.Event)
    lost_reason: _LinkLost | None = None

    @property
    def where(self) -> str:
        """The source's message prefix."""
        return self.source.where

    def lose(self, error_code: str, error: BaseException) -> None:
        """Mark the link lost (first reason wins); ``serve`` returns."""
        if self.lost_reason is None:
            self.lost_reason = _LinkLost(error_code, error)
        self._lost.set()

    async def on_connection_lost(self, exc: Exception) -> None:
        """Called by the asyncua watchdog when the connection is dead."""
        self.lose("connection_lost", SourceUnavailable(
            f"{self.where}: connection lost: {describe(exc)}"
        ))

    def buffer_notification(self, handle: int, data_value: ua.DataValue) -> None:
        """Turn one notification into a sample and wake the flush task."""
        point = self.handles.get(handle)
        if point is None:
            return
        if not self._buffer:
            self._burst_started_s = time.monotonic()
        elif len(self._buffer) >= MAX_BUFFERED:  # emit is blocked (backpressure): drop oldest
            del self._buffer[0]
            self.source.dropped_samples += 1
            if self.source.dropped_samples % MAX_BUFFERED == 1:
                self.source.log.warning(
                    "Notifications dropped; downstream does not keep up",
                    dropped_samples_total=self.source.dropped_samples,
                )
        self._buffer.append(self.source._to_sample(point, data_value, self.health))
        self._pending.set()

    # -- setup ----------------------------------------------------------------------------

    async def resolve(self) -> list[Sample]:
        """Check every node with one Read of DataType; BAD samples for the unknown ones."""
        where = self.where
        parsed: list[tuple[OpcuaPoint, ua.NodeId]] = []
        bad: list[Sample] = []
        now_ns = time.time_ns()
        namespaces: list[str] | None = None
        for point in self.source.config.points:
            text = point.node
            match = _NSU.match(text)
            try:
                if match is not None:
                    if namespaces is None:  # read once per session: a restart may renumber
                        namespaces = await self.client.get_namespace_array()
                    uri, rest = match.groups()
                    if uri not in namespaces:
                        raise ValueError(f"namespace {uri!r} is not on this server")
                    text = f"ns={namespaces.index(uri)};{rest}"
                parsed.append((point, ua.NodeId.from_string(text)))
            except (ValueError, UaError) as err:
                self.health.point_error(point.id, "bad_node_id", DecodeError(
                    f"{where}: point {point.id!r}: node id {point.node!r} cannot be resolved: {err}"
                ))
                bad.append(Sample(point.id, None, Quality.BAD, now_ns))
        if not parsed:
            return bad
        results = await self.client.uaclient.read_attributes(
            [node_id for _, node_id in parsed], AttributeIds.DataType
        )
        for (point, node_id), result in zip(parsed, results, strict=True):
            code = int(result.StatusCode.value) if result.StatusCode is not None else 0
            data_type = result.Value.Value if result.Value is not None else None
            if status_quality(code) is Quality.BAD or not isinstance(data_type, ua.NodeId):
                self.health.point_error(point.id, "bad_node_id", DecodeError(
                    f"{where}: point {point.id!r}: node {point.node!r} is not a variable "
                    f"this server knows: {status_text(code)}"
                ))
                bad.append(Sample(point.id, None, Quality.BAD, now_ns))
                continue
            self.resolved[point.id] = _Resolved(
                point, self.client.get_node(node_id), variant_type_of(data_type)
            )
        return bad

    async def subscribe(self) -> None:
        """One subscription with a monitored item per subscribe point; the rest is polled."""
        config = self.source.config
        wanted = [r for r in self.resolved.values() if r.point.mode is PointMode.SUBSCRIBE]
        fallback = [r for r in self.resolved.values() if r.point.mode is PointMode.POLL]
        if wanted:
            fallback.extend(await self._monitor(wanted))
        for resolved in fallback:
            interval = resolved.point.poll_interval or config.poll_interval
            self.polled.setdefault(interval, []).append(resolved)

    async def _monitor(self, wanted: list[_Resolved]) -> list[_Resolved]:
        """Create the subscription and its items; returns the points to poll instead."""
        sub_config = self.source.config.subscription
        period_ms = sub_config.publishing_interval * 1000
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = period_ms
        keepalive = max(1, math.ceil(sub_config.keepalive_interval * 1000 / period_ms))
        params.RequestedMaxKeepAliveCount = keepalive
        params.RequestedLifetimeCount = keepalive * 3  # Part 4 5.13.2: lifetime >= 3 x keepalive
        params.MaxNotificationsPerPublish = 0  # no limit
        params.PublishingEnabled = True
        params.Priority = 0
        try:
            self.subscription = await self.client.create_subscription(params, _Handler(self))
        except UaStatusCodeError as err:
            self.source.log.warning(
                "Subscription refused; polling every point instead", error=str(err)
            )
            return wanted
        requests = []
        for offset, resolved in enumerate(wanted):
            handle = _CLIENT_HANDLE_BASE + offset
            self.handles[handle] = resolved.point.id
            requests.append(_item_request(resolved, handle))
        results = await self.subscription.create_monitored_items(requests)
        fallback = []
        for resolved, result in zip(wanted, results, strict=True):
            if isinstance(result, ua.StatusCode):
                self.health.point_error(resolved.point.id, "monitored_item_refused", DecodeError(
                    f"{self.where}: point {resolved.point.id!r}: node {resolved.point.node!r}: "
                    f"monitored item refused: {status_text(int(result.value))}; polling it"
                ))
                fallback.append(resolved)
        return fallback

    # -- running --------------------------------------------------------------------------

    async def serve(self) -> _LinkLost:
        """Flush notifications and poll until the link is lost; returns why."""
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(self._flush(), name=f"source[{self.source.name}].flush")
        ]
        for interval, points in self.polled.items():
            tasks.append(asyncio.create_task(
                self._poll(interval, points), name=f"source[{self.source.name}].poll[{interval:g}s]"
            ))
        lost = asyncio.create_task(self._wait_lost())
        try:
            done, _ = await asyncio.wait([*tasks, lost], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not lost and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]  # a bug; the supervisor restarts us
        finally:
            # Every helper ends, even when this task is cancelled again meanwhile.
            await finish_despite_cancel(asyncio.gather(
                *(cancel_and_wait(task) for task in [*tasks, lost])))
        assert self.lost_reason is not None  # set before _lost is
        return self.lost_reason

    async def _wait_lost(self) -> None:
        await self._lost.wait()

    async def _flush(self) -> None:
        """Emit what the handler buffered, one batch per publish response."""
        while True:
            await self._pending.wait()
            # asyncua runs the handler of each notification in its own task; one more loop
            # pass lets every notification of this publish response land before the flush.
            await asyncio.sleep(0)
            self._pending.clear()
            batch, self._buffer = self._buffer, []
            if batch:
                started_s = self._burst_started_s
                await self.emit(batch)
                self._flowed(time.monotonic() - started_s)

    def _flowed(self, duration_s: float) -> None:
        self.health.cycle(duration_s)
        if not self.flowing:
            self.flowing = True
            self.source._data_flowing(self.health)

    async def _poll(self, interval_s: float, points: list[_Resolved]) -> None:
        """Read ``points`` in one request per cycle, on a fixed grid of deadlines."""
        loop = asyncio.get_running_loop()
        deadline_s = loop.time()
        node_ids = [r.node.nodeid for r in points]
        while True:
            await asyncio.sleep(max(0.0, deadline_s - loop.time()))
            started_s = loop.time()
            try:
                results = await finish_despite_cancel(asyncio.ensure_future(
                    self.client.uaclient.read_attributes(node_ids, AttributeIds.Value)
                ))
            except LINK_ERRORS as err:
                raise_if_cancelling()
                self.health.request("timeout" if isinstance(err, TimeoutError) else "error",
                                    loop.time() - started_s)
                self.lose("read_failed", SourceUnavailable(
                    f"{self.where}: read of {len(points)} polled points failed: "
                    f"{describe(err)}"
                ))
                return
            self.health.request("ok", loop.time() - started_s)
            batch = [
                self.source._to_sample(r.point.id, dv, self.health)
                for r, dv in zip(points, results, strict=True)
            ]
            await self.emit(batch)  # suspends only under backpressure, which a stop ends
            raise_if_cancelling()  # asked to stop during the Read: its answer is out; stop
            self._flowed(loop.time() - started_s)
            deadline_s += interval_s
            if deadline_s < loop.time():  # late: start the next cycle now, skip missed ones
                deadline_s += math.ceil((loop.time() - deadline_s) / interval_s) * interval_s

    async def close(self) -> None:
        """Close the session; a frozen or dead server gets ``CLOSE_TIMEOUT_S``."""
        with contextlib.suppress(TimeoutError, *LINK_ERRORS):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.client.disconnect()
        self.client.disconnect_socket()  # whatever the close sequence reached


def _item_request(resolved: _Resolved, handle: int) -> ua.MonitoredItemCreateRequest:
    point = resolved.point
    params = ua.MonitoringParameters()
    params.ClientHandle = handle
    # -1: sample at the publishing interval (Part 4 5.12.1.2)
    params.SamplingInterval = (
        -1.0 if point.sampling_interval is None else point.sampling_interval * 1000
    )
    params.QueueSize = point.queue_size
    params.DiscardOldest = True
    if point.deadband_type is not DeadbandType.NONE:
        flt = ua.DataChangeFilter()
        flt.Trigger = ua.DataChangeTrigger.StatusValue
        if point.deadband_type is DeadbandType.ABSOLUTE:
            flt.DeadbandType = ua.DeadbandType.Absolute
            flt.DeadbandValue = point.deadband
        else:
            flt.DeadbandType = ua.DeadbandType.Percent
            flt.DeadbandValue = point.deadband_percent or 0.0
        params.Filter = flt
    read = ua.ReadValueId()
    read.NodeId = resolved.node.nodeid
    read.AttributeId = AttributeIds.Value
    request = ua.MonitoredItemCreateRequest()
    request.ItemToMonitor = read
    request.MonitoringMode = ua.MonitoringMode.Reporting
    request.RequestedParameters = params
    return request


# -- the source --------------------------------------------------------------------------


class OpcuaSource:
    """An OPC UA server, subscribed (and polled where configured) into batches of samples.

    Implements ``edgetwin.core.ports.Source``. Build it from a validated config; ``run``
    connects, subscribes and reconnects by itself until cancelled and raises only for bugs.

    Args:
        config: the validated source configuration.
        reconnect_initial_s: first reconnect delay after an outage; doubles per failure.
        reconnect_max_s: the longest reconnect delay.

    Attributes:
        name: the source name from the config.
        config: the validated configuration.
        where: "opcua source 'line-opcua' (opc.tcp://host:4840/path)", its message prefix.
        log: its structlog logger, bound to ``component="opcua"`` and ``source=name``.
        dropped_samples: notifications dropped (oldest first) because ``emit`` blocked
            while more than ``MAX_BUFFERED`` were waiting, since creation.
    """

    def __init__(
        self,
        config: OpcuaConfig,
        *,
        reconnect_initial_s: float = 0.2,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.name: str = config.name
        self.config = config
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.where = f"opcua source {config.name!r} ({config.endpoint})"
        self.log = structlog.get_logger().bind(component="opcua", source=config.name)
        self._points = {p.id: p for p in config.points}
        self._session: _Session | None = None
        self._backoff = Backoff(reconnect_initial_s, reconnect_max_s)
        self._write_lock = asyncio.Lock()
        self._up = False
        self.dropped_samples = 0

    def resources(self) -> frozenset[str]:
        """None: an OPC UA server takes many clients."""
        return self.config.resources()

    # -- samples --------------------------------------------------------------------------

    def _to_sample(self, point: str, data_value: ua.DataValue, health: SourceHealth) -> Sample:
        """A DataValue as a Sample: quality from its status, time from the source if set."""
        ts_ns = (
            _ts_ns(data_value.SourceTimestamp)
            or _ts_ns(data_value.ServerTimestamp)
            or time.time_ns()
        )
        status = data_value.StatusCode
        code = int(status.value) if status is not None else 0
        quality = status_quality(code)
        if quality is Quality.BAD:
            health.point_error(point, "bad_status", DecodeError(
                f"{self.where}: point {point!r}: the server reports {status_text(code)}"
            ))
            return Sample(point, None, Quality.BAD, ts_ns)
        raw = data_value.Value.Value if data_value.Value is not None else None
        try:
            value = convert_value(raw)
        except DecodeError as err:
            error = DecodeError(f"{self.where}: point {point!r}: {err}")
            health.point_error(point, "decode_error", error)
            return Sample(point, None, Quality.BAD, ts_ns)
        return Sample(point, value, quality, ts_ns)

    def _all_bad(self) -> list[Sample]:
        now_ns = time.time_ns()
        return [Sample(p.id, None, Quality.BAD, now_ns) for p in self.config.points]

    def _data_flowing(self, health: SourceHealth) -> None:
        """The first batch of a session went out: the link is healthy."""
        self._backoff.reset()
        if not self._up:
            self._up = True
            health.up()
            self.log.info("OPC UA data flowing")

    # -- run ------------------------------------------------------------------------------

    async def run(self, emit: Emit, health: SourceHealth) -> None:
        """Subscribe and poll until cancelled; see the module docstring for failures.

        Called once per start, never concurrently. Cancellation closes the session (within
        about ``CLOSE_TIMEOUT_S``) before this returns.
        """
        self.log.info(
            "OPC UA source starting", endpoint=self.config.endpoint,
            points=len(self.config.points),
        )
        reported_bad = False  # every point was emitted BAD in this outage already
        try:
            while True:
                raise_if_cancelling()
                lost = await self._one_session(emit, health)
                raise_if_cancelling()
                if self._up:
                    reported_bad = False  # data flowed since the last loss: a new outage
                self._up = False
                health.down(lost.error_code, lost.error)
                self.log.debug(
                    "OPC UA link lost", error_code=lost.error_code, error=str(lost.error)
                )
                if not reported_bad:
                    await emit(self._all_bad())
                    reported_bad = True
                await asyncio.sleep(self._backoff.next_delay())
        finally:
            self.log.info("OPC UA source stopped")

    async def _one_session(self, emit: Emit, health: SourceHealth) -> _LinkLost:
        """Connect, resolve, subscribe and serve; returns why the session ended."""
        try:
            password = self._password()
        except _LinkLost as lost:
            return lost
        client = Client(
            self.config.endpoint,
            timeout=self.config.timeout,
            watchdog_intervall=self.config.subscription.watchdog_interval,
        )
        client.session_timeout = 60_000  # ms; a vanished gateway's session goes within a minute
        if self.config.username is not None:
            client.set_user(self.config.username)
            if password is not None:
                client.set_password(password)
        session = _Session(self, client, emit, health)
        client.connection_lost_callback = session.on_connection_lost
        try:
            if self.config.security.policy is not SecurityPolicy.NONE:
                try:
                    await self._secure(client)
                except _LinkLost as lost:
                    return lost
            try:
                async with asyncio.timeout(self.config.timeout):
                    await client.connect()
            except UaStatusCodeError as err:
                raise_if_cancelling()
                return self._refused(err)
            except LINK_ERRORS as err:
                raise_if_cancelling()
                return _LinkLost("connect_failed", SourceUnavailable(
                    f"{self.where}: connect failed within {self.config.timeout:g} s: "
                    f"{describe(err)}"
                ))
            try:
                bad = await session.resolve()
                await session.subscribe()
            except LINK_ERRORS as err:
                raise_if_cancelling()
                return _LinkLost("setup_failed", SourceUnavailable(
                    f"{self.where}: resolving nodes or subscribing failed: "
                    f"{describe(err)}"
                ))
            self._session = session
            if bad:
                await emit(bad)
            self.log.info(
                "OPC UA session open", subscribed=len(session.handles),
                polled=sum(len(p) for p in session.polled.values()), bad_nodes=len(bad),
            )
            return await session.serve()
        finally:
            self._session = None
            await session.close()

    async def _secure(self, client: Client) -> None:
        """Load the certificates (read now, so renewed files are picked up) and set security.

        Raises:
            _LinkLost: a file is missing or unusable (``certificate``), or the server offers
                no endpoint with this policy and mode, or did not answer (``connect_failed``).
        """
        security = self.config.security
        cert_path, key_path = security.certificate, security.private_key
        if cert_path is None or key_path is None:  # pragma: no cover  # the model requires both
            raise AssertionError("secured config without certificate or private_key")
        try:
            cert_bytes = cert_path.read_bytes()
            key_path.read_bytes()  # readable now; asyncua reads it again below
            if security.server_certificate is not None:
                security.server_certificate.read_bytes()
            client.application_uri = security.application_uri or certificate_uri(cert_bytes)
        except (OSError, ValueError) as err:
            raise _LinkLost("certificate", SourceUnavailable(
                f"{self.where}: cannot use certificate {str(cert_path)!r} / private_key "
                f"{str(key_path)!r}: {describe(err)}"
            )) from err
        try:
            async with asyncio.timeout(self.config.timeout):
                await client.set_security(
                    _POLICIES[security.policy],
                    certificate=str(cert_path),
                    private_key=str(key_path),
                    server_certificate=(
                        None if security.server_certificate is None
                        else str(security.server_certificate)
                    ),
                    mode=_MODES[security.mode],
                )
        except ValueError as err:  # cryptography: not a key, or a key needing a password
            raise _LinkLost("certificate", SourceUnavailable(
                f"{self.where}: cannot load private_key {str(key_path)!r}: {err}"
            )) from err
        except LINK_ERRORS as err:
            raise_if_cancelling()
            raise _LinkLost("connect_failed", SourceUnavailable(
                f"{self.where}: no {security.policy.value}/{security.mode.value} endpoint "
                f"available: {describe(err)}"
            )) from err

    def _refused(self, err: UaStatusCodeError) -> _LinkLost:
        """Why the server answered connect with a Bad status, and what would cure it."""
        code = int(err.code)
        refusal = f"{self.where}: the server refused the session: {status_text(code)}"
        if code in _CERTIFICATE_REFUSALS:
            cert = self.config.security.certificate
            return _LinkLost("certificate_rejected", SourceUnavailable(
                f"{refusal}; it does not accept the gateway's certificate "
                f"{str(cert)!r}: trust it on the server" if cert is not None
                else f"{refusal}; it does not accept the gateway's certificate"
            ))
        if code in _LOGIN_REFUSALS:
            hint = (f"check username {self.config.username!r} and password_file"
                    if self.config.username is not None
                    else "it refuses anonymous login: set username and password_file")
            return _LinkLost("login_rejected", SourceUnavailable(f"{refusal}; {hint}"))
        return _LinkLost("connect_failed", SourceUnavailable(refusal))

    def _password(self) -> str | None:
        """The password, read from ``password_file`` now (so a rotated file is picked up)."""
        path = self.config.password_file
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as err:
            raise _LinkLost("password_file", SourceUnavailable(
                f"{self.where}: cannot read password_file {str(path)!r}: {err}"
            )) from err

    # -- write ----------------------------------------------------------------------------

    async def write(self, point: str, value: Value) -> WriteOutcome:
        """Write one configured, writable point, read it back, and say whether it took.

        The value is coerced to the node's DataType without loss (an int to a Double is
        fine, 1.5 to an Int32 is refused). A Bad status from the server, a timeout or a
        lost link is ``WriteOutcome(ok=False, reason=...)``, never an exception.
        """
        config = self._points.get(point)
        prefix = f"{self.where}: write {point!r} = {value!r}"
        if config is None:
            return WriteOutcome(False, f"{prefix}: not a point of this source")
        if not config.writable:
            return WriteOutcome(False, f"{prefix}: the point is not writable (writable: false)")
        session = self._session
        resolved = session.resolved.get(point) if session is not None else None
        if session is None:
            return WriteOutcome(False, f"{prefix}: not connected")
        if resolved is None:
            return WriteOutcome(False, f"{prefix}: node {config.node!r} is unknown to the server")
        if resolved.vtype is None:
            return WriteOutcome(False, f"{prefix}: the node's data type is not a built-in type")
        try:
            coerced = coerce_for_write(value, resolved.vtype)
        except _WriteRefused as err:
            return WriteOutcome(False, f"{prefix}: {err}")
        try:
            async with self._write_lock, asyncio.timeout(self.config.timeout * 2):
                return await self._write_and_read_back(session, resolved, coerced, prefix)
        except (TimeoutError, *LINK_ERRORS) as err:
            raise_if_cancelling()
            return WriteOutcome(False, f"{prefix}: failed: {describe(err)}")

    async def _write_and_read_back(
        self, session: _Session, resolved: _Resolved, coerced: Any, prefix: str
    ) -> WriteOutcome:
        node_id = resolved.node.nodeid
        assert resolved.vtype is not None  # checked by write()
        data_value = ua.DataValue(ua.Variant(coerced, resolved.vtype))
        (status,) = await session.client.uaclient.write_attributes(
            [node_id], [data_value], AttributeIds.Value
        )
        code = int(status.value)
        if status_quality(code) is not Quality.GOOD:
            return WriteOutcome(False, f"{prefix}: refused by the server: {status_text(code)}")
        (read,) = await session.client.uaclient.read_attributes([node_id], AttributeIds.Value)
        read_code = int(read.StatusCode.value) if read.StatusCode is not None else 0
        read_back = read.Value.Value if read.Value is not None else None
        quality = status_quality(read_code)
        if quality is Quality.BAD:
            return WriteOutcome(False, f"{prefix}: read-back failed: {status_text(read_code)}")
        # Only a Good read-back confirms the write: Uncertain is the server doubting the value
        # it holds, and the policy counts UNCERTAIN as unusable everywhere else too.
        if quality is not Quality.GOOD:
            return WriteOutcome(False, f"{prefix}: read-back {read_back!r} is not Good: "
                                       f"{status_text(read_code)}", read_back)
        if read_back != coerced or type(read_back) is not type(coerced):
            return WriteOutcome(
                False, f"{prefix}: read-back {read_back!r} != written {coerced!r}", read_back
            )
        return WriteOutcome(True, None, read_back)


__all__ = [
    "OpcuaSource",
    "certificate_uri",
    "coerce_for_write",
    "convert_value",
    "status_quality",
    "status_text",
    "variant_type_of",
]

