"""The CRUD API's token-signing keys in the local stack: RSA-2048 PEM files in
`<state>/jwt-keys/` (mode 0600, never in the repository). The CRUD API signs with the newest
and publishes all of them (services/clickpulse_services/common/signing_keys.py), so a rotation
is adding a file; the oldest ones are removed, and tokens they signed stop verifying then."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# The current key and the one before it: tokens live 15 minutes, so after a rotation the
# previous key's tokens keep working until they expire (or the next rotation).
KEEP = 2


def _write_new(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return path


def keys(folder: Path) -> list[Path]:
    """Oldest first (the CRUD API orders them by modification time too)."""
    return (
        sorted(folder.glob("*.pem"), key=lambda p: p.stat().st_mtime_ns) if folder.exists() else []
    )


def ensure(folder: Path) -> Path:
    """The current signing key, made on first use."""
    existing = keys(folder)
    return existing[-1] if existing else _write_new(folder)


def rotate(folder: Path) -> tuple[Path, list[Path]]:
    """A new signing key; returns it and the keys removed (all but the newest KEEP)."""
    new = _write_new(folder)
    retired = keys(folder)[:-KEEP]
    for path in retired:
        path.unlink()
    return new, retired
