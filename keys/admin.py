"""The admin pages of the org tree, keys, providers and routes.

Every save goes through ``keys.services``, so the admin changes things the
same way the API and the configuration file do.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.services import audit_deletions
from keys import services
from keys.access import request_access
from keys.models import (
    ApiToken,
    Customer,
    ModelRoute,
    Provider,
    ProviderKey,
    RoleAssignment,
    Team,
    VirtualKey,
)


def _form_fields(obj: Any, form: forms.ModelForm, names: set[str]) -> dict[str, Any]:
    """The values of the form's fields among ``names``, as the form set them on ``obj``."""
    return {name: getattr(obj, name) for name in names if name in form.cleaned_data}


def _changed_fields(form: forms.ModelForm, names: set[str]) -> dict[str, Any]:
    return {name: form.cleaned_data[name] for name in form.changed_data if name in names}


class ServiceAdmin(admin.ModelAdmin):
    """Routes the admin's saves to service functions (subclasses say which)."""

    identity_fields: tuple[str, ...] = ("name",)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic(), audit_deletions([obj]):
            super().delete_model(request, obj)
            services.config_revision_bump()

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic(), audit_deletions(queryset):
            super().delete_queryset(request, queryset)
            services.config_revision_bump()

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            # The form has already written its values onto ``obj``; the
            # service compares against what is stored.
            self.update(self.model.objects.get(pk=obj.pk), form)
        else:
            self.create(request, obj, form)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Names identify objects in the configuration file; they do not change.
        fixed = tuple(self.identity_fields) if obj else ()
        # Fields only admins may set (keys.access.ADMIN_ONLY_FIELDS), for any other staff user.
        admin_only = tuple(sorted(request_access(request).fixed_fields(self.model)))
        return (*fixed, *self.readonly_fields, *admin_only)

    def create(self, request: HttpRequest, obj: Any, form: Any) -> None:
        raise NotImplementedError

    def update(self, obj: Any, form: Any) -> None:
        raise NotImplementedError


@admin.register(Customer)
class CustomerAdmin(ServiceAdmin):
    list_display = ("name", "description", "created_at")
    search_fields = ("name", "description")

    def create(self, request: HttpRequest, obj: Customer, form: Any) -> None:
        created = services.customer_create(
            name=obj.name, **_form_fields(obj, form, services.CUSTOMER_FIELDS)
        )
        obj.pk = created.pk

    def update(self, obj: Customer, form: Any) -> None:
        services.customer_update(customer=obj, **_changed_fields(form, services.CUSTOMER_FIELDS))


@admin.register(Team)
class TeamAdmin(ServiceAdmin):
    list_display = ("name", "customer", "description", "created_at")
    list_filter = ("customer",)
    search_fields = ("name", "description")

    def create(self, request: HttpRequest, obj: Team, form: Any) -> None:
        created = services.team_create(
            name=obj.name, **_form_fields(obj, form, services.TEAM_FIELDS)
        )
        obj.pk = created.pk

    def update(self, obj: Team, form: Any) -> None:
        services.team_update(team=obj, **_changed_fields(form, services.TEAM_FIELDS))


