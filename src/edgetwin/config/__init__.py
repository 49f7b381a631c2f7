"""Configuration: YAML -> frozen, validated models; every error with file:line:col and key path."""

from edgetwin.config.loader import InvalidConfig, Problem, load_config, parse_config
from edgetwin.config.model import (
    GatewayConfig,
    MqttConfig,
    OnFull,
    PointConfig,
    Scheme,
    SourceConfig,
    SyncConfig,
    gateway_model,
)

__all__ = [
    "GatewayConfig",
    "InvalidConfig",
    "MqttConfig",
    "OnFull",
    "PointConfig",
    "Problem",
    "Scheme",
    "SourceConfig",
    "SyncConfig",
    "gateway_model",
    "load_config",
    "parse_config",
]
