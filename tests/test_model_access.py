"""Which models a key may use: every level of the org tree must allow it."""

from __future__ import annotations

import openai
import pytest

from keys import services
from keys.models import VirtualKey

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_a_key_limited_to_a_pattern_reaches_matching_models_only(demo):
    services.virtual_key_update(
        key=VirtualKey.objects.get(name="platform-app"), allowed_models=["gpt-4o*"]
    )
    services.model_route_create(
        name="other-model", provider=demo.provider, provider_model="mock-gpt"
    )
    demo.sync()
    client = demo.openai()
    assert client.chat.completions.create(model="gpt-4o-mini", **CHAT).choices
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="other-model", **CHAT)
    assert caught.value.body["code"] == "model_not_allowed"
    assert demo.mock.request_count() == 1


def test_a_customer_rule_binds_every_key_below_it(demo):
    services.customer_update(customer=demo.team.customer, allowed_models=["mock/*"])
    demo.sync()
    client = demo.openai()
    # The route's provider model (mock/mock-gpt) matches the customer's pattern.
    assert client.chat.completions.create(model="gpt-4o-mini", **CHAT).choices
    services.customer_update(customer=demo.team.customer, allowed_models=["anthropic/*"])
    demo.sync()
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o-mini", **CHAT)


def test_an_allow_list_that_is_not_a_list_of_names_is_refused(db):
    from django.core.exceptions import ValidationError

    from keys.models import Team

    team = services.team_create(name="t1")
    with pytest.raises(ValidationError):
        services.team_update(team=team, allowed_models="gpt-4o")
    assert Team.objects.get(name="t1").allowed_models == []


def test_the_model_list_shows_only_what_the_key_may_use(demo):
    services.model_route_create(name="other-model", provider=demo.provider, provider_model="x")
    services.virtual_key_update(
        key=VirtualKey.objects.get(name="platform-app"), allowed_models=["other-*"]
    )
    demo.sync()
    assert [model.id for model in demo.openai().models.list().data] == ["other-model"]
