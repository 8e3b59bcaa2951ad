"""Secrets the tests use must never reach a log: the whole run is watched.

Every virtual key and API token secret the test process hashes, and every
provider key it encrypts, is remembered. At the end of the session the logs
of every gateway process the run started, and every log record of the test
process itself, are searched for them (``tests/conftest.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gateway_project.logs import SecretFilter

# Shorter strings are not distinctive enough to be searched for.
MIN_LENGTH = 12


class SecretWatch:
    def __init__(self, run_log: Path, logger: logging.Logger | None = None) -> None:
        self.secrets: set[str] = set()
        self.run_log = run_log
        self.logger = logger or logging.getLogger()
        self._undo: list[Callable[[], None]] = []
        self._handler: logging.Handler | None = None

    def remember(self, secret: Any) -> None:
        if isinstance(secret, str) and len(secret) >= MIN_LENGTH:
            self.secrets.add(secret)

    def _wrap(self, module: Any, name: str) -> None:
        original = getattr(module, name)

        def recording(secret: Any, *args: Any, **kwargs: Any) -> Any:
            self.remember(secret)
            return original(secret, *args, **kwargs)

        setattr(module, name, recording)
        self._undo.append(lambda: setattr(module, name, original))

    def start(self) -> None:
        from keys import crypto, tokens

        self._wrap(tokens, "hash_key")  # virtual keys and API tokens
        self._wrap(crypto, "encrypt")  # provider keys
        self.run_log.parent.mkdir(exist_ok=True)
        self._handler = logging.FileHandler(self.run_log, mode="w", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        # What the gateway's own log handler would print: masked the same way.
        self._handler.addFilter(SecretFilter())
        self.logger.addHandler(self._handler)

    def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        if self._handler is not None:
            self.logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def leaks(self, logs: Iterable[Path]) -> list[str]:
        """Where a remembered secret appears: ``"file: sk-abc…"`` per finding."""
        found = []
        for path in {self.run_log, *logs}:
            if not path.exists():
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            found += [f"{path.name}: {secret[:6]}…" for secret in self.secrets if secret in text]
        return sorted(found)
