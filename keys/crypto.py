"""Encryption at rest for provider API keys.

The key material comes from ``GATEWAY_ENCRYPTION_KEY`` (any length, at least
32 random characters in production); an AES key is derived from it with HKDF
so that operators need not produce Fernet's exact format.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

HKDF_INFO = b"gateway provider-key encryption v1"


class DecryptionError(Exception):
    """A stored secret cannot be decrypted with the configured key."""


@functools.cache
def _fernet(material: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
        material.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(plaintext: str) -> str:
    """Encrypt ``plaintext`` with the configured key; the result is ASCII."""
    return _fernet(settings.GATEWAY_ENCRYPTION_KEY).encrypt(plaintext.encode("utf-8")).decode()


def decrypt(token: str) -> str:
    """Decrypt what :func:`encrypt` produced."""
    try:
        return _fernet(settings.GATEWAY_ENCRYPTION_KEY).decrypt(token.encode()).decode("utf-8")
    except InvalidToken as exc:
        raise DecryptionError(
            "a provider key cannot be decrypted: GATEWAY_ENCRYPTION_KEY changed?"
        ) from exc
