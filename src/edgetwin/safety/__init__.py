"""Command safety: the policy every cloud command passes before a device write, and its audit.

``SafetyPolicy`` decides; ``signing`` makes keys and signed commands for operators and
tests; ``audit`` reads the audit log (``edgetwin audit tail``).
"""

from edgetwin.safety.audit import AuditLog, audit_dir, follow, read_tail, render, verify_chain
from edgetwin.safety.canonical import canonical_bytes, command_bytes
from edgetwin.safety.interlock import Interlock, InterlockError, parse_interlock
from edgetwin.safety.policy import AuditSink, SafetyPolicy, TwinGetter, Writer
from edgetwin.safety.readonly import read_readonly, readonly_path, write_readonly
from edgetwin.safety.sbo import token_from_reason
from edgetwin.safety.signing import (
    KeyRing,
    generate_keypair,
    load_private_key,
    sign_command,
    signed_cmd_payload,
    signed_desired_payload,
)

__all__ = [
    "AuditLog",
    "AuditSink",
    "Interlock",
    "InterlockError",
    "KeyRing",
    "SafetyPolicy",
    "TwinGetter",
    "Writer",
    "audit_dir",
    "canonical_bytes",
    "command_bytes",
    "follow",
    "generate_keypair",
    "load_private_key",
    "parse_interlock",
    "read_readonly",
    "read_tail",
    "readonly_path",
    "render",
    "sign_command",
    "signed_cmd_payload",
    "signed_desired_payload",
    "token_from_reason",
    "verify_chain",
    "write_readonly",
]
