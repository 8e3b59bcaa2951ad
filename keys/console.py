"""What every console page shares: sign-in, the access rules, service errors on forms.

The console's views (``keys.views``, ``governance.views``) are thin: they
check ``keys.access`` exactly as the REST API does (a kind off limits is 403,
another team's object is 404, seen but not theirs to change is 403), call a
service, and render. A service's validation error lands on the form field it
names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError
from django.db.models import Model, ProtectedError, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, render

from keys.access import Access, request_access
from keys.services import ServiceError

ConsoleView = Callable[..., HttpResponse]


def console_view(model: type[Model]) -> Callable[[ConsoleView], ConsoleView]:
    """Sign-in required, and the right to read ``model``; the view gets the ``Access``."""

    def decorate(view: ConsoleView) -> ConsoleView:
        @login_required
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            access = request_access(request)
            if not access.can_view(model):
                raise PermissionDenied
            return view(request, access, *args, **kwargs)

        return wrapper

    return decorate


def visible_object(access: Access, queryset: QuerySet, **lookup: Any) -> Any:
    """The object ``lookup`` names among those ``access`` may see; 404 otherwise."""
    return get_object_or_404(access.scope(queryset), **lookup)


def require(allowed: bool) -> None:
    """403 unless ``allowed``."""
    if not allowed:
        raise PermissionDenied


def _add_errors(form: forms.Form, exc: ValidationError) -> None:
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, messages in exc.message_dict.items():
        if field in form.fields:
            form.add_error(field, messages)
        else:
            label = "" if field == "__all__" else f"{field.replace('_', ' ')}: "
            form.add_error(None, [f"{label}{message}" for message in messages])


def call_service(form: forms.Form, service: Callable[..., Any], **kwargs: Any) -> Any:
    """Run ``service``; on a refused change put its reasons on ``form`` and return None."""
    try:
        return service(**kwargs)
    except ValidationError as exc:
        _add_errors(form, exc)
    except ServiceError as exc:
        form.add_error(None, str(exc))
    except ProtectedError:
        form.add_error(None, "Other objects still use this one; remove or move them first.")
    except IntegrityError:
        form.add_error(None, "This conflicts with an existing object.")
    return None


class ListField(forms.CharField):
    """A list of short strings typed one per line or separated by commas."""

    widget = forms.Textarea(attrs={"rows": 2})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [item.strip() for item in text.replace(",", "\n").splitlines() if item.strip()]


@dataclass(frozen=True)
class Column:
    """One column of a console table: a heading and how to read a row's cell."""

    label: str
    value: Callable[[Any], Any]


def render_table(
    request: HttpRequest,
    *,
    title: str,
    columns: Sequence[Column],
    rows: Iterable[Any],
    link: Callable[[Any], str] | None = None,
    create_url: str | None = None,
    intro: str = "",
    back: str | None = None,
) -> HttpResponse:
    """A page listing ``rows``; the first cell links to ``link(row)``."""
    table = [
        {"url": link(row) if link else None, "cells": [column.value(row) for column in columns]}
        for row in rows
    ]
    return render(
        request,
        "console/table.html",
        {
            "title": title,
            "headings": [column.label for column in columns],
            "table": table,
            "create_url": create_url,
            "intro": intro,
            "back": back,
        },
    )


def render_form(
    request: HttpRequest,
    form: forms.Form,
    *,
    title: str,
    submit: str = "Save",
    actions: Sequence[tuple[str, str, str]] = (),
    back: str | None = None,
    status: int = 200,
    extra: dict[str, Any] | None = None,
    editable: bool = True,
) -> HttpResponse:
    """A page with ``form``; ``actions`` are further POST buttons (label, url, style).

    A form the operator may not submit is shown read-only, without its button.
    """
    if not editable:
        for field in form.fields.values():
            field.disabled = True
    context = {
        "title": title,
        "form": form,
        "submit": submit if editable else "",
        "actions": actions,
        "back": back,
        **(extra or {}),
    }
    if form.errors:
        status = 400
    return render(request, "console/form.html", context, status=status)


def _url(name: str, *args: Any) -> str:
    from django.urls import reverse

    return reverse(name, args=args)


