"""Signed, expiring image URLs: `/v1/images/{id}/content?expires=<unix>&signature=<hmac>`.

The signature is HMAC-SHA256 over the image id, the expiry and the owner's tenant, keyed with a server secret kept
in the data directory (mode 0600), so URLs stay valid across restarts and only this server can mint them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_NAME = "url-signing.key"


def load_secret(data_dir: Path) -> bytes:
    """The data dir's signing secret, created (32 random bytes, 0600) on first use."""
    path = Path(data_dir) / SECRET_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # whoever reads it can mint URLs for any image
        secret = path.read_bytes()
        if len(secret) < 32:
            raise RuntimeError(f"{path} holds {len(secret)} bytes, fewer than 32; delete it to make a new one "
                               "(outstanding image URLs stop working)")
        return secret
    secret = secrets.token_bytes(32)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret


def sign(secret: bytes, image_id: str, expires: int, tenant: str) -> str:
    msg = f"{image_id}\n{expires}\n{tenant}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def verify(secret: bytes, image_id: str, expires: int, tenant: str, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, image_id, expires, tenant).encode(), signature.encode())
