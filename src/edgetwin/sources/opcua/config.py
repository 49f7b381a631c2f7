"""OPC UA source configuration (the driver comes with the southbound-drivers issue)."""

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
    certificate: Path | None = None
    private_key: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Security:
        secured = self.policy is not SecurityPolicy.NONE
        if secured != (self.mode is not SecurityMode.NONE):
            raise ValueError("policy and mode must both be None, or both be set")
        if secured and (self.certificate is None or self.private_key is None):
            raise ValueError("a secured endpoint needs certificate and private_key")
        return self


class Subscription(Model):
    """Subscription timing."""

    publishing_interval: Seconds = 0.5


class OpcuaPoint(PointConfig):
    """One OPC UA node."""

    node: str = Field(min_length=3, pattern=r"^(ns=\d+;)?[isgb]=.+$")


class OpcuaConfig(SourceConfig):
    """An OPC UA server."""

    type: Literal["opcua"]
    endpoint: str = Field(pattern=r"^opc\.tcp://.+")
    security: Security = Security()
    subscription: Subscription = Subscription()
    username: str | None = None
    password_file: Path | None = None
    timeout: Seconds = 4.0
    points: tuple[OpcuaPoint, ...] = Field(min_length=1)
