"""Failed authentications counted per client address, against key guessing.

After ``GATEWAY_AUTH_FAILURE_LIMIT`` invalid keys from one address within
``GATEWAY_AUTH_FAILURE_WINDOW_SECONDS``, every request from that address is
refused with 429 until the window ends, before any key is looked at (so a
guesser learns nothing, and costs neither a hash nor a database lookup).

Counted in this process only: a successful authentication costs one
dictionary lookup and no Redis round trip, and a guesser spread over
replicas gets the limit once per process (a bound, not an exact count).

Requests refused before any key was found (a missing or unknown key, the
429 above, a wrong method or an oversized body before authentication) are
nobody's usage: at most ``GATEWAY_LEDGER_UNAUTHENTICATED_PER_MINUTE`` of
them a minute are written to the usage ledger by each process
(:data:`unauthenticated_records`), enough to see who is knocking; the rest
are only counted (``gateway_requests_total``, and
``gateway_unrecorded_refusals_total`` for the ones left out), so that a flood
of invalid keys cannot grow the ledger without bound. Refusals of a known
key (403, 402, 429 of its limits) are the owner's and are all recorded.
"""

from __future__ import annotations

import math
import time

from gateway_project.fast_settings import settings
from proxy.errors import GatewayError

# Addresses tracked at once; beyond it the table starts over (an attacker
# with that many addresses is not stopped by counting them anyway).
MAX_ADDRESSES = 100_000


class FailedAuthentications:
    def __init__(self) -> None:
        # address → (end of its window, failures in it)
        self.windows: dict[str, tuple[float, int]] = {}

    def check(self, address: str | None, now: float | None = None) -> None:
        """Raise the 429 when ``address`` used up its failures."""
        window = self.windows.get(address or "")
        if window is None:
            return
        now = time.monotonic() if now is None else now
        ends, failures = window
        if ends <= now:
            del self.windows[address or ""]
        elif failures >= settings.GATEWAY_AUTH_FAILURE_LIMIT > 0:
            retry = str(max(1, math.ceil(ends - now))).encode()
            raise GatewayError(
                429,
                "Too many requests with an invalid key from this address; try again later.",
                code="too_many_failed_authentications",
                headers=[(b"retry-after", retry)],
            )

    def failed(self, address: str | None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        key = address or ""
        ends, failures = self.windows.get(key, (0.0, 0))
        if ends <= now:
            if len(self.windows) >= MAX_ADDRESSES:
                self.windows.clear()
            ends, failures = now + settings.GATEWAY_AUTH_FAILURE_WINDOW_SECONDS, 0
        self.windows[key] = (ends, failures + 1)


failed_authentications = FailedAuthentications()


class RecordAllowance:
    """How many unauthenticated refusals may still be recorded this minute."""

    def __init__(self) -> None:
        self.minute = 0
        self.left = 0

    def take(self, now: float | None = None) -> bool:
        minute = int((time.monotonic() if now is None else now) // 60)
        if minute != self.minute:
            self.minute, self.left = minute, settings.GATEWAY_LEDGER_UNAUTHENTICATED_PER_MINUTE
        if self.left <= 0:
            return False
        self.left -= 1
        return True


unauthenticated_records = RecordAllowance()
