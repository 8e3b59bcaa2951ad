"""Who may see and change what: one set of rules for the console and the REST API.

Roles (``keys.models.OperatorRole``) are held through ``RoleAssignment`` rows;
Django superusers are admins without one. An operator's rights are the union
of their roles:

- **admin**: everything.
- **team manager** (of given teams): reads those teams; reads and changes the
  virtual keys, budgets and rate limits of those teams and of their keys;
  reads the request log of those teams; reads the model catalogue (routes
  and prices), which they need to choose allowed models.
- **viewer**: reads everything (secrets excepted, as for everyone), changes
  nothing.
- **auditor**: reads the audit trail, nothing else.

A read-only API token narrows its operator's rights to reads.

How a view uses it (the same in the console and the API)::

    access = request_access(request)
    if not access.can_view(VirtualKey):          # the whole kind is off limits
        raise PermissionDenied                   # -> 403
    keys = access.scope(VirtualKey.objects.all())  # only the rows they may see
    key = get_object_or_404(keys, pk=pk)         # another team's key -> 404
    if not access.can_change(key):               # seen, but not theirs to change
        raise PermissionDenied                   # -> 403
    if not access.can_create(VirtualKey, owner=team):  # a new key for ``team``
        raise PermissionDenied

Models are named by their label (``governance.budget``), so this module
imports no other app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Model, Q, QuerySet

from keys.models import OperatorRole, RoleAssignment, Team

# Team managers read these, limited to their teams ...
TEAM_SCOPED = frozenset(
    {
        "keys.team",
        "keys.virtualkey",
        "governance.budget",
        "governance.ratelimit",
        "governance.requestrecord",
        "governance.usagerollup",
        "governance.budgetperiodhistory",
    }
)
# ... and change these (within their teams).
TEAM_WRITABLE = frozenset({"keys.virtualkey", "governance.budget", "governance.ratelimit"})
# Read by team managers whole: what models exist and what they cost.
CATALOGUE = frozenset({"keys.modelroute", "governance.modelprice"})
AUDIT_TRAIL = frozenset({"audit.auditevent"})
# Fields of kinds team managers may change that only admins may set. A key's
# content choice overrides its team's, which only admins may change either.
ADMIN_ONLY_FIELDS: dict[str, frozenset[str]] = {
    "keys.virtualkey": frozenset({"may_pin_provider_keys", "store_content"}),
}

# How a row of each team-scoped kind leads to its team (lookups, OR-ed).
_TEAM_LOOKUPS: dict[str, tuple[str, ...]] = {
    "keys.team": ("id",),
    "keys.virtualkey": ("team_id",),
    "governance.budget": ("team_id", "virtual_key__team_id"),
    "governance.ratelimit": ("team_id", "virtual_key__team_id"),
    "governance.requestrecord": ("team_id",),
    "governance.usagerollup": ("team_id",),
    "governance.budgetperiodhistory": ("budget__team_id", "budget__virtual_key__team_id"),
}


def _label(model: type[Model] | Model) -> str:
    return model._meta.label_lower


def team_of(obj: Model) -> int | None:
    """The id of the team ``obj`` belongs to for access purposes, or None.

    Teams are their own; keys belong to their team; budgets and limits to the
    team they attach to, or to the team of the key they attach to (those of
    a customer belong to no team).
    """
    label = _label(obj)
    if label == "keys.team":
        return obj.pk
    team_id = getattr(obj, "team_id", None)
    if team_id is None and getattr(obj, "virtual_key_id", None) is not None:
        team_id = obj.virtual_key.team_id
    return team_id


@dataclass(frozen=True)
class Access:
    """The rights of one operator, computed once (one query) per request."""

    is_admin: bool = False
    is_viewer: bool = False
    is_auditor: bool = False
    managed_team_ids: frozenset[int] = frozenset()
    read_only: bool = False

    @property
    def is_operator(self) -> bool:
        """Holds any role at all (others see nothing)."""
        return self.is_admin or self.is_viewer or self.is_auditor or bool(self.managed_team_ids)

    @property
    def sees_everything(self) -> bool:
        return self.is_admin or self.is_viewer

    def can_view(self, model: type[Model] | Model) -> bool:
        """May read some objects of ``model`` (then ``scope`` says which)."""
        label = _label(model)
        if label in AUDIT_TRAIL:
            return self.sees_everything or self.is_auditor
        if self.sees_everything:
            return True
        return bool(self.managed_team_ids) and (label in TEAM_SCOPED or label in CATALOGUE)

    def can_write(self, model: type[Model] | Model) -> bool:
        """May change or create some objects of ``model`` (then ``can_change`` says which)."""
        if self.read_only or _label(model) in AUDIT_TRAIL:
            return False
        return self.is_admin or (bool(self.managed_team_ids) and _label(model) in TEAM_WRITABLE)

    def scope(self, queryset: QuerySet) -> QuerySet:
        """The rows of ``queryset`` this operator may see (none if not the kind at all)."""
        label = _label(queryset.model)
        if not self.can_view(queryset.model):
            return queryset.none()
        if self.sees_everything or label in CATALOGUE or label in AUDIT_TRAIL:
            return queryset
        condition = Q()
        for lookup in _TEAM_LOOKUPS[label]:
            condition |= Q(**{f"{lookup}__in": self.managed_team_ids})
        return queryset.filter(condition)

    def visible_teams(self) -> QuerySet[Team]:
        return self.scope(Team.objects.all())

    def fixed_fields(self, model: type[Model] | Model) -> frozenset[str]:
        """Fields of ``model`` this operator may see but not set."""
        if self.is_admin:
            return frozenset()
        return ADMIN_ONLY_FIELDS.get(_label(model), frozenset())

    def can_change(self, obj: Model) -> bool:
        """May update, delete, revoke or rotate ``obj`` (which they can see)."""
        if not self.can_write(obj):
            return False
        return self.is_admin or team_of(obj) in self.managed_team_ids

    def can_create(self, model: type[Model], owner: Model | None = None) -> bool:
        """May create a ``model`` attached to ``owner`` (a team or key; None for none)."""
        if not self.can_write(model):
            return False
        if self.is_admin:
            return True
        return owner is not None and team_of(owner) in self.managed_team_ids


NO_ACCESS = Access()


def operator_access(user: Any, *, read_only: bool = False) -> Access:
    """The rights of ``user`` (one query), narrowed to reads when ``read_only``."""
    if user is None or not user.is_authenticated or not user.is_active:
        return NO_ACCESS
    if user.is_superuser:
        return Access(is_admin=True, read_only=read_only)
    roles: set[str] = set()
    teams: set[int] = set()
    for role, team_id in RoleAssignment.objects.filter(user=user).values_list("role", "team_id"):
        roles.add(role)
        if role == OperatorRole.TEAM_MANAGER:
            teams.add(team_id)
    return Access(
        is_admin=OperatorRole.ADMIN in roles,
        is_viewer=OperatorRole.VIEWER in roles,
        is_auditor=OperatorRole.AUDITOR in roles,
        managed_team_ids=frozenset(teams),
        read_only=read_only,
    )


def request_access(request: Any) -> Access:
    """The rights of the operator behind ``request``, computed once per request.

    Works with Django's and DRF's requests; a request authenticated by a
    read-only API token (``request.auth``) gets read-only rights.
    """
    cached = getattr(request, "_operator_access", None)
    if cached is None:
        token = getattr(request, "auth", None)
        cached = operator_access(request.user, read_only=bool(getattr(token, "read_only", False)))
        request._operator_access = cached
    return cached
