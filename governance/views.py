"""The console's dashboard, request log, live traffic and its budget, limit and price pages.

Every page applies ``keys.access`` (see ``keys.console``): team managers see
their teams' usage only; changes go through ``governance.services``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from governance import services
from governance.api.filters import RequestRecordFilter, usage_points
from governance.forms import (
    GLOBAL_SCOPE,
    RANGES,
    BudgetForm,
    GuardrailPolicyForm,
    ModelPriceForm,
    RateLimitForm,
    RequestLogFilterForm,
    UsageFilterForm,
    record_filter_data,
)
from governance.models import (
    Budget,
    GuardrailPolicy,
    ModelPrice,
    RateLimit,
    RequestRecord,
    UsageRollup,
)
from governance.selectors import (
    budget_spend_list,
    request_log_page,
    usage_group_labels,
)
from keys.access import Access, request_access
from keys.console import Column, Resource, console_view, visible_object
from keys.models import Team, VirtualKey

# --- the dashboard ------------------------------------------------------------------


def _buckets(since: dt.datetime, until: dt.datetime, step: dt.timedelta) -> list[dt.datetime]:
    if step == dt.timedelta(hours=1):
        first = since.replace(minute=0, second=0, microsecond=0)
    else:
        first = since.replace(hour=0, minute=0, second=0, microsecond=0)
    buckets = []
    moment = first
    while moment < until:
        buckets.append(moment)
        moment += step
    return buckets


def _chart_data(points: list[Any], buckets: list[dt.datetime], labels: dict[Any, str]) -> Any:
    """Series for the charts: one per group, a value (or None) for every bucket."""
    by_group: dict[Any, dict[dt.datetime, Any]] = {}
    for point in points:
        by_group.setdefault(point.group, {})[point.bucket] = point
    series = []
    for group, by_bucket in by_group.items():
        cells = [by_bucket.get(bucket) for bucket in buckets]
        series.append(
            {
                "name": labels.get(group, "all") if group is not None else "all",
                "requests": [p.requests if p else 0 for p in cells],
                "tokens": [p.total_tokens if p else 0 for p in cells],
                "spend": [p.cost_micros / 1_000_000 if p else 0 for p in cells],
                "error_rate": [round(100 * p.errors / p.requests, 2) if p else None for p in cells],
                "p50": [p.latency_p50_ms if p else None for p in cells],
                "p95": [p.latency_p95_ms if p else None for p in cells],
            }
        )
    step_format = (
        "%m-%d %H:00"
        if len(buckets) < 2 or buckets[1] - buckets[0] < dt.timedelta(days=1)
        else "%Y-%m-%d"
    )
    return {"labels": [b.strftime(step_format) for b in buckets], "series": series}


def _filter_data(form: UsageFilterForm) -> dict[str, str] | None:
    """The request log's filter query for ``form`` (None if it is invalid)."""
    if not form.is_bound:
        return {}
    if not form.is_valid():
        return None
    values = {k: v for k, v in form.cleaned_data.items() if k not in ("range", "group_by")}
    return record_filter_data(values)


def _filtered(access: Access, form: UsageFilterForm) -> QuerySet[RequestRecord]:
    """The request log ``access`` may read, narrowed by ``form`` (nothing if it is invalid).

    The narrowing is the REST API's own filter set, so both faces agree.
    """
    records = access.scope(RequestRecord.objects.all())
    data = _filter_data(form)
    if data is None:
        return records.none()
    return RequestRecordFilter(data=data, queryset=records).qs if data else records


