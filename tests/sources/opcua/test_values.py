"""Pure conversions: status -> quality, variant -> sample value, value -> node data type."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime

import numpy as np
import pytest
from asyncua import ua
from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.core.errors import DecodeError
from edgetwin.core.types import Quality
from edgetwin.sources.opcua.driver import _WriteRefused as WriteRefused
from edgetwin.sources.opcua.driver import (
    certificate_uri,
    coerce_for_write,
    convert_value,
    status_quality,
    status_text,
    variant_type_of,
)


@pytest.mark.parametrize(("code", "quality"), [
    (0x00000000, Quality.GOOD),
    (0x40900000, Quality.UNCERTAIN),  # UncertainLastUsableValue
    (0x40930000, Quality.UNCERTAIN),  # UncertainSensorNotAccurate
    (0x808C0000, Quality.BAD),  # BadSensorFailure
    (0x80310000, Quality.BAD),  # BadNoCommunication
    (0xC0000000, Quality.BAD),  # reserved severity: treated as Bad
])
def test_status_severity_maps_to_quality(code: int, quality: Quality) -> None:
    """The top two bits of a StatusCode decide the quality."""
    assert status_quality(code) is quality


def test_status_text_names_the_code() -> None:
    """Reasons carry the symbolic name and the hex code."""
    assert status_text(0x803C0000) == "BadOutOfRange (0x803C0000)"


def test_scalars_pass_and_arrays_become_read_only_numpy() -> None:
    """bool/int/float/str pass through; numeric arrays become float64, bool arrays bool."""
    assert convert_value(True) is True
    assert convert_value(7) == 7
    assert convert_value("tripped") == "tripped"
    array = convert_value([1.0, -2.5, 3])
    assert isinstance(array, np.ndarray) and array.dtype == np.float64
    assert array.tolist() == [1.0, -2.5, 3.0]
    assert not array.flags.writeable
    bits = convert_value([True, False])
    assert isinstance(bits, np.ndarray) and bits.dtype == np.bool_
    assert convert_value(ua.LocalizedText("hot")) == "hot"
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    assert convert_value(stamp) == int(stamp.timestamp()) * 10**9


def node_id(identifier: int, namespace: int = 0) -> ua.NodeId:
    return ua.NodeId(ua.Int32(identifier), ua.Int16(namespace))


@pytest.mark.parametrize("raw", [None, node_id(5), b"\x00\x01", ["a", "b"]])
def test_values_without_a_sample_form_are_refused(raw: object) -> None:
    """Null, NodeIds, byte strings and string arrays are decode errors (the point goes BAD)."""
    with pytest.raises(DecodeError):
        convert_value(raw)


def test_variant_type_of_builtin_and_other_types() -> None:
    """Only namespace-0 built-in DataTypes are writable types."""
    assert variant_type_of(node_id(11)) is ua.VariantType.Double
    assert variant_type_of(node_id(1)) is ua.VariantType.Boolean
    assert variant_type_of(node_id(29)) is None  # Enumeration
    assert variant_type_of(node_id(11, 2)) is None


@pytest.mark.parametrize(("value", "vtype", "expected"), [
    (1200, ua.VariantType.Double, 1200.0),
    (2.0, ua.VariantType.Int32, 2),
    (True, ua.VariantType.Boolean, True),
    ("on", ua.VariantType.String, "on"),
    (0.1, ua.VariantType.Float, struct.unpack("<f", struct.pack("<f", 0.1))[0]),
    (255, ua.VariantType.Byte, 255),
])
def test_lossless_coercions(value: object, vtype: ua.VariantType, expected: object) -> None:
    """Values that fit the node's type go out as that type."""
    coerced = coerce_for_write(value, vtype)
    assert coerced == expected and type(coerced) is type(expected)


@pytest.mark.parametrize(("value", "vtype", "reason"), [
    (1.5, ua.VariantType.Int32, "1.5 is not a whole number; the node is Int32"),
    (256, ua.VariantType.Byte, "256 is outside Byte (0..255)"),
    (-1, ua.VariantType.UInt32, "-1 is outside UInt32 (0..4294967295)"),
    (True, ua.VariantType.Double, "a bool cannot be written to a Double node"),
    (1, ua.VariantType.Boolean, "an int cannot be written to a Boolean node"),
    (1.0, ua.VariantType.String, "a float cannot be written to a String node"),
    (math.nan, ua.VariantType.Double, "nan is not exactly representable as Double"),
    (2**53 + 1, ua.VariantType.Double,
     "9007199254740993 is not exactly representable as Double"),
    (1e39, ua.VariantType.Float, "1e+39 is outside Float"),
    (1, ua.VariantType.ByteString,
     "the node's data type ByteString is not writable by this driver"),
])
def test_lossy_coercions_are_refused(value: object, vtype: ua.VariantType, reason: str) -> None:
    """Anything that would change the value on the way is refused with why."""
    with pytest.raises(WriteRefused) as refused:
        coerce_for_write(value, vtype)
    assert str(refused.value) == reason


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_int32_range_round_trips(number: int) -> None:
    """Every Int32 goes out unchanged, as an int or as a whole float."""
    assert coerce_for_write(number, ua.VariantType.Int32) == number
    assert coerce_for_write(float(number), ua.VariantType.Int32) == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_doubles_round_trip(number: float) -> None:
    """Every finite float goes to a Double node unchanged."""
    assert coerce_for_write(number, ua.VariantType.Double) == number


def test_certificate_uri_from_der_and_pem() -> None:
    """The application URI comes from the certificate's subjectAltName, DER or PEM."""
    key = generate_private_key()
    cert = generate_self_signed_app_certificate(
        key, "gw", {}, [x509.UniformResourceIdentifier("urn:edgetwin:gw"), x509.DNSName("gw")],
        [ExtendedKeyUsageOID.CLIENT_AUTH])
    assert certificate_uri(cert.public_bytes(Encoding.DER)) == "urn:edgetwin:gw"
    assert certificate_uri(cert.public_bytes(Encoding.PEM)) == "urn:edgetwin:gw"
    without_uri = generate_self_signed_app_certificate(
        key, "gw", {}, [x509.DNSName("gw")], [ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(ValueError, match="subjectAltName holds no application URI"):
        certificate_uri(without_uri.public_bytes(Encoding.DER))
    with pytest.raises(ValueError):  # noqa: PT011  # cryptography's own message
        certificate_uri(b"not a certificate")
