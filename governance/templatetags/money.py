"""``{{ micros|money }}``: integer micro-units shown as a decimal amount."""

from __future__ import annotations

from django import template

from governance.services import micros_to_money

register = template.Library()


@register.filter
def money(micros: int | None) -> str:
    """12,500,000 → ``12.5``; nothing → ``0``."""
    return micros_to_money(int(micros or 0))
