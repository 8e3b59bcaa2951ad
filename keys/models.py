"""Identities and credentials: customers, teams, virtual keys, providers.

Rows are written only through ``keys.services``; the data plane never reads
them directly but through the in-process snapshot (``proxy.snapshot``).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from keys import tokens

slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9._-]{0,62}$",
    "Use 1 to 63 lowercase letters, digits, dots, dashes or underscores.",
)
model_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$",
    "Use letters, digits and . _ : / @ + - (at most 200 characters).",
)


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


def validate_model_patterns(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise ValidationError("Give a list of model names or patterns such as gpt-4o* or openai/*.")


def validate_networks(value: object) -> None:
    if not isinstance(value, list):
        raise ValidationError("Give a list of addresses or networks such as 10.0.0.0/8.")
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError):
            raise ValidationError(f"{item!r} is not an IP address or network.") from None


# The longest a cached answer may be kept (30 days).
CACHE_TTL_MAX_SECONDS = 30 * 24 * 3600


class PolicyFields(models.Model):
    """Access rules every level of the org tree can carry (customer, team, key).

    A request must satisfy the rules of its key, its team and its customer.
    """

    # Model names or patterns (``gpt-4o*``, ``openai/*``); empty allows all.
    allowed_models = models.JSONField(
        default=list, blank=True, validators=[validate_model_patterns]
    )
    max_concurrent_requests = models.PositiveIntegerField(null=True, blank=True)
    # The response cache (``proxy.cache``): how long answers are kept, in
    # seconds; 0 turns it off here, empty inherits (key ← team ← customer).
    # Off unless some level opts in.
    cache_ttl_seconds = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(CACHE_TTL_MAX_SECONDS)]
    )

    class Meta:
        abstract = True


class Customer(TimestampedModel, PolicyFields):
    """The top of the org tree: a business unit or a client that is billed."""

    name = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    description = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # The response cache's entries are shared by the customer's teams (those
    # with the cache on) instead of kept per team.
    cache_shared_across_teams = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Team(TimestampedModel, PolicyFields):
    """A group of virtual keys that share a policy, optionally under a customer."""

    name = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="teams"
    )
    description = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Off unless the team opts in: the request log then keeps each request's
    # messages and answer text, redacted (``governance.content``).
    store_content = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class StoreContent(models.TextChoices):
    """A virtual key's choice about message content, over its team's (``Team.store_content``)."""

    INHERIT = "inherit", "As the team"
    ON = "on", "Keep"
    OFF = "off", "Do not keep"


def keeps_content(choice: str, team_keeps: bool) -> bool:
    """Whether a key with ``choice`` keeps message content in a team that does or not."""
    if choice == StoreContent.INHERIT:
        return team_keeps
    return choice == StoreContent.ON


class VirtualKey(TimestampedModel, PolicyFields):
    """A credential applications use instead of a provider key.

    Only ``prefix`` (public) and ``secret_hash`` are stored; the secret is
    shown once, when the key is created.
    """

    # Unique within its team only: a team manager creating a key learns
    # nothing about the names other teams use.
    name = models.CharField(max_length=100, validators=[slug_validator])
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="virtual_keys")
    prefix = models.CharField(max_length=tokens.PREFIX_LENGTH, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    # For keys declared in the configuration file with their secret in an
    # environment variable: the variable's name, never its value.
    secret_env = models.CharField(max_length=100, blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Client addresses or networks (CIDR) the key may be used from; empty: any.
    allowed_ips = models.JSONField(default=list, blank=True, validators=[validate_networks])
    # After a rotation the previous secret keeps working until this moment.
    previous_prefix = models.CharField(max_length=tokens.PREFIX_LENGTH, blank=True, editable=False)
    previous_secret_hash = models.CharField(max_length=64, blank=True, editable=False)
    previous_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    # For debugging: requests with this key may name the provider key that
    # serves them (x-gateway-provider-key). Only admins may grant it.
    may_pin_provider_keys = models.BooleanField(default=False)
    # Overrides the team's content opt-in for this key: a team that keeps
    # content can leave one key out (HR data), one that does not can opt one
    # key in (debugging).
    store_content = models.CharField(
        max_length=7, choices=StoreContent.choices, default=StoreContent.INHERIT
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "virtual key"
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="virtual_key_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{tokens.KEY_SCHEME}{self.prefix}…"

    @property
    def keeps_content(self) -> bool:
        """Whether requests with this key keep message content (its own choice or its team's)."""
        return keeps_content(self.store_content, self.team.store_content)

    @property
    def content_choice_summary(self) -> str:
        """The effective choice and where it comes from, for operators: "inherits: on (team)"."""
        state = "on" if self.keeps_content else "off"
        if self.store_content == StoreContent.INHERIT:
            return f"inherits: {state} (team)"
        return f"{state} (this key; the team's is {'on' if self.team.store_content else 'off'})"


class ProviderKind(models.TextChoices):
    """Wire formats the gateway speaks to upstreams (one adapter each)."""

    OPENAI = "openai", "OpenAI (and OpenAI-compatible)"
    AZURE = "azure", "Azure OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    GEMINI = "gemini", "Google Gemini"
    BEDROCK = "bedrock", "AWS Bedrock (Converse)"
    COHERE = "cohere", "Cohere"


class Provider(TimestampedModel):
    """An upstream: its wire format and where it lives."""

    name = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    base_url = models.URLField(max_length=500)
    # Settings of the provider's kind, e.g. Azure's ``api_version`` or
    # Bedrock's ``region`` (see each adapter's ``OPTIONS``).
    options = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    # A base URL in a private, loopback or link-local network is refused
    # unless an admin allows it here (self-hosted models; keys.addresses).
    allow_private_network = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from keys.addresses import private_address_problem
        from proxy.providers import REGISTRY
        from proxy.timeouts import TIMEOUT_OPTIONS, option_problem

        if not self.allow_private_network and self.base_url:
            problem = private_address_problem(self.base_url)
            if problem:
                raise ValidationError(
                    {
                        "base_url": f"This base URL points into a private network ({problem}); "
                        "an admin must allow private networks for this provider."
                    }
                )

        adapter = REGISTRY.get(self.kind)
        known = {
            **TIMEOUT_OPTIONS,
            **(getattr(adapter, "options", {}) if adapter is not None else {}),
        }
        if not isinstance(self.options, dict):
            raise ValidationError({"options": "Options must be a mapping of names to values."})
        for name, value in self.options.items():
            if name not in known:
                allowed = ", ".join(sorted(known)) or "none"
                raise ValidationError(
                    {"options": f"Unknown option '{name}' for {self.kind} (allowed: {allowed})."}
                )
            if not isinstance(value, str) or not value:
                raise ValidationError({"options": f"Option '{name}' must be a non-empty string."})
            problem = option_problem(name, value) if name in TIMEOUT_OPTIONS else None
            if problem:
                raise ValidationError({"options": problem})


class ProviderKey(TimestampedModel):
    """An API key of a provider, encrypted at rest (``keys.crypto``)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=63, validators=[slug_validator])
    encrypted_secret = models.TextField(editable=False)
    last_four = models.CharField(max_length=4, editable=False)
    # When the key comes from the configuration file: the environment
    # variable holding it, so that an export can refer to it again.
    secret_env = models.CharField(max_length=100, blank=True)
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(0)])
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["provider__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "name"], name="provider_key_unique_name")
        ]
        verbose_name = "provider key"

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.name} (…{self.last_four})"


class ModelRoute(TimestampedModel):
    """A public model name and the provider model that serves it."""

    name = models.CharField(max_length=200, unique=True, validators=[model_name_validator])
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="routes")
    provider_model = models.CharField(max_length=200, validators=[model_name_validator])
    # Tried in order when the route's own deployment fails: route names or
    # ``provider/model`` addresses.
    fallbacks = models.JSONField(default=list, blank=True, validators=[validate_model_patterns])
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "model route"

    def __str__(self) -> str:
        return f"{self.name} → {self.provider.name}/{self.provider_model}"


class ConfigRevision(models.Model):
    """One row whose ``revision`` changes with every configuration change.

    Each gateway process compares it with its snapshot's revision to know
    when to rebuild (see ``proxy.snapshot``).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    revision = models.CharField(max_length=32)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.revision


# --- operators: roles and admin API tokens -------------------------------------


class OperatorRole(models.TextChoices):
    """What an operator may do in the console and the REST API (``keys.access``)."""

    ADMIN = "admin", "Admin (everything)"
    TEAM_MANAGER = "team_manager", "Team manager (keys, budgets, limits and logs of a team)"
    VIEWER = "viewer", "Viewer (read-only everywhere)"
    AUDITOR = "auditor", "Auditor (the audit trail only)"


class RoleAssignment(TimestampedModel):
    """One role of one operator; a team manager holds one assignment per team.

    An operator's rights are the union of their assignments (a viewer who
    also manages a team may change that team's keys). Django superusers are
    admins without an assignment.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="role_assignments"
    )
    role = models.CharField(max_length=16, choices=OperatorRole.choices)
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="role_assignments"
    )

    class Meta:
        ordering = ["user__username", "role", "team__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "role"],
                condition=Q(team__isnull=True),
                name="role_assignment_unique_role",
            ),
            models.UniqueConstraint(
                fields=["user", "team"],
                condition=Q(team__isnull=False),
                name="role_assignment_unique_team",
            ),
            models.CheckConstraint(
                condition=(Q(role="team_manager", team__isnull=False) | ~Q(role="team_manager"))
                & (Q(role="team_manager") | Q(team__isnull=True)),
                name="role_assignment_team_iff_manager",
            ),
        ]
        verbose_name = "role assignment"

    def __str__(self) -> str:
        who = self.user.get_username()
        return f"{who}: {self.role} of {self.team.name}" if self.team_id else f"{who}: {self.role}"

    def clean(self) -> None:
        if self.role == OperatorRole.TEAM_MANAGER and not self.team_id:
            raise ValidationError({"team": "A team manager manages a team: name it."})
        if self.role != OperatorRole.TEAM_MANAGER and self.team_id:
            raise ValidationError({"team": "Only team managers are assigned to a team."})


class ApiToken(TimestampedModel):
    """A credential for the REST API, acting as its operator (``user``).

    Like virtual keys, only a public prefix and a SHA-256 hash are kept; the
    secret is shown once. ``read_only`` narrows the operator's rights to
    reads. ``last_used_at`` is refreshed at most once a minute
    (``keys.api.authentication``) and is not audited.
    """

    name = models.CharField(max_length=100, unique=True, validators=[slug_validator])
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    prefix = models.CharField(max_length=tokens.PREFIX_LENGTH, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    read_only = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{tokens.API_TOKEN_SCHEME}{self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
