"""The in-process configuration snapshot the data plane reads.

Each process holds one immutable :class:`Snapshot` (keys, providers, routes)
and swaps it whole when the configuration revision changes: at once on a
Redis notification in cluster mode, and on a short poll of the revision row
everywhere (the net under a lost notification). A virtual key missing from
the snapshot is looked up in the database once; unknown keys are remembered
as unknown for a while, so a flood of bad keys does not reach the database.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import datetime as dt
import ipaddress
import itertools
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.db import DatabaseError

from gateway_project.fast_settings import settings
from governance import selectors as governance_selectors
from governance.enforcement import (
    FREE,
    Price,
    PriceSchedule,
    ScopePolicy,
    policies_from_rows,
    price_at,
    prices_from_rows,
)
from governance.guardrails import Guardrails, PolicyRow, resolve
from keys import addresses, selectors
from keys.models import StoreContent, keeps_content
from proxy import upstream
from proxy.metrics import metrics
from proxy.providers import REGISTRY, ProviderAdapter
from proxy.providers.base import Target
from proxy.timeouts import Timeouts

logger = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class KeyEntry:
    id: int
    name: str
    prefix: str
    secret_hash: str
    is_active: bool
    expires_at: float | None
    team_id: int
    team_name: str
    customer_id: int | None
    customer_name: str | None
    allowed_networks: tuple[IPNetwork, ...] = ()
    may_pin_provider_keys: bool = False
    # Requests keep their message content (``proxy.content``): the key's own
    # choice, resolved against its team's when the snapshot is built.
    store_content: bool = False

    @classmethod
    def entries_from_row(cls, row: dict[str, Any]) -> dict[str, KeyEntry]:
        """The key by its prefix, and by its previous prefix during a rotation's grace."""
        expires: dt.datetime | None = row["expires_at"]
        entry = cls(
            id=row["id"],
            name=row["name"],
            prefix=row["prefix"],
            secret_hash=row["secret_hash"],
            is_active=row["is_active"],
            expires_at=expires.timestamp() if expires else None,
            team_id=row["team_id"],
            team_name=row["team__name"],
            customer_id=row["team__customer_id"],
            customer_name=row["team__customer__name"],
            allowed_networks=tuple(
                ipaddress.ip_network(item, strict=False) for item in row["allowed_ips"] or ()
            ),
            may_pin_provider_keys=bool(row.get("may_pin_provider_keys")),
            store_content=keeps_content(
                row.get("store_content") or StoreContent.INHERIT,
                bool(row.get("team__store_content")),
            ),
        )
        entries = {entry.prefix: entry}
        grace_end: dt.datetime | None = row["previous_valid_until"]
        if row["previous_prefix"] and grace_end is not None:
            until = grace_end.timestamp()
            if entry.expires_at is not None:
                until = min(until, entry.expires_at)
            entries[row["previous_prefix"]] = dataclasses.replace(
                entry,
                prefix=row["previous_prefix"],
                secret_hash=row["previous_secret_hash"],
                expires_at=until,
            )
        return entries

    def allows_address(self, address: str | None) -> bool:
        if not self.allowed_networks:
            return True
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.allowed_networks)


@dataclass(frozen=True, slots=True)
class ProviderKeyEntry:
    id: int
    name: str
    secret: str = field(repr=False)
    weight: int


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    id: int
    name: str
    kind: str
    base_url: str
    adapter: ProviderAdapter
    keys: tuple[ProviderKeyEntry, ...]
    # Running totals of the keys' weights, for weighted choice by bisection.
    cumulative_weights: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=lambda: Timeouts.of({}))

    def pick_key(self) -> ProviderKeyEntry | None:
        """A key chosen at random in proportion to its weight."""
        if not self.cumulative_weights or self.cumulative_weights[-1] == 0:
            return None
        point = random.random() * self.cumulative_weights[-1]
        return self.keys[bisect.bisect_right(self.cumulative_weights, point)]