@console_view(RequestRecord)
def dashboard(request: HttpRequest, access: Access) -> HttpResponse:
    """Usage charts from the rollups (whole hours up to now), the latest requests from the log."""
    form = UsageFilterForm(request.GET or None, access=access)
    hours = RANGES.get(request.GET.get("range") or "24h", 24)
    group_by = (form.cleaned_data.get("group_by") if form.is_valid() else "") or None
    until = timezone.now()
    step = dt.timedelta(hours=1) if hours <= 48 else dt.timedelta(days=1)
    # Whole hours, or whole UTC days for the longer ranges: the rollups' own buckets.
    since = (until - dt.timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    if step == dt.timedelta(days=1):
        since = since.astimezone(dt.UTC).replace(hour=0)
    bucket = "hour" if step == dt.timedelta(hours=1) else "day"
    data = _filter_data(form)
    points: list[Any] = []
    total = None
    if data is not None:
        query = {**data, "since": since.isoformat()}
        sources = {
            "records": access.scope(RequestRecord.objects.all()),
            "rollups": access.scope(UsageRollup.objects.all()),
        }
        points, _ = usage_points(data=query, **sources, bucket=bucket, group_by=group_by)
        (total,) = usage_points(data=query, **sources, bucket=None, group_by=None)[0] or (None,)
    labels = usage_group_labels(group_by, {p.group for p in points}) if group_by else {}
    budgets = budget_spend_list(budgets=access.scope(Budget.objects.all()))
    return render(
        request,
        "console/dashboard.html",
        {
            "title": "Dashboard",
            "form": form,
            "chart": _chart_data(points, _buckets(since, until, step), labels),
            "total": total,
            "budgets": budgets,
            "recent": _with_names(
                request_log_page(records=_filtered(access, form), size=10).records
            ),
        },
    )


def home(request: HttpRequest) -> HttpResponse:
    """Where signing in lands: the dashboard, or the audit trail for auditors."""
    access = request_access(request)
    if not access.can_view(RequestRecord) and access.can_view(AuditEvent):
        return redirect("audit_console:trail")
    return dashboard(request)


# --- the request log ---------------------------------------------------------------


@console_view(RequestRecord)
def request_log(request: HttpRequest, access: Access) -> HttpResponse:
    form = RequestLogFilterForm(request.GET or None, access=access)
    records = _filtered(access, form)
    try:
        page = request_log_page(records=records, cursor=request.GET.get("cursor") or None)
    except ValueError:
        raise Http404("no such page") from None
    query = request.GET.copy()
    query.pop("cursor", None)
    if page.next_cursor:
        query["cursor"] = page.next_cursor
    return render(
        request,
        "console/request_log.html",
        {
            "title": "Request log",
            "form": form,
            "records": _with_names(page.records),
            "next_url": f"?{query.urlencode()}" if page.next_cursor else None,
            "first_url": reverse("governance:request_log")
            + (f"?{_without_cursor(request)}" if request.GET else ""),
            "paged": bool(request.GET.get("cursor")),
        },
    )


def _without_cursor(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("cursor", None)
    return query.urlencode()


def _with_names(records: list[RequestRecord]) -> list[RequestRecord]:
    """``records``, each given its ``key_name`` and ``team_name`` (two queries in all).

    The log keeps plain ids, so a deleted key shows its number.
    """
    keys = dict(
        VirtualKey.objects.filter(pk__in={r.key_id for r in records if r.key_id}).values_list(
            "pk", "name"
        )
    )
    teams = dict(
        Team.objects.filter(pk__in={r.team_id for r in records if r.team_id}).values_list(
            "pk", "name"
        )
    )
    for record in records:
        record.key_name = keys.get(record.key_id, record.key_id and f"#{record.key_id}")
        record.team_name = teams.get(record.team_id, record.team_id and f"#{record.team_id}")
    return records


@console_view(RequestRecord)
def request_detail(request: HttpRequest, access: Access, request_id: str) -> HttpResponse:
    record = visible_object(access, RequestRecord.objects.all(), request_id=request_id)
    _with_names([record])
    content = record.content
    return render(
        request,
        "console/request_detail.html",
        {
            "title": f"Request {record.request_id}",
            "record": record,
            "cost": services.micros_to_money(record.cost_micros),
            "content": content,
            "content_request": (
                json.dumps(content.get("request"), indent=2, ensure_ascii=False) if content else ""
            ),
            "content_limit": settings.GATEWAY_CONTENT_MAX_BYTES,
        },
    )


@console_view(RequestRecord)
def live(request: HttpRequest, access: Access) -> HttpResponse:
    return render(request, "console/live.html", {"title": "Live traffic"})


# --- budgets, rate limits, prices ----------------------------------------------------


def _owner_initial(obj: Any) -> str:
    kind, pk = obj.scope
    return f"{kind}:{pk}"


def _money(micros: int | None) -> str:
    return "—" if micros is None else services.micros_to_money(micros)


budgets = Resource(
    model=Budget,
    app="governance",
    slug="budgets",
    plural="Budgets",
    singular="budget",
    form=BudgetForm,
    columns=[
        Column("Applies to", lambda b: b.scope_label),
        Column("Amount", lambda b: _money(b.amount_micros)),
        Column("Period", lambda b: b.get_period_display()),
        Column("Calendar", lambda b: "yes" if b.calendar_aligned else "rolling"),
    ],
    queryset=lambda: Budget.objects.select_related("customer", "team", "virtual_key"),
    links=lambda obj: [("Finished periods", reverse("governance:budget_periods", args=[obj.pk]))],
    create=lambda form: services.budget_create(
        owner=form.cleaned_data["owner"],
        amount_micros=form.cleaned_data["amount_micros"],
        period=form.cleaned_data["period"],
        calendar_aligned=form.cleaned_data["calendar_aligned"],
    ),
    update=lambda obj, form: services.budget_update(
        budget=obj, amount_micros=form.cleaned_data["amount_micros"]
    ),
    delete=lambda obj: services.budget_delete(budget=obj),
    initial=lambda obj: {
        "owner": _owner_initial(obj),
        "amount_micros": obj.amount_micros,
        "period": obj.period,
        "calendar_aligned": obj.calendar_aligned,
    },
    owner=lambda form: form.cleaned_data["owner"],
    form_kwargs=lambda access: {"access": access},
    intro="Spend against each budget is on the dashboard.",
)

rate_limits = Resource(
    model=RateLimit,
    app="governance",
    slug="limits",
    plural="Rate limits",
    singular="rate limit",
    form=RateLimitForm,
    columns=[
        Column("Applies to", lambda r: r.scope_label),
        Column("Limit", lambda r: f"{r.limit} {r.metric}"),
        Column("Window", lambda r: f"{r.window_seconds} s"),
    ],
    queryset=lambda: RateLimit.objects.select_related("customer", "team", "virtual_key"),
    create=lambda form: services.rate_limit_create(
        owner=form.cleaned_data["owner"],
        metric=form.cleaned_data["metric"],
        limit=form.cleaned_data["limit"],
        window_seconds=form.cleaned_data["window_seconds"],
    ),
    update=lambda obj, form: services.rate_limit_update(
        rate_limit=obj, limit=form.cleaned_data["limit"]
    ),
    delete=lambda obj: services.rate_limit_delete(rate_limit=obj),
    initial=lambda obj: {
        "owner": _owner_initial(obj),
        "metric": obj.metric,
        "limit": obj.limit,
        "window_seconds": obj.window_seconds,
    },
    owner=lambda form: form.cleaned_data["owner"],
    form_kwargs=lambda access: {"access": access},
)


def _price_set(form: Any, **fixed: Any) -> ModelPrice:
    values = {**form.cleaned_data, **fixed}
    price, _ = services.model_price_set(**values)
    return price


prices = Resource(
    model=ModelPrice,
    app="governance",
    slug="prices",
    plural="Prices",
    singular="price",
    form=ModelPriceForm,
    columns=[
        Column("Provider", lambda p: p.provider_kind),
        Column("Model", lambda p: p.model),
        Column("Input / Mtok", lambda p: _money(p.input_micros_per_mtok)),
        Column("Cached / Mtok", lambda p: _money(p.cached_input_micros_per_mtok)),
        Column("Output / Mtok", lambda p: _money(p.output_micros_per_mtok)),
        Column("From", lambda p: f"{p.effective_from:%Y-%m-%d}"),
    ],
    create=lambda form: _price_set(form),
    update=lambda obj, form: _price_set(
        form,
        provider_kind=obj.provider_kind,
        model=obj.model,
        effective_from=obj.effective_from,
    ),
    delete=lambda obj: services.model_price_delete(price=obj),
    initial=lambda obj: {
        name: getattr(obj, name)
        for name in (
            "provider_kind",
            "model",
            "input_micros_per_mtok",
            "output_micros_per_mtok",
            "cached_input_micros_per_mtok",
            "max_output_tokens",
            "effective_from",
        )
    },
)


# --- guardrail policies ------------------------------------------------------------


def _guardrail_rules(form: Any) -> dict[str, Any]:
    return {
        name: form.cleaned_data[name]
        for name in services.GUARDRAIL_FIELDS
        if name in form.cleaned_data and name != "name"
    }


def _guardrail_summary(policy: GuardrailPolicy) -> str:
    rules = [f"{name}: {action}" for name, action in policy.detectors.items()]
    rules += [f"{item['name']}: {item.get('action', 'block')}" for item in policy.deny_patterns]
    if policy.max_input_tokens:
        rules.append(f"at most {policy.max_input_tokens} input tokens")
    if policy.max_messages:
        rules.append(f"at most {policy.max_messages} messages")
    return ", ".join(rules) or "—"


guardrails = Resource(
    model=GuardrailPolicy,
    app="governance",
    slug="guardrails",
    plural="Guardrail policies",
    singular="guardrail policy",
    form=GuardrailPolicyForm,
    columns=[
        Column("Name", lambda p: p.name),
        Column("Applies to", lambda p: p.scope_label),
        Column("Checks", lambda p: p.get_direction_display()),
        Column("Rules", _guardrail_summary),
        Column("Active", lambda p: "yes" if p.is_active else "no"),
    ],
    queryset=lambda: GuardrailPolicy.objects.select_related("customer", "team", "virtual_key"),
    create=lambda form: services.guardrail_policy_create(
        name=form.cleaned_data["name"], owner=form.cleaned_data["owner"], **_guardrail_rules(form)
    ),
    update=lambda obj, form: services.guardrail_policy_update(policy=obj, **_guardrail_rules(form)),
    delete=lambda obj: services.guardrail_policy_delete(policy=obj),
    initial=lambda obj: {
        "owner": GLOBAL_SCOPE if obj.scope[0] == "global" else _owner_initial(obj),
        **{name: getattr(obj, name) for name in services.GUARDRAIL_FIELDS},
    },
    owner=lambda form: form.cleaned_data["owner"],
    form_kwargs=lambda access: {"access": access},
    intro=(
        "Every active policy that applies to a request is in force: the global ones, "
        "its customer's, its team's and its key's."
    ),
)

# The runtime settings an operator most often needs to know, with the seed's
# names where it has them; they come from the environment (read-only here).
RUNTIME_SETTINGS = (
    ("GATEWAY_INITIAL_POOL_SIZE", "initialPoolSize", "Concurrency slots per provider and process"),
    ("GATEWAY_DROP_EXCESS_REQUESTS", "dropExcessRequests", "Refuse when the wait buffer is full"),
    ("GATEWAY_QUEUE_SIZE", "", "Requests that may wait for a provider's slot"),
    ("GATEWAY_QUEUE_TIMEOUT_SECONDS", "", "Longest wait for a slot"),
    ("GATEWAY_ENABLE_LOGGING", "enableLogging", "One access-log line per request"),
    ("GATEWAY_ENFORCE_GOVERNANCE_HEADER", "enforceGovernanceHeader", "Requests need a virtual key"),
    ("GATEWAY_DEFAULT_TEAM", "defaultTeam", "Whose policy keyless requests follow"),
    ("GATEWAY_RETRIES", "", "Retries per deployment before the next fallback"),
    ("GATEWAY_RETRY_BUDGET_RATIO", "", "Retries at most this share of recent requests"),
    ("GATEWAY_BREAKER_MIN_FAILURES", "", "Failures that can open a circuit"),
    ("GATEWAY_BREAKER_OPEN_SECONDS", "", "How long an open circuit stays open"),
    ("GATEWAY_UPSTREAM_TOTAL_TIMEOUT", "", "Default longest upstream exchange (seconds)"),
    ("GATEWAY_SSE_KEEPALIVE_SECONDS", "", "Keep-alive comments while a stream waits"),
    ("GATEWAY_SHUTDOWN_GRACE_SECONDS", "", "Time streams get to finish on shutdown"),
    ("GATEWAY_LOG_RETENTION_DAYS", "ledger.retentionDays", "Days raw records are kept (0: all)"),
    ("GATEWAY_ROLLUP_INTERVAL_SECONDS", "ledger.rollupIntervalSeconds", "Usage rollups run"),
    (
        "GATEWAY_BUDGET_CLOSE_DELAY_SECONDS",
        "ledger.budgetCloseDelaySeconds",
        "A budget period is closed this long after it ends",
    ),
)


@console_view(Budget)
def budget_periods(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """A budget's finished periods: limit, spend, the counter, and whether they agreed."""
    budget = visible_object(access, budgets.objects(), pk=pk)
    table = [
        {
            "cells": (
                f"{h.period_start:%Y-%m-%d %H:%M} to {h.period_end:%Y-%m-%d %H:%M}",
                _money(h.limit_micros),
                _money(h.spent_micros),
                h.requests,
                _money(h.counter_micros),
                h.get_reconciliation_display(),
            )
        }
        for h in budget.history.all()[:500]
    ]
    return render(
        request,
        "console/table.html",
        {
            "title": f"Finished periods of {budget}",
            "intro": "Spend per the request log, and the live counter's final value (UTC).",
            "headings": ("Period", "Limit", "Spent", "Requests", "Counter", "Reconciliation"),
            "table": table,
            "back": budgets.url("edit", budget.pk),
        },
    )


@console_view(Budget)
def runtime_settings(request: HttpRequest, access: Access) -> HttpResponse:
    """The settings in force (from the environment), for admins and viewers."""
    from django.conf import settings
    from django.core.exceptions import PermissionDenied

    if not (access.is_admin or access.is_viewer):
        raise PermissionDenied
    table = [
        {"cells": (name, str(getattr(settings, name, "")), seed or "—", meaning)}
        for name, seed, meaning in RUNTIME_SETTINGS
    ]
    return render(
        request,
        "console/table.html",
        {
            "title": "Runtime settings",
            "intro": "Set through the environment (or the Helm chart's values); read-only here.",
            "headings": ("Environment variable", "Value", "Chart value", "Meaning"),
            "table": table,
        },
    )