@dataclass(frozen=True)
class Resource:
    """A kind of object the console lists, creates, edits and deletes through services.

    ``create(form)`` and ``update(obj, form)`` call the services with the
    form's cleaned data; ``owner(form)`` names what a new object attaches to
    (for ``Access.can_create``). URL names are ``<app>:<slug>_list``,
    ``_new``, ``_edit`` and ``_delete``.
    """

    model: type[Model]
    app: str
    slug: str
    plural: str
    singular: str
    form: type[forms.Form]
    columns: Sequence[Column]
    create: Callable[[forms.Form], Any]
    update: Callable[[Any, forms.Form], Any]
    delete: Callable[[Any], None] | None = None
    initial: Callable[[Any], dict[str, Any]] = lambda obj: {}
    owner: Callable[[forms.Form], Model | None] = lambda form: None
    form_kwargs: Callable[[Access], dict[str, Any]] = lambda access: {}
    queryset: Callable[[], QuerySet] | None = None
    intro: str = ""
    # Pages about one object beside its form (label, url).
    links: Callable[[Any], list[tuple[str, str]]] = lambda obj: []

    def url(self, action: str, *args: Any) -> str:
        return _url(f"{self.app}:{self.slug}_{action}", *args)

    def objects(self) -> QuerySet:
        return self.queryset() if self.queryset else self.model._default_manager.all()

    def urls(self) -> list[Any]:
        """The four URL patterns of this resource."""
        from django.urls import path

        return [
            path(f"{self.slug}/", self._list_view(), name=f"{self.slug}_list"),
            path(f"{self.slug}/new", self._create_view(), name=f"{self.slug}_new"),
            path(f"{self.slug}/<int:pk>/", self._edit_view(), name=f"{self.slug}_edit"),
            path(f"{self.slug}/<int:pk>/delete", self._delete_view(), name=f"{self.slug}_delete"),
        ]

    def _list_view(self) -> ConsoleView:
        @console_view(self.model)
        def view(request: HttpRequest, access: Access) -> HttpResponse:
            return render_table(
                request,
                title=self.plural,
                columns=self.columns,
                rows=access.scope(self.objects()),
                link=lambda obj: self.url("edit", obj.pk),
                create_url=self.url("new") if access.can_write(self.model) else None,
                intro=self.intro,
            )

        return view

    def _create_view(self) -> ConsoleView:
        @console_view(self.model)
        def view(request: HttpRequest, access: Access) -> HttpResponse:
            require(access.can_write(self.model))
            form = self.form(request.POST or None, **self.form_kwargs(access))
            if request.method == "POST" and form.is_valid():
                require(access.can_create(self.model, owner=self.owner(form)))
                created = call_service(form, functools.partial(self.create, form))
                if created is not None:
                    return _redirect(self.url("edit", created.pk))
            return render_form(
                request, form, title=f"New {self.singular}", submit="Create", back=self.url("list")
            )

        return view

    def _edit_view(self) -> ConsoleView:
        @console_view(self.model)
        def view(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
            obj = visible_object(access, self.objects(), pk=pk)
            editable = access.can_change(obj)
            if request.method == "POST":
                require(editable)
            form = self.form(
                request.POST or None,
                initial=self.initial(obj),
                editing=True,
                **self.form_kwargs(access),
            )
            if request.method == "POST" and form.is_valid():
                if call_service(form, functools.partial(self.update, obj, form)) is not None:
                    return _redirect(self.url("edit", obj.pk))
            actions = []
            if editable and self.delete is not None:
                actions.append(("Delete", self.url("delete", obj.pk), "danger"))
            return render_form(
                request,
                form,
                title=f"{self.singular.capitalize()} {obj}",
                editable=editable,
                actions=actions,
                back=self.url("list"),
                extra={"links": self.links(obj)},
            )

        return view

    def _delete_view(self) -> ConsoleView:
        @console_view(self.model)
        def view(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
            obj = visible_object(access, self.objects(), pk=pk)
            if request.method != "POST" or self.delete is None:
                return HttpResponseNotAllowed(["POST"])
            require(access.can_change(obj))
            return delete_and_redirect(request, obj, self.delete, self.url("list"))

        return view


def _redirect(url: str) -> HttpResponse:
    from django.shortcuts import redirect

    return redirect(url)


def delete_and_redirect(
    request: HttpRequest, obj: Any, delete: Callable[[Any], None], url: str
) -> HttpResponse:
    """Delete ``obj`` through its service and go to ``url``, saying what happened."""
    from django.contrib import messages

    description = str(obj)
    try:
        delete(obj)
    except (ProtectedError, ServiceError):
        messages.error(request, f"{description} is still in use; remove what uses it first.")
    else:
        messages.success(request, f"{description} deleted.")
    return _redirect(url)


def _navigation_items(request: HttpRequest) -> list[dict[str, Any]]:
    from django.urls import reverse

    from audit.models import AuditEvent
    from governance.models import Budget, GuardrailPolicy, ModelPrice, RateLimit, RequestRecord
    from keys.models import Customer, ModelRoute, Provider, Team, VirtualKey

    pages = [
        ("Dashboard", "governance:dashboard", RequestRecord),
        ("Requests", "governance:request_log", RequestRecord),
        ("Live", "governance:live", RequestRecord),
        ("Customers", "keys:customers_list", Customer),
        ("Teams", "keys:teams_list", Team),
        ("Keys", "keys:key_list", VirtualKey),
        ("Providers", "keys:providers_list", Provider),
        ("Routes", "keys:routes_list", ModelRoute),
        ("Budgets", "governance:budgets_list", Budget),
        ("Limits", "governance:limits_list", RateLimit),
        ("Prices", "governance:prices_list", ModelPrice),
        ("Guardrails", "governance:guardrails_list", GuardrailPolicy),
        ("Audit trail", "audit_console:trail", AuditEvent),
    ]
    access = request_access(request)
    if access.is_admin or access.is_viewer:
        pages.append(("Settings", "governance:runtime_settings", Budget))
    root = reverse("governance:dashboard")
    items = []
    for label, name, model in pages:
        if access.can_view(model):
            url = reverse(name)
            # The dashboard is the console's root: only an exact match is "here".
            here = request.path == url or (url != root and request.path.startswith(url))
            items.append({"label": label, "url": url, "current": here})
    return items


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Template context: ``console_nav``, the console pages this operator may open.

    Computed only when a template iterates it (the admin's pages do not).
    """
    from django.utils.functional import SimpleLazyObject

    return {"console_nav": SimpleLazyObject(lambda: _navigation_items(request))}