@dataclass(frozen=True, slots=True)
class RouteEntry:
    name: str
    provider: ProviderEntry
    provider_model: str
    fallbacks: tuple[str, ...] = ()

    def target(self, key: ProviderKeyEntry) -> Target:
        """Where an attempt with ``key`` goes, for the provider's adapter."""
        provider = self.provider
        return Target(provider.base_url, key.secret, self.provider_model, provider.options)


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: str | None
    keys_by_prefix: dict[str, KeyEntry]
    providers: dict[str, ProviderEntry]
    routes: dict[str, RouteEntry]
    built_at: float
    policies: dict[tuple[str, int], ScopePolicy] = field(default_factory=dict)
    prices: dict[tuple[str, str], PriceSchedule] = field(default_factory=dict)
    # Who a request without a key is, when governance enforcement is off.
    anonymous: KeyEntry | None = None
    # Active guardrail policies by scope (("global", 0), ("team", id)…), and
    # each key's resolution of them (filled at build, and for late keys).
    guardrail_policies: dict[tuple[str, int], tuple[PolicyRow, ...]] = field(default_factory=dict)
    resolved_guardrails: dict[int, Guardrails | None] = field(default_factory=dict)

    def policy_levels(self, key: KeyEntry) -> list[ScopePolicy]:
        """The policies a request with ``key`` must satisfy, key first."""
        levels = []
        for scope in (("key", key.id), ("team", key.team_id), ("customer", key.customer_id)):
            policy = self.policies.get(scope)  # type: ignore[arg-type]
            if policy is not None:
                levels.append(policy)
        return levels

    def guardrails(self, key: KeyEntry) -> Guardrails | None:
        """Every guardrail policy in force for ``key`` (global, customer, team, key)."""
        try:
            return self.resolved_guardrails[key.id]
        except KeyError:
            pass
        policies = self.guardrail_policies
        found = [
            policy
            for scope in (
                ("global", 0),
                ("customer", key.customer_id),
                ("team", key.team_id),
                ("key", key.id),
            )
            for policy in policies.get(scope, ())  # type: ignore[arg-type]
        ]
        resolved = resolve(found) if found else None
        self.resolved_guardrails[key.id] = resolved
        return resolved

    def price(self, route: RouteEntry, at: float) -> Price:
        """The price of the served model in force at ``at`` (epoch seconds).

        A price set for the provider by name comes before one for its kind.
        """
        provider = route.provider
        return (
            price_at(self.prices.get((provider.name, route.provider_model)), at)
            or price_at(self.prices.get((provider.kind, route.provider_model)), at)
            or FREE
        )

    def resolve_model(self, model: str) -> RouteEntry | None:
        """A route by public name, else ``provider/model`` addressed directly."""
        route = self.routes.get(model)
        if route is not None:
            return route
        provider_name, slash, provider_model = model.partition("/")
        if slash and provider_model:
            provider = self.providers.get(provider_name)
            if provider is not None:
                return RouteEntry(name=model, provider=provider, provider_model=provider_model)
        return None


EMPTY = Snapshot(revision=None, keys_by_prefix={}, providers={}, routes={}, built_at=0.0)


def build_snapshot(rows: dict[str, Any]) -> Snapshot:
    """An immutable snapshot from :func:`keys.selectors.snapshot_rows`."""
    keys_by_provider: dict[int, list[ProviderKeyEntry]] = {}
    for row in rows["provider_keys"]:
        keys_by_provider.setdefault(row["provider_id"], []).append(
            ProviderKeyEntry(
                id=row["id"], name=row["name"], secret=row["secret"], weight=row["weight"]
            )
        )
    providers: dict[str, ProviderEntry] = {}
    providers_by_id: dict[int, ProviderEntry] = {}
    for row in rows["providers"]:
        adapter = REGISTRY.get(row["kind"])
        if adapter is None or not row["is_active"]:
            continue
        # Keys of weight 0 are never chosen by weight, but may be pinned.
        provider_keys = tuple(keys_by_provider.get(row["id"], ()))
        entry = ProviderEntry(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            base_url=row["base_url"].rstrip("/"),
            adapter=adapter,
            keys=provider_keys,
            cumulative_weights=tuple(itertools.accumulate(k.weight for k in provider_keys)),
            options=row.get("options") or {},
            timeouts=Timeouts.of(row.get("options") or {}),
        )
        providers[entry.name] = entry
        providers_by_id[entry.id] = entry
    routes = {
        row["name"]: RouteEntry(
            name=row["name"],
            provider=providers_by_id[row["provider_id"]],
            provider_model=row["provider_model"],
            fallbacks=tuple(row.get("fallbacks") or ()),
        )
        for row in rows["routes"]
        if row["provider_id"] in providers_by_id
    }
    default_team = rows.get("default_team")
    anonymous = (
        KeyEntry(
            id=0,
            name="anonymous",
            prefix="",
            secret_hash="",
            is_active=True,
            expires_at=None,
            team_id=default_team["id"],
            team_name=default_team["name"],
            customer_id=default_team["customer_id"],
            customer_name=default_team["customer__name"],
            store_content=bool(default_team.get("store_content")),
        )
        if default_team
        else None
    )
    snapshot = Snapshot(
        guardrail_policies=_guardrail_policies(rows.get("guardrail_policies", ())),
        anonymous=anonymous,
        policies=policies_from_rows(rows.get("policies", {})),
        prices=prices_from_rows(rows.get("prices", {})),
        revision=rows["revision"],
        keys_by_prefix={
            prefix: entry
            for row in rows["virtual_keys"]
            for prefix, entry in KeyEntry.entries_from_row(row).items()
        },
        providers=providers,
        routes=routes,
        built_at=time.time(),
    )
    if snapshot.guardrail_policies:
        # Resolved here, off the request path.
        for key in (*snapshot.keys_by_prefix.values(), anonymous):
            if key is not None:
                snapshot.guardrails(key)
    return snapshot


