"""Virtual key secrets: their format, generation and hashing.

A virtual key reads ``sk-gw-`` + an 8-character public prefix + a 40-character
secret. Only the prefix and a SHA-256 hash are stored; the prefix finds the
key, and the hash is compared in constant time. The secrets are 238 bits of
randomness, so a fast hash is enough (nothing to brute-force from a leak).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

KEY_SCHEME = "sk-gw-"
PREFIX_LENGTH = 8
SECRET_LENGTH = 40
KEY_LENGTH = len(KEY_SCHEME) + PREFIX_LENGTH + SECRET_LENGTH
_ALPHABET = string.ascii_letters + string.digits
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


def generate_key() -> str:
    """A fresh virtual key."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return KEY_SCHEME + prefix + secret


def is_well_formed(key: str) -> bool:
    """True when ``key`` has the shape of a virtual key (says nothing of validity)."""
    return (
        len(key) == KEY_LENGTH
        and key.startswith(KEY_SCHEME)
        and key[len(KEY_SCHEME) :].isascii()
        and key[len(KEY_SCHEME) :].isalnum()
    )


def key_prefix(key: str) -> str:
    """The public part that identifies a key in lists and logs."""
    return key[len(KEY_SCHEME) : len(KEY_SCHEME) + PREFIX_LENGTH]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def hashes_match(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)
