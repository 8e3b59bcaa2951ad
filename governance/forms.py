"""The console's forms for budgets, rate limits and prices, and the filters of its pages.

Amounts are typed as decimals and become integer micro-units here
(``governance.services.money_to_micros``); the changes are made by
``governance.services``.
"""

from __future__ import annotations

from typing import Any

from django import forms

from governance.models import BudgetPeriod, GuardrailDirection, LimitMetric
from governance.selectors import USAGE_GROUPS
from governance.services import money_to_micros
from keys.access import Access
from keys.models import Customer, Team, VirtualKey
from keys.services import ServiceError


def owner_choices(access: Access) -> list[tuple[str, str]]:
    """What ``access`` may attach a budget or limit to, as ``kind:id`` choices."""
    teams = Team.objects.all() if access.is_admin else access.visible_teams()
    keys = access.scope(VirtualKey.objects.select_related("team"))
    choices = []
    if access.is_admin:
        choices += [(f"customer:{c.pk}", f"customer {c.name}") for c in Customer.objects.all()]
    choices += [(f"team:{t.pk}", f"team {t.name}") for t in teams]
    choices += [(f"key:{k.pk}", f"key {k.name}") for k in keys]
    return choices


OWNER_MODELS = {"customer": Customer, "team": Team, "key": VirtualKey}


class MoneyField(forms.DecimalField):
    """An amount in currency units, cleaned to integer micro-units."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=0, decimal_places=6, max_digits=18, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, int):
            from governance.services import micros_to_money

            return micros_to_money(value)
        return value

    def clean(self, value: Any) -> int | None:  # type: ignore[override]
        amount = super().clean(value)
        if amount is None:
            return None
        try:
            return money_to_micros(amount)
        except ServiceError as exc:
            raise forms.ValidationError(str(exc)) from None


class ScopedForm(forms.Form):
    """A form whose object attaches to a customer, team or key, fixed once it exists."""

    owner = forms.ChoiceField(label="Applies to")
    fixed_after_creation: tuple[str, ...] = ("owner",)

    def __init__(self, *args: Any, access: Access, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].choices = owner_choices(access)
        if editing:
            for name in self.fixed_after_creation:
                self.fields[name].disabled = True
            owner = self.initial.get("owner")
            if owner and owner not in dict(self.fields["owner"].choices):
                self.fields["owner"].choices = [(owner, owner)]

    def clean_owner(self) -> Any:
        kind, _, pk = self.cleaned_data["owner"].partition(":")
        return OWNER_MODELS[kind].objects.get(pk=int(pk))


class BudgetForm(ScopedForm):
    amount_micros = MoneyField(label="Amount")
    period = forms.ChoiceField(choices=BudgetPeriod.choices)
    calendar_aligned = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Periods start at midnight, on Mondays, on the 1st; otherwise from now.",
    )
    fixed_after_creation = ("owner", "period", "calendar_aligned")


class RateLimitForm(ScopedForm):
    metric = forms.ChoiceField(choices=LimitMetric.choices)
    limit = forms.IntegerField(min_value=0)
    window_seconds = forms.IntegerField(min_value=1, initial=60, label="Window (seconds)")
    fixed_after_creation = ("owner", "metric", "window_seconds")


class ModelPriceForm(forms.Form):
    provider_kind = forms.CharField(
        max_length=32, help_text="A provider kind (openai), or one provider's name."
    )
    model = forms.CharField(max_length=200)
    input_micros_per_mtok = MoneyField(label="Input, per million tokens")
    output_micros_per_mtok = MoneyField(label="Output, per million tokens")
    cached_input_micros_per_mtok = MoneyField(
        label="Cached input, per million tokens", required=False
    )
    max_output_tokens = forms.IntegerField(min_value=1, required=False)
    effective_from = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Empty: since always.",
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            for name in ("provider_kind", "model", "effective_from"):
                self.fields[name].disabled = True


class LinesField(forms.CharField):
    """Text typed one item per line (regular expressions may hold commas)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class DetectorsField(LinesField):
    """``detector: action`` per line, cleaned to the policy's mapping."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return "\n".join(f"{name}: {action}" for name, action in value.items())
        return value

    def to_python(self, value: Any) -> dict[str, str]:  # type: ignore[override]
        rules = {}
        for line in super().to_python(value):
            name, colon, action = line.partition(":")
            if not colon or not name.strip() or not action.strip():
                raise forms.ValidationError(f"Write 'detector: action', not {line!r}.")
            rules[name.strip()] = action.strip()
        return rules


class DenyPatternsField(LinesField):
    """``name action pattern`` per line (the pattern is the rest of the line)."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(
                f"{item.get('name')} {item.get('action', 'block')} {item.get('pattern')}"
                for item in value
            )
        return value

    def to_python(self, value: Any) -> list[dict[str, str]]:  # type: ignore[override]
        patterns = []
        for line in super().to_python(value):
            parts = line.split(None, 2)
            if len(parts) != 3:
                raise forms.ValidationError(f"Write 'name action pattern', not {line!r}.")
            name, action, pattern = parts
            patterns.append({"name": name, "action": action, "pattern": pattern})
        return patterns