def _guardrail_policies(
    rows: Any,
) -> dict[tuple[str, int], tuple[PolicyRow, ...]]:
    by_scope: dict[tuple[str, int], list[PolicyRow]] = {}
    for row in rows:
        if row["customer_id"]:
            scope = ("customer", row["customer_id"])
        elif row["team_id"]:
            scope = ("team", row["team_id"])
        elif row["virtual_key_id"]:
            scope = ("key", row["virtual_key_id"])
        else:
            scope = ("global", 0)
        try:
            policy = PolicyRow.from_row(row)
        except (KeyError, ValueError):
            # Written around the services' validation: skipped, not fatal.
            logger.warning("guardrail policy %s is invalid; ignored", row.get("id"))
            continue
        by_scope.setdefault(scope, []).append(policy)
    return {scope: tuple(policies) for scope, policies in by_scope.items()}


def _all_rows() -> dict[str, Any]:
    return {**selectors.snapshot_rows(), **governance_selectors.snapshot_rows()}


class SnapshotStore:
    """Holds the current snapshot of this process and keeps it fresh."""

    def __init__(self) -> None:
        self.current: Snapshot = EMPTY
        self.loaded = False
        self._unknown_until: dict[str, float] = {}
        self._late_keys: dict[str, KeyEntry] = {}
        self._lookup_second = 0
        self._lookups = 0
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    # --- loading ---------------------------------------------------------

    async def load(self) -> Snapshot:
        """Rebuild from the database (runs in a worker thread)."""
        rows = await database_sync_to_async(_all_rows)()
        snapshot = build_snapshot(rows)
        withdrawn = addresses.allow_private_hosts(
            addresses.host_of(row["base_url"])
            for row in rows["providers"]
            if row.get("allow_private_network")
        )
        if withdrawn:
            # A kept-alive connection skips the connect-time address check.
            upstream.close_idle_to(withdrawn)
        self.current = snapshot
        self.loaded = True
        self._unknown_until.clear()
        self._late_keys.clear()
        logger.info(
            "configuration snapshot %s loaded: %d keys, %d providers, %d routes",
            snapshot.revision,
            len(snapshot.keys_by_prefix),
            len(snapshot.providers),
            len(snapshot.routes),
        )
        return snapshot

    async def ensure_loaded(self) -> Snapshot:
        if not self.loaded:
            async with self._lock:
                if not self.loaded:
                    await self.load()
        return self.current

    async def refresh_if_changed(self) -> None:
        revision = await database_sync_to_async(selectors.config_revision)()
        if revision != self.current.revision or not self.loaded:
            async with self._lock:
                await self.load()

    # --- keys --------------------------------------------------------------

    async def find_key(self, prefix: str) -> KeyEntry | None:
        """The key with this prefix; asks the database once on a miss."""
        entry = self.current.keys_by_prefix.get(prefix) or self._late_keys.get(prefix)
        if entry is not None:
            return entry
        now = time.monotonic()
        if self._unknown_until.get(prefix, 0.0) > now:
            return None
        # Keys created since the snapshot are rare (a change reloads it); a
        # flood of unknown prefixes must not become a flood of queries.
        second = int(now)
        if second != self._lookup_second:
            self._lookup_second, self._lookups = second, 0
        if self._lookups >= settings.GATEWAY_KEY_LOOKUPS_PER_SECOND:
            metrics.count("gateway_key_lookups", ("deferred",))
            return None
        self._lookups += 1
        try:
            row = await database_sync_to_async(selectors.virtual_key_row_by_prefix)(prefix)
        except DatabaseError:
            # The database is away: the snapshot decides (the key is unknown
            # to it), and the miss is cached like any other so that an
            # outage costs no connection attempt per request.
            logger.warning("database unavailable: key %s… checked against the snapshot", prefix)
            metrics.count("gateway_key_lookups", ("failed",))
            row = None
        else:
            metrics.count("gateway_key_lookups", ("unknown" if row is None else "found",))
        if row is None:
            if len(self._unknown_until) > 100_000:
                self._unknown_until.clear()
            self._unknown_until[prefix] = now + settings.GATEWAY_NEGATIVE_CACHE_SECONDS
            return None
        entries = KeyEntry.entries_from_row(row)
        self._late_keys.update(entries)
        return entries.get(prefix)

    # --- background refresh ----------------------------------------------------

    def start(self) -> None:
        """Start watching for configuration changes (call inside the event loop)."""
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._poll(), name="snapshot-poll"))
        if settings.REDIS_URL:
            self._tasks.append(asyncio.create_task(self._listen(), name="snapshot-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(settings.GATEWAY_SNAPSHOT_POLL_SECONDS)
            try:
                await self.refresh_if_changed()
            except Exception:  # keep serving from the last good snapshot
                logger.warning(
                    "configuration refresh failed; serving the last snapshot", exc_info=True
                )

    async def _listen(self) -> None:
        from gateway_project.redis_client import CONFIG_CHANNEL, follow

        async def changed(raw: bytes) -> None:
            if raw.decode() != self.current.revision:
                async with self._lock:
                    await self.load()

        await follow(CONFIG_CHANNEL, changed, what="configuration notifications")


store = SnapshotStore()
