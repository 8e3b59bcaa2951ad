"""The watch over the run's logs finds a secret that reaches one (it can fail)."""

from __future__ import annotations

import logging

from keys import crypto, tokens
from tests.secret_watch import SecretWatch

PASSWORD = "hunter2-provider-password"  # no known credential shape: not masked


def isolated_logger() -> logging.Logger:
    # Its records stay out of the whole run's watch (tests/conftest.py).
    logger = logging.getLogger("tests.secret_watch.isolated")
    logger.propagate = False
    return logger


def test_a_secret_found_in_a_log_is_reported_and_a_masked_one_is_not(tmp_path):
    logger = isolated_logger()
    unwrapped = tokens.hash_key
    watch = SecretWatch(tmp_path / "run.log", logger)
    watch.start()
    try:
        key = tokens.generate_key()
        tokens.hash_key(key)
        crypto.encrypt(PASSWORD)
        crypto.encrypt("sk-provider-secret-0123")
        logger.error("the key was %s", key)  # masked by the log filter
        logger.error("the provider answered for %s", PASSWORD)
        gateway_log = tmp_path / "gateway.log"
        gateway_log.write_text("upstream said: bad key sk-provider-secret-0123\n")
    finally:
        watch.stop()
    assert watch.leaks([gateway_log]) == ["gateway.log: sk-pro…", "run.log: hunter…"]
    assert tokens.hash_key is unwrapped


def test_a_log_without_secrets_is_clean(tmp_path):
    logger = isolated_logger()
    watch = SecretWatch(tmp_path / "run.log", logger)
    watch.start()
    try:
        tokens.hash_key(tokens.generate_key())
        logger.warning("nothing to see")
    finally:
        watch.stop()
    assert watch.leaks([]) == []