class AllowPatternsField(LinesField):
    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value


GLOBAL_SCOPE = "global"


class GuardrailPolicyForm(ScopedForm):
    """A guardrail policy: global or one customer's, team's or key's, fixed once it exists."""

    name = forms.CharField(max_length=100)
    direction = forms.ChoiceField(choices=GuardrailDirection.choices, initial="both")
    detectors = DetectorsField(
        required=False,
        help_text=(
            "One 'detector: action' per line; a detector or a category (secrets, "
            "personal_data); actions: block, redact, flag."
        ),
    )
    deny_patterns = DenyPatternsField(
        required=False,
        help_text="One 'name action pattern' per line, e.g. project-code block PRJ-\\d{4}.",
    )
    allow_patterns = AllowPatternsField(
        required=False,
        help_text="One regular expression per line; a finding it matches whole is ignored.",
    )
    max_input_tokens = forms.IntegerField(min_value=1, required=False)
    max_messages = forms.IntegerField(min_value=1, required=False)
    is_active = forms.BooleanField(required=False, initial=True, label="Active")

    fixed_after_creation = ("name", "owner")
    field_order = ("name", "owner")

    def __init__(self, *args: Any, access: Access, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, access=access, editing=editing, **kwargs)
        if self.initial.get("owner") == GLOBAL_SCOPE:
            self.fields["owner"].choices = [(GLOBAL_SCOPE, "every request")]
        elif not editing:
            self.fields["owner"].choices = [(GLOBAL_SCOPE, "every request"), *owner_choices(access)]

    def clean_owner(self) -> Any:
        if self.cleaned_data["owner"] == GLOBAL_SCOPE:
            return None
        return super().clean_owner()


RANGES = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30}


class UsageFilterForm(forms.Form):
    """The dashboard's filters: a time range and a team, key, model or provider."""

    range = forms.ChoiceField(
        choices=[("24h", "last 24 hours"), ("7d", "last 7 days"), ("30d", "last 30 days")],
        required=False,
    )
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False)
    key = forms.ModelChoiceField(queryset=VirtualKey.objects.none(), required=False)
    model = forms.CharField(max_length=200, required=False)
    provider = forms.CharField(max_length=63, required=False)
    group_by = forms.ChoiceField(
        choices=[("", "nothing"), *[(name, name) for name in USAGE_GROUPS]],
        required=False,
        label="Split by",
    )

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = access.visible_teams()
        self.fields["key"].queryset = access.scope(VirtualKey.objects.all())


class RequestLogFilterForm(UsageFilterForm):
    """The request log explorer's filters."""

    since = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    status = forms.IntegerField(min_value=100, max_value=599, required=False)
    errors = forms.ChoiceField(
        choices=[("", "all answers"), ("true", "errors only (400+)"), ("false", "no errors")],
        required=False,
        label="Outcome",
    )
    field_order = ["since", "until", "team", "key", "model", "provider", "status", "errors"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["range"]
        del self.fields["group_by"]


def record_filter_data(cleaned: dict[str, Any]) -> dict[str, str]:
    """The query of ``governance.api.filters.RequestRecordFilter`` for a filter form's values.

    The console filters the request log with the REST API's own filter set,
    so both narrow it the same way.
    """
    data: dict[str, str] = {}
    for name, value in cleaned.items():
        if value in (None, ""):
            continue
        if name in ("team", "key"):
            value = value.pk
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        data[name] = str(value)
    return data
