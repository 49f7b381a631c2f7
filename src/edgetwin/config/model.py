"""The configuration as frozen, validated models: the whole shape of gateway.example.yaml.

Each source plugin owns its config class (a subclass of ``SourceConfig``); the gateway
model is built once for the registered plugins by ``gateway_model``.
"""

from __future__ import annotations

import enum
import functools
import math
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from edgetwin.config.units import Bytes, Seconds

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
POINT_ID_PATTERN = r"^[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+$"

Name = Annotated[str, Field(pattern=NAME_PATTERN, min_length=1, max_length=64)]
PointId = Annotated[str, Field(pattern=POINT_ID_PATTERN, max_length=128)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Model(BaseModel):
    """Base of every config model: frozen, and an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class LogFormat(enum.Enum):
    """How log lines are written."""

    AUTO = "auto"  # JSON under systemd or when stdout is no terminal, console otherwise
    JSON = "json"
    CONSOLE = "console"


class GatewaySection(Model):
    """Identity and local storage of this gateway."""

    id: Name
    group: Name
    state_dir: Path = Path("/var/lib/edgetwin")
    log_format: LogFormat = LogFormat.AUTO


class PointConfig(Model):
    """Keys every point has, whatever its protocol."""

    id: PointId
    unit: str | None = None
    deadband: float = Field(default=0.0, ge=0)
    stale_after: Seconds | None = None
    writable: bool = False


class SourceConfig(Model):
    """Keys every source has; plugins subclass it with a ``type`` literal and their own keys."""

    name: Name
    type: str
    points: tuple[PointConfig, ...] = Field(min_length=1)

    def resources(self) -> frozenset[str]:
        """Exclusive resources (a serial port) that no two sources may share."""
        return frozenset()

    def shares_resource_with(self, other: SourceConfig) -> bool:
        """Whether this source may use a resource ``other`` also uses (an RTU bus may)."""
        del other
        return False


class WindowFn(enum.Enum):
    """Window applied before the FFT."""

    HANN = "hann"
    HAMMING = "hamming"
    BLACKMAN = "blackman"
    RECT = "rect"


class Foundation(enum.Enum):
    """Machine support, as ISO 10816-3 classifies it."""

    RIGID = "rigid"
    FLEXIBLE = "flexible"


class VibrationFeature(enum.Enum):
    """Features a vibration entry can compute."""

    RMS = "rms"
    PEAK = "peak"
    PEAK_TO_PEAK = "peak_to_peak"
    CREST = "crest"
    KURTOSIS = "kurtosis"
    SKEWNESS = "skewness"
    VELOCITY_RMS = "velocity_rms"
    ISO_ZONE = "iso_zone"
    BPFO = "bpfo"
    BPFI = "bpfi"
    BSF = "bsf"
    FTF = "ftf"
    HARMONICS_1X_3X = "harmonics_1x_3x"
    BAND_ENERGY = "band_energy"


class MachineConfig(Model):
    """The machine a vibration sensor sits on."""

    shaft_hz_point: PointId | None = None
    iso_group: int = Field(default=2, ge=1, le=4)
    foundation: Foundation = Foundation.RIGID


class BearingConfig(Model):
    """Rolling-element bearing geometry; diameters in mm, contact angle in degrees."""

    n_balls: int = Field(ge=3, le=100)
    ball_diameter: float = Field(gt=0)
    pitch_diameter: float = Field(gt=0)
    contact_angle: float = Field(default=0.0, ge=0, lt=90)

    @model_validator(mode="after")
    def _ball_fits(self) -> BearingConfig:
        if self.ball_diameter >= self.pitch_diameter:
            raise ValueError("ball_diameter must be smaller than pitch_diameter")
        return self


class VibrationConfig(Model):
    """FFT features computed from one waveform point."""

    point: PointId
    window: int = Field(default=4096, ge=64, le=1 << 20)
    window_fn: WindowFn = WindowFn.HANN
    machine: MachineConfig = MachineConfig()
    bearing: BearingConfig | None = None
    envelope_band: tuple[float, float] | None = None
    features: tuple[VibrationFeature, ...] = (VibrationFeature.RMS, VibrationFeature.VELOCITY_RMS)

    @field_validator("envelope_band")
    @classmethod
    def _band_ordered(cls, band: tuple[float, float] | None) -> tuple[float, float] | None:
        if band is not None and not 0 < band[0] < band[1]:
            raise ValueError("envelope_band must be [low, high] in Hz with 0 < low < high")
        return band


class Hysteresis(Model):
    """How many consecutive scores raise or clear an alarm."""

    raise_after: int = Field(default=3, ge=1)
    clear_after: int = Field(default=5, ge=1)


class AnomalyConfig(Model):
    """One ONNX anomaly model scored from twin points."""

    name: Name
    model: Path
    inputs: tuple[PointId, ...] = Field(min_length=1)
    threshold: float
    hysteresis: Hysteresis = Hysteresis()
    shadow: bool = False


class TlsConfig(Model):
    """Broker TLS: the CA that signed the broker, and a client certificate and key for mutual TLS.

    Without ``ca`` the system's trust store verifies the broker. The broker's certificate
    and its name (``mqtt.host``) are always verified; no option turns that off. The files
    are read at each connect, not here: a missing one fails that attempt, counted and logged.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @field_validator("ca", "cert", "key", mode="before")
    @classmethod
    def _not_empty(cls, path: Any) -> Any:
        # pydantic would read "" as Path("."), the working directory: refuse, don't repair.
        if isinstance(path, str) and not path.strip():
            raise ValueError("empty path; omit the setting instead")
        return path

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        for given, missing in (("cert", "key"), ("key", "cert")):
            if getattr(self, given) is not None and getattr(self, missing) is None:
                raise ValueError(
                    f"{given} is set but {missing} is not: mutual TLS needs both the client"
                    " certificate (cert) and its private key (key); give both, or neither"
                )
        return self


class MqttProtocol(enum.Enum):
    """MQTT protocol version."""

    V311 = "3.1.1"
    V5 = "5"


class MqttConfig(Model):
    """The broker session."""

    host: str = Field(min_length=1)
    port: Port = 1883
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    keepalive: int = Field(default=30, ge=5, le=65535)
    protocol: MqttProtocol = MqttProtocol.V311
    tls: TlsConfig | None = None
    username: str | None = None
    password_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "password: inline secrets are not accepted; put it in a file and set password_file"
            )
        return data


