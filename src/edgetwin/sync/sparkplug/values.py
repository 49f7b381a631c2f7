"""Sparkplug datatypes and how a value sits in a metric (FACTS 1.3, 1.4).

Signed integers travel in unsigned protobuf fields as two's complement of their width, so
a decoder must know the datatype to get the sign back; this module is that knowledge,
both ways, so what edgetwin writes and what it reads back agree.
"""

from __future__ import annotations

import enum
import math
from typing import Any

from edgetwin.core.types import Quality
from edgetwin.sync.sparkplug.sparkplug_b_pb2 import Payload


class DataType(enum.IntEnum):
    """The scalar datatypes of the specification (arrays, DataSet and Template are unused)."""

    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15


_INT_BITS = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64,
             DataType.UINT8: 8, DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64,
             DataType.DATETIME: 64}
_SIGNED = {DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64}
_LONG = {DataType.INT64, DataType.UINT64, DataType.DATETIME}
_STRINGS = {DataType.STRING, DataType.TEXT, DataType.UUID}

# The property "Quality" (Int32) is sent only when a value is not GOOD (FACTS 1.4);
# UNCERTAIN uses the OPC DA "uncertain" code, which Sparkplug hosts read the same way.
QUALITY_CODES = {Quality.BAD: 0, Quality.UNCERTAIN: 64, Quality.STALE: 500, Quality.GOOD: 192}
PROPERTY_INT32 = 3


def datatype_of(value: Any) -> DataType | None:
    """The datatype a twin value is published as; None for no value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return DataType.BOOLEAN
    if isinstance(value, int):
        return DataType.UINT64 if value > 2**63 - 1 else DataType.INT64
    if isinstance(value, float):
        return DataType.DOUBLE
    if isinstance(value, str):
        return DataType.STRING
    item = getattr(value, "item", None)  # numpy scalars
    return datatype_of(item()) if callable(item) else None


def fits(datatype: DataType, value: Any) -> bool:
    """Whether ``value`` can travel as ``datatype`` without changing."""
    if value is None:
        return True
    if datatype is DataType.BOOLEAN:
        return isinstance(value, bool)
    if datatype in _INT_BITS:
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        bits = _INT_BITS[datatype]
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if datatype in _SIGNED else (0, 2**bits)
        return bool(low <= value < high)
    if datatype in (DataType.FLOAT, DataType.DOUBLE):
        return isinstance(value, float)
    return isinstance(value, str)


def set_value(metric: Payload.Metric, datatype: DataType, value: Any) -> None:
    """Put ``value`` into the metric's field for ``datatype`` (``is_null`` for None)."""
    if value is None:
        metric.is_null = True
        return
    if datatype is DataType.BOOLEAN:
        metric.boolean_value = bool(value)
    elif datatype in _INT_BITS:
        bits = _INT_BITS[datatype]
        word = int(value) % 2**bits  # two's complement for negative signed values
        if datatype in _LONG:
            metric.long_value = word
        else:
            metric.int_value = word
    elif datatype is DataType.FLOAT:
        metric.float_value = float(value)
    elif datatype is DataType.DOUBLE:
        metric.double_value = float(value)
    else:
        metric.string_value = str(value)


def get_value(metric: Payload.Metric, datatype: DataType) -> Any:
    """The value a metric carries for ``datatype``; None when it is null.

    Raises:
        ValueError: the metric has no value field, or one that does not match ``datatype``.
    """
    if metric.is_null:
        return None
    field = metric.WhichOneof("value")
    expected = _field_of(datatype)
    if field != expected:
        msg = f"datatype {datatype.name} needs {expected}, the metric has {field or 'no value'}"
        raise ValueError(msg)
    raw = getattr(metric, field)
    if datatype in _SIGNED:
        bits = _INT_BITS[datatype]
        raw = int(raw) % 2**bits
        return raw - 2**bits if raw >= 2 ** (bits - 1) else raw
    if datatype in (DataType.FLOAT, DataType.DOUBLE) and not math.isfinite(raw):
        msg = f"{datatype.name} value {raw} is not finite"
        raise ValueError(msg)
    return raw


def _field_of(datatype: DataType) -> str:
    if datatype is DataType.BOOLEAN:
        return "boolean_value"
    if datatype in _LONG:
        return "long_value"
    if datatype in _INT_BITS:
        return "int_value"
    if datatype is DataType.FLOAT:
        return "float_value"
    if datatype is DataType.DOUBLE:
        return "double_value"
    if datatype in _STRINGS:
        return "string_value"
    msg = f"unsupported datatype {datatype}"
    raise ValueError(msg)


def set_quality(metric: Payload.Metric, quality: Quality) -> None:
    """Attach the Quality property when the value is not GOOD."""
    if quality is Quality.GOOD:
        return
    metric.properties.keys.append("Quality")
    prop = metric.properties.values.add()
    prop.type = PROPERTY_INT32
    prop.int_value = QUALITY_CODES[quality]
