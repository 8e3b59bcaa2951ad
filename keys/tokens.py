"""Virtual key secrets: their format, generation and hashing.

A virtual key reads ``sk-gw-`` + an 8-character public prefix + a 40-character
secret. Only the prefix and a SHA-256 hash are stored; the prefix finds the
key, and the hash is compared in constant time. The secrets are 238 bits of
randomness, so a fast hash is enough (nothing to brute-force from a leak).

Admin API tokens (``keys.models.ApiToken``) have the same shape under their
own scheme, ``gw-api-``, so that neither kind is ever mistaken for the other.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

KEY_SCHEME = "sk-gw-"
API_TOKEN_SCHEME = "gw-api-"
PREFIX_LENGTH = 8
SECRET_LENGTH = 40
KEY_LENGTH = len(KEY_SCHEME) + PREFIX_LENGTH + SECRET_LENGTH
_ALPHABET = string.ascii_letters + string.digits
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


def generate_key(scheme: str = KEY_SCHEME) -> str:
    """A fresh virtual key (or API token, given its scheme)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return scheme + prefix + secret


def is_well_formed(key: str, scheme: str = KEY_SCHEME) -> bool:
    """True when ``key`` has the shape of a ``scheme`` secret (says nothing of validity)."""
    return (
        len(key) == len(scheme) + PREFIX_LENGTH + SECRET_LENGTH
        and key.startswith(scheme)
        and key[len(scheme) :].isascii()
        and key[len(scheme) :].isalnum()
    )


def key_prefix(key: str, scheme: str = KEY_SCHEME) -> str:
    """The public part that identifies a key in lists and logs."""
    return key[len(scheme) : len(scheme) + PREFIX_LENGTH]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def hashes_match(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)
