"""The console's pages for customers, teams, virtual keys, providers and routes.

Every page applies ``keys.access`` (see ``keys.console``); every change goes
through ``keys.services``, which audits it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from keys import services
from keys.access import Access
from keys.console import (
    Column,
    Resource,
    call_service,
    console_view,
    delete_and_redirect,
    render_form,
    render_table,
    require,
    visible_object,
)
from keys.forms import (
    CustomerForm,
    ModelRouteForm,
    ProviderForm,
    ProviderKeyForm,
    RotateForm,
    TeamForm,
    VirtualKeyForm,
)
from keys.models import Customer, ModelRoute, Provider, ProviderKey, Team, VirtualKey


def _models(obj: Any) -> str:
    return ", ".join(obj.allowed_models) or "all"


def _policy_initial(obj: Any, *names: str) -> dict[str, Any]:
    fields = ("name", "allowed_models", "max_concurrent_requests", "cache_ttl_seconds", *names)
    return {name: getattr(obj, name) for name in fields}


customers = Resource(
    model=Customer,
    app="keys",
    slug="customers",
    plural="Customers",
    singular="customer",
    form=CustomerForm,
    columns=[
        Column("Name", lambda c: c.name),
        Column("Description", lambda c: c.description),
        Column("Allowed models", _models),
    ],
    create=lambda form: services.customer_create(**form.cleaned_data),
    update=lambda obj, form: services.customer_update(customer=obj, **form.changes()),
    delete=lambda obj: services.customer_delete(customer=obj),
    initial=lambda obj: _policy_initial(obj, "description", "cache_shared_across_teams"),
)

teams = Resource(
    model=Team,
    app="keys",
    slug="teams",
    plural="Teams",
    singular="team",
    form=TeamForm,
    columns=[
        Column("Name", lambda t: t.name),
        Column("Customer", lambda t: t.customer or "—"),
        Column("Allowed models", _models),
    ],
    queryset=lambda: Team.objects.select_related("customer"),
    create=lambda form: services.team_create(**form.cleaned_data),
    update=lambda obj, form: services.team_update(team=obj, **form.changes()),
    delete=lambda obj: services.team_delete(team=obj),
    initial=lambda obj: _policy_initial(obj, "customer", "description", "store_content"),
)

providers = Resource(
    model=Provider,
    app="keys",
    slug="providers",
    plural="Providers",
    singular="provider",
    form=ProviderForm,
    columns=[
        Column("Name", lambda p: p.name),
        Column("Kind", lambda p: p.get_kind_display()),
        Column("Base URL", lambda p: p.base_url),
        Column("Keys", lambda p: p.key_count),
        Column("Active", lambda p: "yes" if p.is_active else "no"),
    ],
    queryset=lambda: Provider.objects.annotate(key_count=Count("keys")),
    create=lambda form: services.provider_create(**form.cleaned_data),
    update=lambda obj, form: services.provider_update(provider=obj, **form.changes()),
    delete=lambda obj: services.provider_delete(provider=obj),
    links=lambda obj: [("API keys", reverse("keys:provider_keys", args=[obj.pk]))],
    initial=lambda obj: {
        name: getattr(obj, name)
        for name in ("name", "kind", "base_url", "options", "is_active", "allow_private_network")
    },
)

routes = Resource(
    model=ModelRoute,
    app="keys",
    slug="routes",
    plural="Routes",
    singular="route",
    form=ModelRouteForm,
    columns=[
        Column("Public name", lambda r: r.name),
        Column("Provider", lambda r: r.provider.name),
        Column("Provider model", lambda r: r.provider_model),
        Column("Fallbacks", lambda r: " → ".join(r.fallbacks) or "—"),
        Column("Active", lambda r: "yes" if r.is_active else "no"),
    ],
    queryset=lambda: ModelRoute.objects.select_related("provider"),
    create=lambda form: services.model_route_create(**form.cleaned_data),
    update=lambda obj, form: services.model_route_update(route=obj, **form.changes()),
    delete=lambda obj: services.model_route_delete(route=obj),
    initial=lambda obj: {
        name: getattr(obj, name)
        for name in ("name", "provider", "provider_model", "fallbacks", "is_active")
    },
)


# --- virtual keys: the secret is shown once, at creation or rotation ----------------


def _key_teams(access: Access) -> Any:
    """The teams ``access`` may create keys for."""
    if access.is_admin:
        return Team.objects.all()
    return Team.objects.filter(pk__in=access.managed_team_ids)


def _key_status(key: VirtualKey) -> str:
    if not key.is_active:
        return "revoked"
    if key.expires_at and key.expires_at <= dt.datetime.now(dt.UTC):
        return "expired"
    return "active"


@console_view(VirtualKey)
def key_list(request: HttpRequest, access: Access) -> HttpResponse:
    keys = access.scope(VirtualKey.objects.select_related("team"))
    return render_table(
        request,
        title="Virtual keys",
        columns=[
            Column("Name", lambda k: k.name),
            Column("Key", lambda k: k.masked),
            Column("Team", lambda k: k.team.name),
            Column("Status", _key_status),
            Column("Expires", lambda k: k.expires_at or "never"),
            Column("Message content", lambda k: k.content_choice_summary),
        ],
        rows=keys,
        link=lambda key: reverse("keys:key_detail", args=[key.pk]),
        create_url=reverse("keys:key_new") if access.can_write(VirtualKey) else None,
    )


def _show_secret(request: HttpRequest, key: VirtualKey, secret: str, action: str) -> HttpResponse:
    # The views showing it are ``never_cache``: this page is the secret's only showing.
    return render(
        request,
        "console/key_secret.html",
        {"title": f"Secret of {key.name}", "key": key, "secret": secret, "action": action},
    )


@never_cache
@console_view(VirtualKey)
def key_new(request: HttpRequest, access: Access) -> HttpResponse:
    require(access.can_write(VirtualKey))
    form = VirtualKeyForm(
        request.POST or None, teams=_key_teams(access), fixed=access.fixed_fields(VirtualKey)
    )
    if request.method == "POST" and form.is_valid():
        require(access.can_create(VirtualKey, owner=form.cleaned_data["team"]))
        created = call_service(form, services.virtual_key_create, **form.cleaned_data)
        if created is not None:
            key, secret = created
            return _show_secret(request, key, secret, "created")
    return render_form(
        request,
        form,
        title="New virtual key",
        submit="Create",
        back=reverse("keys:key_list"),
    )


@never_cache
@console_view(VirtualKey)
def key_detail(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    key = visible_object(access, VirtualKey.objects.select_related("team"), pk=pk)
    editable = access.can_change(key) and key.is_active
    if request.method == "POST":
        require(editable)
    teams = _key_teams(access) if editable else Team.objects.filter(pk=key.team_id)
    initial = _policy_initial(
        key, "team", "expires_at", "allowed_ips", "may_pin_provider_keys", "store_content"
    )
    form = VirtualKeyForm(
        request.POST or None,
        initial=initial,
        editing=True,
        teams=teams,
        fixed=access.fixed_fields(VirtualKey),
    )
    if request.method == "POST" and form.is_valid():
        if call_service(form, services.virtual_key_update, key=key, **form.changes()):
            messages.success(request, f"{key.name} saved.")
            return redirect("keys:key_detail", pk=key.pk)
        key.refresh_from_db()  # the page describes what is stored, not the refused change
    actions = [("Revoke", reverse("keys:key_revoke", args=[key.pk]), "danger")] if editable else []
    return render_form(
        request,
        form,
        title=f"Virtual key {key.name}",
        editable=editable,
        actions=actions,
        back=reverse("keys:key_list"),
        extra={
            "key": key,
            "status": _key_status(key),
            "rotate_form": RotateForm() if editable else None,
            "rotate_url": reverse("keys:key_rotate", args=[key.pk]),
        },
    )


@console_view(VirtualKey)
def key_revoke(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    key = visible_object(access, VirtualKey.objects.all(), pk=pk)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    require(access.can_change(key))
    services.virtual_key_revoke(key=key)
    messages.success(request, f"{key.name} revoked: it is refused from now on.")
    return redirect("keys:key_detail", pk=key.pk)


@never_cache
@console_view(VirtualKey)
def key_rotate(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    key = visible_object(access, VirtualKey.objects.select_related("team"), pk=pk)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    require(access.can_change(key))
    form = RotateForm(request.POST)
    if form.is_valid():
        grace = dt.timedelta(hours=form.cleaned_data["grace_hours"])
        rotated = call_service(form, services.virtual_key_rotate, key=key, grace=grace)
        if rotated is not None:
            return _show_secret(request, rotated[0], rotated[1], "rotated")
    messages.error(request, " ".join(str(e) for e in form.errors.values()) or "Cannot rotate.")
    return redirect("keys:key_detail", pk=key.pk)


# --- provider keys, under their provider ------------------------------------------


@console_view(ProviderKey)
def provider_keys(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    provider = visible_object(access, Provider.objects.all(), pk=pk)
    return render_table(
        request,
        title=f"Keys of {provider.name}",
        columns=[
            Column("Name", lambda k: k.name),
            Column("Key", lambda k: f"…{k.last_four}"),
            Column("Weight", lambda k: k.weight),
            Column("Active", lambda k: "yes" if k.is_active else "no"),
        ],
        rows=access.scope(provider.keys.all()),
        link=lambda key: reverse("keys:provider_key_edit", args=[provider.pk, key.pk]),
        create_url=reverse("keys:provider_key_new", args=[provider.pk])
        if access.can_write(ProviderKey)
        else None,
        back=reverse("keys:providers_edit", args=[provider.pk]),
    )


@never_cache
@console_view(ProviderKey)
def provider_key_new(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    provider = visible_object(access, Provider.objects.all(), pk=pk)
    require(access.can_create(ProviderKey))
    form = ProviderKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        created = call_service(
            form, services.provider_key_create, provider=provider, **form.cleaned_data
        )
        if created is not None:
            messages.success(request, f"Key {created.name} saved (…{created.last_four}).")
            return redirect("keys:provider_keys", pk=provider.pk)
    return render_form(
        request,
        form,
        title=f"New key for {provider.name}",
        submit="Save",
        back=reverse("keys:provider_keys", args=[provider.pk]),
    )


@never_cache
@console_view(ProviderKey)
def provider_key_edit(request: HttpRequest, access: Access, pk: int, key_pk: int) -> HttpResponse:
    provider = visible_object(access, Provider.objects.all(), pk=pk)
    key = visible_object(access, provider.keys.all(), pk=key_pk)
    editable = access.can_change(key)
    if request.method == "POST":
        require(editable)
    initial = {"name": key.name, "weight": key.weight, "is_active": key.is_active}
    form = ProviderKeyForm(request.POST or None, initial=initial, editing=True)
    back = reverse("keys:provider_keys", args=[provider.pk])
    if request.method == "POST" and form.is_valid():
        changes = form.changes()
        secret = changes.pop("secret", "")
        if call_service(form, services.provider_key_update, key=key, **changes) and (
            not secret
            or call_service(form, services.provider_key_replace_secret, key=key, secret=secret)
        ):
            messages.success(request, f"Key {key.name} saved (…{key.last_four}).")
            return redirect(back)
    actions = []
    if editable:
        delete_url = reverse("keys:provider_key_delete", args=[provider.pk, key.pk])
        actions.append(("Delete", delete_url, "danger"))
    return render_form(
        request,
        form,
        title=f"Key {key.name} of {provider.name} (…{key.last_four})",
        editable=editable,
        actions=actions,
        back=back,
    )


@console_view(ProviderKey)
def provider_key_delete(request: HttpRequest, access: Access, pk: int, key_pk: int) -> HttpResponse:
    provider = visible_object(access, Provider.objects.all(), pk=pk)
    key = visible_object(access, provider.keys.all(), pk=key_pk)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    require(access.can_change(key))
    return delete_and_redirect(
        request,
        key,
        lambda obj: services.provider_key_delete(key=obj),
        reverse("keys:provider_keys", args=[provider.pk]),
    )