class Scheme(enum.Enum):
    """Northbound topic schemes."""

    SPARKPLUG = "sparkplug"
    JSON = "json"


class SparkplugConfig(Model):
    """Sparkplug B settings."""

    primary_host: Name | None = None


class JsonSchemeConfig(Model):
    """JSON twin scheme settings."""

    prefix: str = Field(default="edgetwin/v1", pattern=r"^[^#+]+$")
    snapshot_interval: Seconds = 1.0  # least time between two retained snapshots of one asset

    @field_validator("prefix")
    @classmethod
    def _no_slash_at_ends(cls, prefix: str) -> str:
        if prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("prefix must not start or end with '/'")
        return prefix


class InboundCommands(Model):
    """How many commands the gateway takes from the broker; the rest are refused unread."""

    per_second: float = Field(default=20.0, gt=0, le=10_000)  # sustained
    # A whole message is admitted or refused: at least one full desired message (64 points).
    burst: int = Field(default=128, ge=64, le=100_000)


class SyncConfig(Model):
    """Northbound sync to an MQTT broker."""

    mqtt: MqttConfig
    schemes: tuple[Scheme, ...] = (Scheme.JSON,)
    sparkplug: SparkplugConfig = SparkplugConfig()
    json_: JsonSchemeConfig = Field(default=JsonSchemeConfig(), alias="json")
    max_batch: int = Field(default=500, ge=1, le=10_000)
    max_delay: Seconds = 0.05
    max_inflight: int = Field(default=200, ge=1, le=10_000)  # unacknowledged QoS 1 publishes
    inbound_commands: InboundCommands = InboundCommands()

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("schemes")
    @classmethod
    def _schemes_unique(cls, schemes: tuple[Scheme, ...]) -> tuple[Scheme, ...]:
        if not schemes:
            raise ValueError("name at least one scheme: sparkplug, json")
        if len(set(schemes)) != len(schemes):
            raise ValueError("a scheme is listed twice")
        return schemes


