"""Provider API keys are encrypted at rest and never shown again."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from keys import crypto, services
from keys.models import ProviderKey

pytestmark = pytest.mark.django_db

SECRET = "sk-live-provider-secret-XYZW"


@pytest.fixture
def provider():
    return services.provider_create(name="openai", kind="openai", base_url="https://api.example/v1")


def test_the_database_never_holds_the_plaintext(provider):
    services.provider_key_create(provider=provider, name="main", secret=SECRET)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM keys_providerkey")
        row = " ".join(str(value) for value in cursor.fetchone())
    assert SECRET not in row
    assert SECRET[:-4] not in row
    key = ProviderKey.objects.get()
    assert key.last_four == "XYZW"
    assert crypto.decrypt(key.encrypted_secret) == SECRET


def test_two_encryptions_of_one_secret_differ(provider):
    assert crypto.encrypt(SECRET) != crypto.encrypt(SECRET)


def test_a_different_encryption_key_cannot_read_it(provider):
    services.provider_key_create(provider=provider, name="main", secret=SECRET)
    stored = ProviderKey.objects.get().encrypted_secret
    with override_settings(GATEWAY_ENCRYPTION_KEY="another-key-" + "z" * 40):
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(stored)


def test_a_blank_secret_is_refused(provider):
    with pytest.raises(services.ServiceError):
        services.provider_key_create(provider=provider, name="main", secret=" padded ")
