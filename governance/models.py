"""Policy and money: budgets, rate limits and prices.

Money is integer micro-units of the account currency (1 USD = 1,000,000),
never float. Budgets and limits attach to exactly one level of the org tree.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from governance import guardrails
from keys.models import Customer, Team, TimestampedModel, VirtualKey

MICROS = 1_000_000


class ScopedModel(TimestampedModel):
    """Attached to exactly one of a customer, a team or a virtual key."""

    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.CASCADE)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE)
    virtual_key = models.ForeignKey(VirtualKey, null=True, blank=True, on_delete=models.CASCADE)

    class Meta:
        abstract = True

    @property
    def scope(self) -> tuple[str, int]:
        if self.customer_id:
            return "customer", self.customer_id
        if self.team_id:
            return "team", self.team_id
        return "key", self.virtual_key_id

    @property
    def scope_label(self) -> str:
        owner = self.customer or self.team or self.virtual_key
        return f"{self.scope[0]} {getattr(owner, 'name', owner)}"


def one_scope_constraint(name: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=(
            Q(customer__isnull=False, team__isnull=True, virtual_key__isnull=True)
            | Q(customer__isnull=True, team__isnull=False, virtual_key__isnull=True)
            | Q(customer__isnull=True, team__isnull=True, virtual_key__isnull=False)
        ),
        name=name,
    )


class BudgetPeriod(models.TextChoices):
    MINUTE = "1m", "per minute"
    HOUR = "1h", "per hour"
    DAY = "1d", "per day"
    WEEK = "1w", "per week"
    MONTH = "1M", "per month"
    QUARTER = "1Q", "per quarter"
    YEAR = "1Y", "per year"


class Budget(ScopedModel):
    """A spending cap over a recurring period."""

    amount_micros = models.BigIntegerField(validators=[MinValueValidator(0)])
    period = models.CharField(max_length=2, choices=BudgetPeriod.choices)
    # Calendar periods start at the top of the minute/hour/day, on Monday, on
    # the 1st...; rolling periods start at the budget's anchor.
    calendar_aligned = models.BooleanField(default=True)
    anchor = models.DateTimeField(help_text="start of the first rolling period")

    class Meta:
        constraints = [one_scope_constraint("budget_one_scope")]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.scope_label}: {self.amount_micros / MICROS:.2f} {self.get_period_display()}"


class LimitMetric(models.TextChoices):
    REQUESTS = "requests", "requests"
    TOKENS = "tokens", "tokens"


class RateLimit(ScopedModel):
    """At most ``limit`` requests (or tokens) per window of ``window_seconds``."""

    metric = models.CharField(max_length=10, choices=LimitMetric.choices)
    limit = models.PositiveBigIntegerField()
    window_seconds = models.PositiveIntegerField(default=60, validators=[MinValueValidator(1)])

    class Meta:
        constraints = [one_scope_constraint("rate_limit_one_scope")]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.scope_label}: {self.limit} {self.metric} / {self.window_seconds}s"


class ModelPrice(TimestampedModel):
    """What a provider charges for a model, per million tokens, from a date."""

    provider_kind = models.CharField(
        max_length=32, help_text="the provider's kind, or a provider's name for a specific one"
    )
    model = models.CharField(max_length=200)
    input_micros_per_mtok = models.BigIntegerField(validators=[MinValueValidator(0)])
    output_micros_per_mtok = models.BigIntegerField(validators=[MinValueValidator(0)])
    cached_input_micros_per_mtok = models.BigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(0)]
    )
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    effective_from = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider_kind", "model", "effective_from"], name="model_price_unique"
            )
        ]
        ordering = ["provider_kind", "model", "-effective_from"]

    def __str__(self) -> str:
        return f"{self.provider_kind}/{self.model} from {self.effective_from:%Y-%m-%d}"


class GuardrailDirection(models.TextChoices):
    REQUEST = guardrails.REQUEST, "requests"
    RESPONSE = guardrails.RESPONSE, "responses"
    BOTH = guardrails.BOTH, "requests and responses"


class GuardrailPolicy(ScopedModel):
    """Which detectors run on requests and/or responses, and what each one does.

    Global when attached to no customer, team or key. Every policy that
    applies to a request is in force (global, its customer's, its team's, its
    key's); see ``governance.guardrails`` for how they combine.
    """

    name = models.CharField(max_length=100)
    direction = models.CharField(
        max_length=8, choices=GuardrailDirection.choices, default=GuardrailDirection.BOTH
    )
    detectors = models.JSONField(
        default=dict,
        blank=True,
        help_text='detector or category ("secrets", "personal_data") → block, redact or flag',
    )
    deny_patterns = models.JSONField(
        default=list, blank=True, help_text="[{name, pattern, action}]: custom regular expressions"
    )
    allow_patterns = models.JSONField(
        default=list,
        blank=True,
        help_text="regular expressions; a match that one of them matches whole is not a finding",
    )
    max_input_tokens = models.PositiveIntegerField(null=True, blank=True)
    max_messages = models.PositiveIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(customer__isnull=True, team__isnull=True)
                    | Q(customer__isnull=True, virtual_key__isnull=True)
                    | Q(team__isnull=True, virtual_key__isnull=True)
                ),
                name="guardrail_policy_at_most_one_scope",
            )
        ]
        ordering = ["id"]

    @property
    def scope(self) -> tuple[str, int]:
        if not (self.customer_id or self.team_id or self.virtual_key_id):
            return "global", 0
        return super().scope

    @property
    def scope_label(self) -> str:
        return "global" if self.scope[0] == "global" else super().scope_label

    def clean(self) -> None:
        super().clean()
        errors = guardrails.validate_rules(self.detectors, self.deny_patterns, self.allow_patterns)
        if errors:
            raise ValidationError(errors)

    def __str__(self) -> str:
        return f"{self.name} ({self.scope_label}, {self.direction})"


class RequestRecord(models.Model):
    """One inference request, as the data plane saw it: the usage ledger.

    Written in batches off the request path (``governance.ledger``); ids of
    keys, teams and customers are plain integers so that the ledger outlives
    what it refers to and inserts need no lookups.
    """

    request_id = models.CharField(max_length=32, unique=True)
    client_request_id = models.CharField(max_length=128, blank=True)
    time = models.DateTimeField(db_index=True)
    key_id = models.BigIntegerField(null=True, blank=True)
    team_id = models.BigIntegerField(null=True, blank=True)
    customer_id = models.BigIntegerField(null=True, blank=True)
    requested_model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=63, blank=True)
    served_model = models.CharField(max_length=200, blank=True)
    status = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    cost_micros = models.BigIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    upstream_ms = models.PositiveIntegerField(null=True, blank=True)
    retries = models.PositiveSmallIntegerField(default=0)
    fallback_index = models.PositiveSmallIntegerField(default=0)
    stream = models.BooleanField(default=False)
    cache_hit = models.BooleanField(default=False)
    # Guardrail rules that fired: "<direction>:<action>:<rule>", e.g. "request:flag:email".
    guardrail_flags = models.JSONField(default=list, blank=True)
    client_disconnected = models.BooleanField(default=False)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)
    # Only for teams that opted in (``governance.content``): the messages and
    # the answer's text, redacted. Null otherwise; lists leave it out.
    content = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-time"]
        indexes = [
            models.Index(fields=["key_id", "time"], name="record_key_time"),
            models.Index(fields=["team_id", "time"], name="record_team_time"),
            models.Index(fields=["customer_id", "time"], name="record_customer_time"),
            models.Index(fields=["provider", "served_model", "time"], name="record_model_time"),
            models.Index(fields=["status", "time"], name="record_status_time"),
            # The request log's model filter matches either name (docs/ledger.md).
            models.Index(fields=["requested_model", "time"], name="record_requested_time"),
            models.Index(fields=["served_model", "time"], name="record_served_time"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.status}"


class RollupGranularity(models.TextChoices):
    HOUR = "hour", "hourly"
    DAY = "day", "daily"


class RollupDimension(models.TextChoices):
    TEAM = "team", "the team as a whole"
    KEY = "key", "per key"
    CUSTOMER = "customer", "per customer"
    PROVIDER = "provider", "per provider"
    MODEL = "model", "per model (served, or asked for when none served)"


class UsageRollup(models.Model):
    """The request log summed over one hour or one UTC day, per team and one dimension.

    For each bucket and team, one row per value of each dimension: the team
    as a whole (``value`` empty), each of its keys, its customer, each
    provider and each model. A series filtered by team and split (or
    filtered) by one other dimension adds rows of that dimension up; other
    combinations read the request log (``governance.api.filters``). Written
    only by ``governance.rollups``; latencies are mergeable histograms.
    """

    granularity = models.CharField(max_length=4, choices=RollupGranularity.choices)
    bucket = models.DateTimeField()
    team_id = models.BigIntegerField(null=True, blank=True)
    dimension = models.CharField(max_length=8, choices=RollupDimension.choices)
    value = models.CharField(max_length=200, blank=True, help_text="an id or a name")
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    latency_ms_total = models.BigIntegerField(default=0)
    # [first bin, its count, the next bin's count, ...]; see governance.rollups.
    latency_histogram = models.JSONField(default=list)
    ttft_histogram = models.JSONField(default=list)

    class Meta:
        ordering = ["granularity", "bucket"]
        indexes = [
            models.Index(fields=["granularity", "bucket"], name="rollup_bucket"),
            models.Index(
                fields=["granularity", "dimension", "bucket"], name="rollup_dimension_bucket"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket:%Y-%m-%d %H:00} {self.dimension} {self.value}"


class JobCursor(models.Model):
    """How far a periodic job has got (e.g. the last request record rolled up)."""

    name = models.CharField(max_length=64, unique=True)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.position}"


class Reconciliation(models.TextChoices):
    MATCHED = "matched", "matched"
    MISMATCH = "mismatch", "mismatch"
    NO_COUNTER = "no_counter", "counter unavailable"


class BudgetPeriodHistory(models.Model):
    """A finished budget period: its limit, what was spent, and how the two views agreed.

    ``spent_micros`` is the request log's sum of costs in the period (the
    database is the source of truth); ``counter_micros`` is the live
    counter's final value (Redis in cluster mode, process memory embedded),
    ``None`` when it was no longer available. Written once by the closing
    job (``governance.services.budget_period_close``), never rewritten.
    """

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="history")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    limit_micros = models.BigIntegerField()
    spent_micros = models.BigIntegerField()
    counter_micros = models.BigIntegerField(null=True, blank=True)
    reconciliation = models.CharField(max_length=10, choices=Reconciliation.choices)
    requests = models.BigIntegerField(default=0)
    closed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_start", "budget_id"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "period_start"], name="budget_period_once")
        ]

    def __str__(self) -> str:
        return f"budget {self.budget_id} {self.period_start:%Y-%m-%d %H:%M}: {self.spent_micros}"

    @property
    def difference_micros(self) -> int | None:
        """Counter minus records (positive: the counter holds more than was recorded)."""
        return None if self.counter_micros is None else self.counter_micros - self.spent_micros