class OnFull(enum.Enum):
    """What the buffer does when it reaches max_bytes."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    BLOCK_SOURCES = "block_sources"


class Durability(enum.Enum):
    """SQLite ``synchronous`` mode of the outbox: what a commit survives."""

    NORMAL = "normal"  # a process crash or kill -9; the last commits may be lost to a power cut
    FULL = "full"  # a power cut too: every commit is fsynced before it counts


class BufferConfig(Model):
    """Store-and-forward bounds."""

    max_bytes: Bytes = 256 * 2**20
    on_full: OnFull = OnFull.DROP_OLDEST
    replay_rate: float = Field(default=2000, gt=0)  # messages/s while draining a backlog
    durability: Durability = Durability.NORMAL
    # The in-memory queue that takes over while the disk is full or the database fails.
    memory_max_bytes: Bytes = 16 * 2**20


class RateLimit(Model):
    """Command rate limit: writes (attempted, not selects) per point in any 60 s window."""

    per_point_per_minute: int = Field(default=6, ge=1, le=600)


class Confirm(enum.Enum):
    """Confirmation a command needs before it operates."""

    NONE = "none"
    SELECT_BEFORE_OPERATE = "select_before_operate"


class ValueType(enum.Enum):
    """The type a command's value must have (after lossless coercion) to be written."""

    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STRING = "string"


def _finite(name: str, number: float | None) -> None:
    # pydantic accepts .nan and .inf for floats; a NaN bound would compare false and pass all.
    if number is not None and not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {number!r}")


class CommandRule(Model):
    """What a command may do to one point.

    ``type`` says what the value must be; without it the type of the point's current twin
    value is used (and a point with no current value cannot be written). ``min``/``max``/
    ``max_step`` apply to numbers only; ``allowed`` lists the only values accepted.
    """

    point: PointId
    type: ValueType | None = None
    min: float | None = None
    max: float | None = None
    # bool first: pydantic's smart union keeps true a bool and 1 an int, 1.5 a float.
    allowed: tuple[bool | int | float | str, ...] | None = Field(default=None, min_length=1)
    max_step: float | None = Field(default=None, gt=0)
    interlock: str | None = Field(default=None, min_length=1, max_length=1000)
    confirm: Confirm = Confirm.NONE

    @model_validator(mode="after")
    def _consistent(self) -> CommandRule:
        _finite("min", self.min)
        _finite("max", self.max)
        _finite("max_step", self.max_step)
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        numeric = (self.min, self.max, self.max_step) != (None, None, None)
        if numeric and self.type in (ValueType.BOOL, ValueType.STRING):
            raise ValueError(f"min, max and max_step apply to numbers, not to type "
                             f"{self.type.value}")
        for value in self.allowed or ():
            if isinstance(value, float):
                _finite("an allowed value", value)
            if self.type is not None and not _fits(value, self.type):
                raise ValueError(f"allowed value {value!r} is not of type {self.type.value}")
        return self


def _fits(value: bool | float | str, value_type: ValueType) -> bool:
    """Whether a configured value (from ``allowed``) can be a value of ``value_type``."""
    if isinstance(value, bool):
        return value_type is ValueType.BOOL
    if isinstance(value, str):
        return value_type is ValueType.STRING
    if value_type is ValueType.INT:
        return isinstance(value, int) or value.is_integer()
    return value_type is ValueType.FLOAT


class AuditConfig(Model):
    """The command audit log in ``state_dir``: rotated by size, the newest files kept."""

    max_bytes: Bytes = Field(default=8 * 2**20, ge=64 * 1024)  # per file
    keep: int = Field(default=8, ge=1, le=1000)  # rotated files kept besides the current one


