"""Guardrail policies inherit: global, customer, team and key all apply, the
strictest action wins, and allow patterns only narrow what every policy agrees on."""

from __future__ import annotations

import openai
import orjson
import pytest

from governance import services
from keys import services as key_services
from keys.models import VirtualKey

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def sent(demo) -> str:
    return orjson.dumps([entry["body"] for entry in demo.mock.requests()]).decode()


def ask(demo, text: str, key: str | None = None):
    return demo.openai(key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )


def test_every_level_applies_its_own_rules(demo):
    key = VirtualKey.objects.get(name="platform-app")
    services.guardrail_policy_create(name="global", detectors={"aws_access_key": "block"})
    services.guardrail_policy_create(
        name="customer", owner=demo.team.customer, detectors={"iban": "redact"}
    )
    services.guardrail_policy_create(name="team", owner=demo.team, detectors={"email": "redact"})
    services.guardrail_policy_create(name="key", owner=key, detectors={"us_ssn": "redact"})
    demo.sync()
    ask(demo, "jane@example.com, GB82WEST12345698765432, 536-22-1234")
    assert "[EMAIL], [IBAN], [US_SSN]" in sent(demo)
    with pytest.raises(openai.BadRequestError):
        ask(demo, f"and {AWS_KEY}")


@pytest.mark.parametrize(
    ("upper", "lower"), [("block", "flag"), ("flag", "block"), ("redact", "flag")]
)
def test_the_strictest_action_wins_whichever_level_sets_it(demo, upper, lower):
    key = VirtualKey.objects.get(name="platform-app")
    services.guardrail_policy_create(name="global", detectors={"email": upper})
    services.guardrail_policy_create(name="key", owner=key, detectors={"email": lower})
    demo.sync()
    if "block" in (upper, lower):
        with pytest.raises(openai.BadRequestError):
            ask(demo, "mail jane@example.com")
    else:
        ask(demo, "mail jane@example.com")
        assert "mail [EMAIL]" in sent(demo)


def test_another_teams_policy_does_not_apply(demo):
    other = key_services.team_create(name="research", customer=demo.team.customer)
    _, other_key = key_services.virtual_key_create(name="research-app", team=other)
    services.guardrail_policy_create(name="strict", owner=other, detectors={"email": "block"})
    demo.sync()
    assert ask(demo, "mail jane@example.com").choices
    with pytest.raises(openai.BadRequestError):
        ask(demo, "mail jane@example.com", key=other_key)


def test_an_allow_pattern_exempts_only_what_every_policy_on_the_rule_allows(demo):
    allow = [r"[a-z.]+@example\.com"]
    services.guardrail_policy_create(
        name="team", owner=demo.team, detectors={"email": "redact"}, allow_patterns=allow
    )
    demo.sync()
    ask(demo, "mail support@example.com or jane@corp.io")
    assert "mail support@example.com or [EMAIL]" in sent(demo)
    # A global policy on the same rule without the allowance: the team cannot loosen it.
    services.guardrail_policy_create(name="global", detectors={"email": "redact"})
    demo.sync()
    demo.mock.reset()
    ask(demo, "mail support@example.com or jane@corp.io")
    assert "mail [EMAIL] or [EMAIL]" in sent(demo)


def test_limits_take_the_lowest_value_of_any_level(demo):
    services.guardrail_policy_create(name="global", max_messages=5)
    services.guardrail_policy_create(name="team", owner=demo.team, max_messages=1)
    demo.sync()
    with pytest.raises(openai.BadRequestError):
        demo.openai().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}] * 2
        )


def test_a_policy_switched_off_or_deleted_stops_applying(demo):
    policy = services.guardrail_policy_create(name="global", detectors={"email": "block"})
    demo.sync()
    with pytest.raises(openai.BadRequestError):
        ask(demo, "mail jane@example.com")
    services.guardrail_policy_update(policy=policy, is_active=False)
    demo.sync()
    assert ask(demo, "mail jane@example.com").choices
    services.guardrail_policy_update(policy=policy, is_active=True)
    demo.sync()
    with pytest.raises(openai.BadRequestError):
        ask(demo, "mail jane@example.com")
    services.guardrail_policy_delete(policy=policy)
    demo.sync()
    assert ask(demo, "mail jane@example.com").choices
