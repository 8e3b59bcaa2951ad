"""The console's forms for the org tree, virtual keys, providers and routes.

They only read and check input; the changes are made by ``keys.services``.
"""

from __future__ import annotations

from typing import Any

from django import forms

from keys.console import ListField
from keys.models import (
    CACHE_TTL_MAX_SECONDS,
    Customer,
    Provider,
    ProviderKind,
    StoreContent,
    Team,
)

NAME_HELP = "Lowercase letters, digits, dots, dashes or underscores."
MODELS_HELP = "One model name or pattern per line (gpt-4o*, openai/*); empty allows every model."


class PolicyForm(forms.Form):
    """The access rules every level of the org tree carries."""

    allowed_models = ListField(required=False, help_text=MODELS_HELP)
    max_concurrent_requests = forms.IntegerField(
        required=False, min_value=0, help_text="Empty for no cap."
    )
    cache_ttl_seconds = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=CACHE_TTL_MAX_SECONDS,
        label="Response cache TTL (seconds)",
        help_text="Repeated identical requests are answered from the cache for this long; "
        "0 turns the cache off here, empty inherits (key from team, team from customer).",
    )


class NamedForm(forms.Form):
    """A form whose first field is the object's name, fixed once it exists."""

    name = forms.CharField(max_length=100, help_text=NAME_HELP)

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["name"].disabled = True
            self.fields["name"].help_text = ""

    def changes(self) -> dict[str, Any]:
        """The cleaned fields an update service accepts (all but the name)."""
        return {name: value for name, value in self.cleaned_data.items() if name != "name"}


class CustomerForm(NamedForm, PolicyForm):
    description = forms.CharField(max_length=200, required=False)
    cache_shared_across_teams = forms.BooleanField(
        required=False,
        label="Teams share cached answers",
        help_text="The response cache's entries are shared by this customer's teams "
        "instead of kept per team.",
    )
    field_order = [
        "name",
        "description",
        "allowed_models",
        "max_concurrent_requests",
        "cache_ttl_seconds",
        "cache_shared_across_teams",
    ]


class TeamForm(NamedForm, PolicyForm):
    customer = forms.ModelChoiceField(queryset=Customer.objects.all(), required=False)
    description = forms.CharField(max_length=200, required=False)
    store_content = forms.BooleanField(
        required=False,
        label="Store message content",
        help_text="Keep each request's messages and answer text in the request log, with "
        "secrets and personal data redacted. Off: only usage is stored.",
    )
    field_order = [
        "name",
        "customer",
        "description",
        "allowed_models",
        "max_concurrent_requests",
        "cache_ttl_seconds",
        "store_content",
    ]


class VirtualKeyForm(NamedForm, PolicyForm):
    team = forms.ModelChoiceField(queryset=Team.objects.none())
    expires_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Empty: the key never expires.",
    )
    allowed_ips = ListField(
        required=False, help_text="Addresses or networks (10.0.0.0/8), one per line; empty: any."
    )
    may_pin_provider_keys = forms.BooleanField(
        required=False,
        label="May choose its provider key",
        help_text="For debugging: requests may name the provider key that serves them "
        "(x-gateway-provider-key). Admins only.",
    )
    store_content = forms.ChoiceField(
        choices=StoreContent.choices,
        required=False,
        initial=StoreContent.INHERIT,
        label="Store message content",
        help_text="As the team: the team's setting decides. Keep or Do not keep: this key's "
        "requests keep their messages and answer text (redacted) in the request log, or do "
        "not, whatever the team's setting.",
    )
    field_order = ["name", "team", "expires_at", "allowed_models", "allowed_ips"]

    def __init__(
        self, *args: Any, teams: Any, fixed: frozenset[str] = frozenset(), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams
        for name in fixed:  # admin-only fields (keys.access.ADMIN_ONLY_FIELDS)
            del self.fields[name]

    def clean_store_content(self) -> str:
        # Left out of a post (a script, not the browser): the key keeps its choice.
        value = self.cleaned_data.get("store_content")
        return value or self.initial.get("store_content") or StoreContent.INHERIT


class RotateForm(forms.Form):
    grace_hours = forms.IntegerField(
        min_value=0,
        max_value=24 * 30,
        initial=24,
        label="Grace period (hours)",
        help_text="The current secret keeps working this long.",
    )


class OptionsField(forms.CharField):
    """A provider's options typed as ``name=value`` lines."""

    widget = forms.Textarea(attrs={"rows": 2})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return "\n".join(f"{name}={option}" for name, option in value.items())
        return value

    def to_python(self, value: Any) -> dict[str, str]:  # type: ignore[override]
        options: dict[str, str] = {}
        for line in (super().to_python(value) or "").splitlines():
            if not line.strip():
                continue
            name, sep, option = line.partition("=")
            if not sep:
                raise forms.ValidationError(f"{line.strip()!r} is not name=value.")
            options[name.strip()] = option.strip()
        return options


class ProviderForm(NamedForm):
    kind = forms.ChoiceField(choices=ProviderKind.choices)
    base_url = forms.URLField(max_length=500, assume_scheme="https")
    options = OptionsField(
        required=False, help_text="name=value per line, e.g. api_version=2024-10-21 for Azure."
    )
    is_active = forms.BooleanField(required=False, initial=True, label="Active")
    allow_private_network = forms.BooleanField(
        required=False,
        label="Allow a private network address",
        help_text="For a self-hosted model on a loopback, private or link-local address; "
        "otherwise such base URLs are refused.",
    )


class ProviderKeyForm(NamedForm):
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        label="API key",
        help_text="Stored encrypted; only its last four characters are shown again.",
    )
    weight = forms.IntegerField(min_value=0, initial=1)
    is_active = forms.BooleanField(required=False, initial=True, label="Active")

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, editing=editing, **kwargs)
        if editing:
            secret = self.fields["secret"]
            secret.required = False
            secret.label = "Replace the API key"
            secret.help_text = "Leave empty to keep the saved key."


class ModelRouteForm(NamedForm):
    provider = forms.ModelChoiceField(queryset=Provider.objects.all())
    provider_model = forms.CharField(max_length=200, help_text="The model's name at the provider.")
    fallbacks = ListField(
        required=False,
        help_text="Tried in order when this deployment fails: route names or provider/model.",
    )
    is_active = forms.BooleanField(required=False, initial=True, label="Active")