class CommandsConfig(Model):
    """Cloud-to-device commands; read-only unless enabled."""

    enabled: bool = False
    require_signature: bool = True
    keys: dict[Name, Path] = Field(default_factory=dict)
    max_age: Seconds = 30.0
    # How far the sender's clock may be ahead of the gateway's (issued_at in the future)
    # and the oldest command's age beyond max_age; also how far the gateway's own clock may
    # step back before writes are refused.
    clock_skew: Seconds = Field(default=5.0, le=300)
    select_timeout: Seconds = Field(default=10.0, le=300)  # a select's token lives this long
    # The longest a device write (with its read-back) may take before it counts as failed.
    write_timeout: Seconds = Field(default=10.0, le=300)
    max_remembered_ids: int = Field(default=100_000, ge=100, le=10_000_000)
    rate_limit: RateLimit = RateLimit()
    audit: AuditConfig = AuditConfig()
    rules: tuple[CommandRule, ...] = ()

    @field_validator("keys", mode="before")
    @classmethod
    def _no_empty_key_path(cls, keys: Any) -> Any:
        if isinstance(keys, dict):
            for name, path in keys.items():
                if isinstance(path, str) and not path.strip():
                    raise ValueError(f"key {name!r} has an empty path")
        return keys


class MetricsConfig(Model):
    """Prometheus endpoint (also serves the status the ``status`` command reads)."""

    listen: str | None = "127.0.0.1:9108"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str | None) -> str | None:
        if listen is None:
            return None
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{listen!r} is not HOST:PORT with a port in 0..65535")
        return listen

    def host_port(self) -> tuple[str, int] | None:
        """The listen address split, or None when the endpoint is off."""
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class HealthConfig(Model):
    """Metrics and watchdog."""

    metrics: MetricsConfig = MetricsConfig()
    watchdog: bool = True


class GatewayConfig(Model):
    """A whole configuration file. ``sources`` is specialised per registry by ``gateway_model``."""

    gateway: GatewaySection
    sources: tuple[SourceConfig, ...] = Field(min_length=1)
    vibration: tuple[VibrationConfig, ...] = ()
    anomaly: tuple[AnomalyConfig, ...] = ()
    sync: SyncConfig
    buffer: BufferConfig = BufferConfig()
    commands: CommandsConfig = CommandsConfig()
    health: HealthConfig = HealthConfig()

    def points(self) -> dict[str, tuple[SourceConfig, PointConfig]]:
        """Every configured point id with its source and point config."""
        return {p.id: (s, p) for s in self.sources for p in s.points}


@functools.cache
def gateway_model(source_configs: tuple[type[SourceConfig], ...]) -> type[GatewayConfig]:
    """The gateway model whose ``sources`` accept exactly the registered source types."""
    if len(source_configs) == 1:
        source_type: Any = source_configs[0]
    else:
        source_type = Annotated[Union[source_configs], Field(discriminator="type")]  # noqa: UP007
    model: type[GatewayConfig] = create_model(
        "GatewayConfig",
        __base__=GatewayConfig,
        sources=(tuple[source_type, ...], Field(min_length=1)),
    )
    return model


def source_type_names(source_configs: tuple[type[SourceConfig], ...]) -> list[str]:
    """The ``type`` values the registered source configs accept."""
    names: list[str] = []
    for cls in source_configs:
        annotation = cls.model_fields["type"].annotation
        names.extend(getattr(annotation, "__args__", ()))
    return names


__all__ = [
    "NAME_PATTERN",
    "POINT_ID_PATTERN",
    "AnomalyConfig",
    "AuditConfig",
    "BufferConfig",
    "CommandRule",
    "CommandsConfig",
    "Confirm",
    "GatewayConfig",
    "GatewaySection",
    "HealthConfig",
    "LogFormat",
    "Model",
    "MqttConfig",
    "MqttProtocol",
    "Name",
    "OnFull",
    "PointConfig",
    "PointId",
    "Port",
    "RateLimit",
    "Scheme",
    "Seconds",
    "SourceConfig",
    "SyncConfig",
    "ValueType",
    "VibrationConfig",
    "gateway_model",
]
