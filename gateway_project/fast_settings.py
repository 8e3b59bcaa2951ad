"""The settings, for code that reads them on every request.

``django.conf.settings`` is a lazy proxy whose every attribute read runs
Python-level ``__getattribute__`` code (about a microsecond each); the data
plane reads a few dozen settings per request. ``settings`` here is a plain
object that copies a setting from Django's on first read and keeps it, so a
later read is an ordinary attribute lookup. A setting changed through
Django's ``override_settings`` (and pytest-django's ``settings`` fixture)
announces itself with the ``setting_changed`` signal, which drops the copy.

Use it exactly like Django's: ``from gateway_project.fast_settings import
settings``, then ``settings.GATEWAY_RETRIES``. Setting attributes on it is
not supported; change Django's settings instead.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed


class FastSettings:
    """Django's settings, each copied into this object's own attributes on first read."""

    def __getattr__(self, name: str) -> Any:
        # Only called when the attribute is not copied yet.
        value = getattr(django_settings, name)
        object.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("change django.conf.settings instead; this object follows it")

    def forget(self, name: str | None = None) -> None:
        """Drop the copy of ``name`` (of every setting without one); the next read copies anew."""
        if name is None:
            self.__dict__.clear()
        else:
            self.__dict__.pop(name, None)


settings = FastSettings()


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    settings.forget(setting)


setting_changed.connect(_setting_changed, dispatch_uid="gateway_project.fast_settings")