@admin.register(VirtualKey)
class VirtualKeyAdmin(ServiceAdmin):
    list_display = ("name", "masked", "team", "is_active", "expires_at", "created_at")
    list_filter = ("is_active", "team")
    search_fields = ("name", "prefix")
    readonly_fields = ("masked", "is_active", "revoked_at", "created_at", "updated_at")
    fields = ("name", "team", "expires_at", "metadata", "store_content", *readonly_fields)
    actions = ("revoke",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: usage history keeps pointing at the key

    def create(self, request: HttpRequest, obj: VirtualKey, form: Any) -> None:
        created, secret = services.virtual_key_create(
            name=obj.name,
            team=obj.team,
            expires_at=obj.expires_at,
            metadata=obj.metadata,
            store_content=obj.store_content,
        )
        obj.pk = created.pk
        messages.warning(
            request,
            f"The key {created.name} was created. "
            f"Copy it now, it will not be shown again: {secret}",
        )

    def update(self, obj: VirtualKey, form: Any) -> None:
        services.virtual_key_update(key=obj, **_changed_fields(form, services.VIRTUAL_KEY_FIELDS))

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for key in queryset:
            services.virtual_key_revoke(key=key)
        self.message_user(request, f"{queryset.count()} key(s) revoked.")


@admin.register(Provider)
class ProviderAdmin(ServiceAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("name", "kind", "base_url", "is_active", "allow_private_network")
    list_filter = ("kind", "is_active")
    search_fields = ("name", "base_url")

    def create(self, request: HttpRequest, obj: Provider, form: Any) -> None:
        created = services.provider_create(
            name=obj.name,
            kind=obj.kind,
            base_url=obj.base_url,
            options=obj.options,
            is_active=obj.is_active,
            allow_private_network=obj.allow_private_network,
        )
        obj.pk = created.pk

    def update(self, obj: Provider, form: Any) -> None:
        services.provider_update(provider=obj, **_changed_fields(form, services.PROVIDER_FIELDS))


class ProviderKeyForm(forms.ModelForm):
    secret = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; never shown again. Leave empty to keep the current key.",
    )

    class Meta:
        model = ProviderKey
        fields = ("provider", "name", "secret", "weight", "is_active")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.instance.pk and not data.get("secret"):
            self.add_error("secret", "A new provider key needs its API key.")
        return data


@admin.register(ProviderKey)
class ProviderKeyAdmin(ServiceAdmin):
    form = ProviderKeyForm
    identity_fields = ("provider", "name")
    list_display = ("__str__", "provider", "weight", "is_active", "updated_at")
    list_filter = ("provider", "is_active")
    readonly_fields = ("last_four", "created_at", "updated_at")

    def create(self, request: HttpRequest, obj: ProviderKey, form: Any) -> None:
        created = services.provider_key_create(
            provider=obj.provider,
            name=obj.name,
            secret=form.cleaned_data["secret"],
            weight=obj.weight,
            is_active=obj.is_active,
        )
        obj.pk = created.pk

    def update(self, obj: ProviderKey, form: Any) -> None:
        services.provider_key_update(key=obj, **_changed_fields(form, services.PROVIDER_KEY_FIELDS))
        if form.cleaned_data.get("secret"):
            services.provider_key_replace_secret(
                key=obj, secret=form.cleaned_data["secret"], secret_env=""
            )


@admin.register(ModelRoute)
class ModelRouteAdmin(ServiceAdmin):
    list_display = ("name", "provider", "provider_model", "is_active")
    list_filter = ("provider", "is_active")
    search_fields = ("name", "provider_model")

    def create(self, request: HttpRequest, obj: ModelRoute, form: Any) -> None:
        created = services.model_route_create(
            name=obj.name,
            provider=obj.provider,
            provider_model=obj.provider_model,
            is_active=obj.is_active,
        )
        obj.pk = created.pk

    def update(self, obj: ModelRoute, form: Any) -> None:
        services.model_route_update(route=obj, **_changed_fields(form, services.ROUTE_FIELDS))


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ("name", "user", "read_only", "expires_at")

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise ValidationError("An API token cannot expire in the past.")
        return expires_at


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """REST API tokens: created (the secret shown once) and revoked, never edited or deleted."""

    list_display = ("name", "masked", "user", "read_only", "expires_at", "revoked_at")
    list_filter = ("read_only",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("masked", "revoked_at", "last_used_at", "created_at", "updated_at")
    fields = ("name", "user", "read_only", "expires_at", *readonly_fields)
    form = ApiTokenForm
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is not None:  # what a token may do is fixed when it is made
            return ("name", "user", "read_only", "expires_at", *self.readonly_fields)
        return self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the audit trail keeps naming the token

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            return
        created, secret = services.api_token_create(
            user=obj.user, name=obj.name, read_only=obj.read_only, expires_at=obj.expires_at
        )
        obj.pk = created.pk
        messages.warning(
            request,
            f"The token {created.name} was created. "
            f"Copy it now, it will not be shown again: {secret}",
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for token in queryset:
            services.api_token_revoke(token=token)
        self.message_user(request, f"{queryset.count()} token(s) revoked.")


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(admin.ModelAdmin):
    """Operator roles: granted and withdrawn (through the services, audited), not edited."""

    list_display = ("user", "role", "team")
    list_filter = ("role", "team")
    search_fields = ("user__username",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None  # the list page; a role is withdrawn and granted anew

    def save_model(
        self, request: HttpRequest, obj: RoleAssignment, form: Any, change: bool
    ) -> None:
        created = services.role_assignment_create(user=obj.user, role=obj.role, team=obj.team)
        obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: RoleAssignment) -> None:
        services.role_assignment_delete(assignment=obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for assignment in queryset:
            services.role_assignment_delete(assignment=assignment)
