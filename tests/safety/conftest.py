"""Fixtures for the safety tests: real Ed25519 keys on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgetwin.safety.signing import generate_keypair, load_private_key


@dataclass
class Keys:
    """Two real Ed25519 key pairs: "ops" (configured) and "rogue" (not configured)."""

    ops: Ed25519PrivateKey
    ops_public: Path
    rogue: Ed25519PrivateKey
    rogue_public: Path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    ops = generate_keypair(folder, "ops")
    rogue = generate_keypair(folder, "rogue")
    return Keys(load_private_key(ops.private), ops.public, load_private_key(rogue.private),
                rogue.public)
