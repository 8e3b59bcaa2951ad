"""Whether a provider's base URL points into a private network.

The gateway calls its providers from inside the operator's network, so a
base URL naming a loopback, private, link-local (cloud metadata) or other
non-public address would let whoever configures providers reach services
that are not meant to be reachable. Such URLs are refused unless an admin
allows it for that provider (``Provider.allow_private_network``: a
self-hosted vLLM or Ollama).

Two checks. When a provider is saved (:func:`private_address_problem`):
literal addresses in every spelling the resolver accepts (``127.1``,
``0x7f000001``, ``2130706433``, IPv4-mapped IPv6), ``localhost`` and its
subdomains, and the addresses a host name resolves to at that moment. A name
that does not resolve then is accepted.

When a connection is opened (:func:`connect_targets`, from the upstream
client, ``proxy.upstream``): a literal address against the provider's
permission as it is *now*, and the addresses a host name resolves to now, the
ones the connection will use, so that a record changed after the save (DNS
rebinding: public when saved, 127.0.0.1 later) cannot reach a private
address. Checking the addresses actually connected to, rather than
resolving once more beside the connection, leaves no window between the
check and the connect. Resolutions are kept for :data:`RESOLVE_TTL`
seconds and only new connections ask (kept-alive ones are reused): no DNS
query per request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)
# How long a provider host's resolved addresses are used before asking again.
RESOLVE_TTL = 300.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # The resolver's lenient IPv4 forms: 127.1, 0x7f.1, 2130706433.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _kind(address: Address) -> str | None:
    """What makes ``address`` non-public, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback"
    if address.is_link_local:
        return "a link-local"
    if address.is_unspecified:
        return "an unspecified"
    if address.is_multicast:
        return "a multicast"
    if address.is_private:
        return "a private"
    if not address.is_global:
        return "a reserved"
    return None


def _resolve(host: str) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def private_address_problem(url: str) -> str | None:
    """Why ``url`` points into a private network, or None when it does not."""
    host = host_of(url)  # ("" for what is not a URL: the field's own validation says so)
    if not host:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return f"'{host}' is this machine"
    literal = _literal(host)
    addresses = [literal] if literal is not None else _resolve(host)
    for address in addresses:
        kind = _kind(address)
        if kind is not None:
            named = "" if literal is not None else f"'{host}' resolves to "
            return f"{named}{address} is {kind} address"
    return None


# --- at connect time -----------------------------------------------------------------

# Host names of the providers an admin allowed into private networks; set from
# each configuration snapshot of the process (proxy.snapshot).
_private_allowed: frozenset[str] = frozenset()


class PrivateAddressRefused(OSError):
    """A provider host that resolves only to non-public addresses."""


def allow_private_hosts(hosts: Iterable[str]) -> frozenset[str]:
    """The host names that may resolve to private addresses (providers with
    ``allow_private_network``), replacing the previous set. Returns the hosts
    no longer allowed, whose kept-alive connections must not be reused."""
    global _private_allowed
    previous = _private_allowed
    _private_allowed = frozenset(normal_host(host) for host in hosts)
    return previous - _private_allowed


def normal_host(host: str) -> str:
    return host.lower().rstrip(".")


def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return ""


def connect_addresses(host: str, addresses: Iterable[str]) -> list[str]:
    """Of the addresses ``host`` resolved to, those a connection may use: all
    of them for a host allowed into private networks, else the public ones.
    Raises :class:`PrivateAddressRefused` when none is left."""
    found = list(addresses)
    if normal_host(host) in _private_allowed:
        return found
    public = [a for a in found if _kind(ipaddress.ip_address(a.split("%", 1)[0])) is None]
    if not public and found:
        named = f"'{host}' is" if found == [host] else f"'{host}' resolves to {found[0]},"
        raise PrivateAddressRefused(
            f"{named} a non-public address, and its provider does not allow private networks"
        )
    return public


# Host name -> (when the answer expires, the addresses), by the loop's clock.
_resolved: dict[tuple[str, int], tuple[float, list[str]]] = {}


async def connect_targets(host: str, port: int) -> list[str]:
    """The addresses a connection to ``host`` may use, in the resolver's order:
    :func:`connect_addresses` of what it resolves to. A literal address is
    its own only address and is checked the same way, against the provider's
    current permission: the save-time check is not enough, since the
    permission may be taken back in the database, or the row may predate
    the check. The answer is kept for :data:`RESOLVE_TTL` seconds; the check
    runs at every new connection, so allowing or refusing private networks
    applies at once."""
    if _is_literal(host):
        addresses = [host]
    else:
        addresses = await _resolved_addresses(host, port)
    try:
        return connect_addresses(host, addresses)
    except PrivateAddressRefused:
        logger.warning("refused to connect to %s: it is a non-public address", host)
        raise


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


async def _resolved_addresses(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    now = loop.time()
    cached = _resolved.get((host, port))
    if cached is not None and cached[0] > now:
        return cached[1]
    found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if len(_resolved) >= 1024:  # only providers' hosts come here; a bound all the same
        _resolved.clear()
    _resolved[(host, port)] = (now + RESOLVE_TTL, addresses)
    return addresses
