"""OPC UA source configuration: endpoint, session, subscription and per-point options."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edgetwin.config.model import Model, PointConfig, Seconds, SourceConfig


class SecurityPolicy(enum.Enum):
    """OPC UA security policies asyncua supports."""

    NONE = "None"
    BASIC256SHA256 = "Basic256Sha256"
    AES128_SHA256_RSAOAEP = "Aes128_Sha256_RsaOaep"
    AES256_SHA256_RSAPSS = "Aes256_Sha256_RsaPss"


class SecurityMode(enum.Enum):
    """OPC UA message security mode."""

    NONE = "None"
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


class Security(Model):
    """Endpoint security and the client's application certificate."""

    policy: SecurityPolicy = SecurityPolicy.NONE
    mode: SecurityMode = SecurityMode.NONE
    certificate: Path | None = None  # the gateway's application certificate, DER or PEM
    private_key: Path | None = None  # its RSA key, unencrypted PEM (keep it mode 0600)
    # Pin: the server's certificate. Without it the certificate the server announces in its
    # endpoint description is used as is (not validated against a trust store).
    server_certificate: Path | None = None
    # Must equal the URI in the certificate's subjectAltName; default: read from it.
    application_uri: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Security:
        secured = self.policy is not SecurityPolicy.NONE
        if secured != (self.mode is not SecurityMode.NONE):
            raise ValueError("policy and mode must both be None, or both be set")
        if secured and (self.certificate is None or self.private_key is None):
            raise ValueError("a secured endpoint needs certificate and private_key")
        if not secured and (self.server_certificate is not None or self.certificate is not None):
            raise ValueError("certificates apply to a secured endpoint only (policy is None)")
        return self


class Subscription(Model):
    """Subscription timing and how the link is watched."""

    publishing_interval: Seconds = Field(default=0.5, ge=0.01)
    # Sent by the server when nothing changed, so a silent subscription is told from a dead one.
    keepalive_interval: Seconds = Field(default=5.0, ge=0.1)
    # How often the session is probed (a Read of the server state); a probe that fails or
    # takes longer than this marks the link lost.
    watchdog_interval: Seconds = Field(default=1.0, ge=0.1)


class PointMode(enum.Enum):
    """How a point's value is obtained."""

    SUBSCRIBE = "subscribe"  # a monitored item in the source's one subscription
    POLL = "poll"  # a Read every poll_interval


class DeadbandType(enum.Enum):
    """Server-side deadband of a monitored item (OPC UA Part 4, DataChangeFilter)."""

    NONE = "none"
    ABSOLUTE = "absolute"  # the point's ``deadband``, in its unit
    PERCENT = "percent"  # ``deadband_percent`` of the node's EURange (AnalogItem only)


class OpcuaPoint(PointConfig):
    """One OPC UA node."""

    # "ns=2;s=Tag", "i=2258", or "nsu=<namespace URI>;s=Tag" (index looked up at connect)
    node: str = Field(min_length=3, pattern=r"^(ns=\d+;|nsu=[^;]+;)?[isgb]=.+$")
    mode: PointMode = PointMode.SUBSCRIBE
    poll_interval: Seconds | None = Field(default=None, ge=0.01)
    sampling_interval: Seconds | None = Field(default=None, ge=0)
    queue_size: int = Field(default=1, ge=1, le=10000)
    deadband_type: DeadbandType = DeadbandType.NONE
    deadband_percent: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _filter_consistent(self) -> OpcuaPoint:
        if self.mode is PointMode.POLL and (
            self.deadband_type is not DeadbandType.NONE
            or self.sampling_interval is not None
            or self.queue_size != 1
        ):
            raise ValueError(
                "deadband_type, sampling_interval and queue_size apply to mode subscribe only"
            )
        if self.deadband_type is DeadbandType.ABSOLUTE and self.deadband <= 0:
            raise ValueError("deadband_type absolute needs a deadband above 0")
        if (self.deadband_type is DeadbandType.PERCENT) != (self.deadband_percent is not None):
            raise ValueError("deadband_percent goes with deadband_type percent, and only with it")
        return self


class OpcuaConfig(SourceConfig):
    """An OPC UA server."""

    type: Literal["opcua"]
    endpoint: str = Field(pattern=r"^opc\.tcp://.+")
    security: Security = Security()
    subscription: Subscription = Subscription()
    username: str | None = None
    password_file: Path | None = None
    timeout: Seconds = Field(default=4.0, gt=0)
    poll_interval: Seconds = Field(default=1.0, ge=0.01)
    points: tuple[OpcuaPoint, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _login_consistent(self) -> OpcuaConfig:
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        return self
