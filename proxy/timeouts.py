"""Upstream timeouts per provider, and a request's own (capped) deadline.

Four limits, each from the provider's options or the gateway's defaults
(``GATEWAY_UPSTREAM_*_TIMEOUT``): ``connect_timeout`` (opening the
connection), ``first_byte_timeout`` (until the provider's response headers),
``read_timeout`` (the longest silence once it answers: a stalled stream)
and ``total_timeout`` (the whole exchange, stream included). A client may
ask for less with ``x-gateway-timeout: SECONDS`` (never more than the
provider's total).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway_project.fast_settings import settings
from proxy.errors import bad_request

# Provider options every kind accepts, with what they mean.
TIMEOUT_OPTIONS = {
    "connect_timeout": "seconds to open a connection (default GATEWAY_UPSTREAM_CONNECT_TIMEOUT)",
    "first_byte_timeout": (
        "seconds until the provider's response headers "
        "(default GATEWAY_UPSTREAM_FIRST_BYTE_TIMEOUT)"
    ),
    "read_timeout": "longest silence within an answer (default GATEWAY_UPSTREAM_READ_TIMEOUT)",
    "total_timeout": "seconds for the whole exchange (default GATEWAY_UPSTREAM_TOTAL_TIMEOUT)",
}


def option_problem(name: str, value: Any) -> str | None:
    """What is wrong with a timeout option's value, if anything."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return f"Option '{name}' must be a number of seconds."
    if not 0 < seconds <= 86_400:
        return f"Option '{name}' must be between 0 and 86400 seconds."
    return None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """One provider's limits, in seconds."""

    connect: float
    first_byte: float
    read: float
    total: float

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Timeouts:
        def pick(name: str, default: float) -> float:
            value = options.get(name)
            return float(value) if value not in (None, "") else default

        connect = pick("connect_timeout", settings.GATEWAY_UPSTREAM_CONNECT_TIMEOUT)
        read = pick("read_timeout", settings.GATEWAY_UPSTREAM_READ_TIMEOUT)
        total = pick("total_timeout", settings.GATEWAY_UPSTREAM_TOTAL_TIMEOUT)
        first_byte = min(
            pick("first_byte_timeout", settings.GATEWAY_UPSTREAM_FIRST_BYTE_TIMEOUT), total
        )
        return cls(connect, first_byte, read, total)

    def capped(self, seconds: float | None) -> Timeouts:
        """These limits, shortened to the client's deadline (``requested``)."""
        if seconds is None or seconds >= self.total:
            return self
        return Timeouts(
            connect=min(self.connect, seconds),
            first_byte=min(self.first_byte, seconds),
            read=min(self.read, seconds),
            total=seconds,
        )


def requested(headers: Mapping[bytes, bytes]) -> float | None:
    """The client's ``x-gateway-timeout`` in seconds, or a 400 if it is not one."""
    value = headers.get(b"x-gateway-timeout")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86_400:
        raise bad_request(
            "x-gateway-timeout must be a number of seconds (at most 86400).",
            param="x-gateway-timeout",
        )
    return seconds
