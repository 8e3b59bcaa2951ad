"""A virtual key's own message-content choice over its team's: ``inherit`` (the
default) follows the team, also when the team changes while the gateway runs;
``off`` keeps nothing in a team that keeps content; ``on`` keeps the content,
redacted, in a team that does not. Set through the REST API (validated, admins
only), the console and the configuration file, each change audited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from keys import services
from keys.declarative import ConfigError, apply_config, export_config, load_file
from keys.models import Team, VirtualKey
from tests.api_fixtures import ApiWorld, error_of
from tests.audit_fixtures import new_events
from tests.content_helpers import (
    ANSWER,
    AWS_KEY,
    EMAIL,
    REDACTED_CONTENT,
    SPLIT,
    ask,
    assert_usage_only,
)
from tests.ledger_helpers import record_tagged


def demo_key(demo) -> VirtualKey:
    return VirtualKey.objects.select_related("team").get(name="platform-app")


def set_team(demo, keeps: bool) -> None:
    services.team_update(team=Team.objects.get(pk=demo.team.pk), store_content=keeps)
    demo.sync()


def set_key(demo, choice: str) -> None:
    services.virtual_key_update(key=demo_key(demo), store_content=choice)
    demo.sync()


# --- on a real gateway ---------------------------------------------------------------


def test_a_key_set_off_keeps_nothing_in_a_team_that_keeps_content(demo, celery_worker):
    _, inheriting = services.virtual_key_create(name="platform-other", team=demo.team)
    set_team(demo, True)
    set_key(demo, "off")
    demo.mock.add_rule(answer=ANSWER)

    assert_usage_only(demo.openai())

    # The team's other key still keeps content: the choice is the key's alone.
    _, tag = ask(demo.openai(inheriting), stream=False)
    assert record_tagged(tag).content == REDACTED_CONTENT


def test_a_key_set_on_keeps_redacted_content_in_a_team_that_does_not(demo, celery_worker):
    set_key(demo, "on")
    demo.mock.add_rule(answer=SPLIT)

    for stream in (False, True):
        text, tag = ask(demo.openai(), stream=stream)
        assert text == ANSWER
        content = record_tagged(tag).content
        assert content == REDACTED_CONTENT
        stored = str(content)
        assert EMAIL not in stored and AWS_KEY not in stored


def test_an_inheriting_key_follows_its_team_while_the_gateway_runs(demo, celery_worker):
    assert demo_key(demo).store_content == "inherit"  # the default
    demo.mock.add_rule(answer=ANSWER)
    client = demo.openai()

    _, tag = ask(client, stream=False)
    assert record_tagged(tag).content is None

    set_team(demo, True)
    _, tag = ask(client, stream=True)
    assert record_tagged(tag).content == REDACTED_CONTENT

    set_team(demo, False)
    _, tag = ask(client, stream=False)
    assert record_tagged(tag).content is None


# --- the REST API ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_sets_a_keys_choice_and_shows_its_effect_with_one_audit_event():
    world = ApiWorld()
    client = world.client("admin")
    url = f"/api/v1/virtual-keys/{world.key.pk}/"
    shown = client.get(url).json()
    assert (shown["store_content"], shown["keeps_content"]) == ("inherit", False)

    with new_events() as events:
        response = client.patch(url, {"store_content": "on"}, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["store_content"], response.json()["keeps_content"]) == ("on", True)
    assert [
        (e.action, e.object_type, e.before["store_content"], e.after["store_content"])
        for e in events
    ] == [("update", "keys.virtualkey", "inherit", "on")]


@pytest.mark.django_db
def test_a_new_key_from_the_api_may_leave_its_team_out():
    world = ApiWorld()
    services.team_update(team=world.team, store_content=True)
    response = world.client("admin").post(
        "/api/v1/virtual-keys/",
        {"name": "search-hr", "team": world.team.pk, "store_content": "off"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert (response.json()["store_content"], response.json()["keeps_content"]) == ("off", False)
    assert VirtualKey.objects.get(name="search-hr").store_content == "off"


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["maybe", "ON", True, None, ""])
def test_the_api_refuses_a_choice_that_is_not_inherit_on_or_off(value):
    world = ApiWorld()
    client = world.client("admin")
    with new_events() as events:
        response = client.patch(
            f"/api/v1/virtual-keys/{world.key.pk}/", {"store_content": value}, format="json"
        )
    assert response.status_code == 400, response.content
    assert error_of(response)["fields"]["store_content"] == [
        "Use inherit, on or off."
        if value is None
        else f'"{value}" is not a choice: use inherit, on or off.'
    ]
    assert events == []
    world.key.refresh_from_db()
    assert world.key.store_content == "inherit"


@pytest.mark.django_db
def test_only_admins_may_change_a_keys_choice():
    world = ApiWorld()
    response = world.client("manager").patch(
        f"/api/v1/virtual-keys/{world.key.pk}/", {"store_content": "on"}, format="json"
    )
    assert response.status_code == 400
    assert error_of(response)["fields"]["store_content"] == ["Only admins may set this field."]
    world.key.refresh_from_db()
    assert world.key.store_content == "inherit"


# --- the console (server side; the browser test is in test_console_browser) -----------------


@pytest.mark.django_db
def test_the_console_key_page_says_what_the_key_does_and_where_it_comes_from(console, who):
    url = reverse("keys:key_detail", args=[console.key.pk])
    services.team_update(team=console.team, store_content=True)
    assert "inherits: on (team)" in who.manager.get(url).content.decode()

    services.virtual_key_update(key=console.key, store_content="off")
    page = who.manager.get(url).content.decode()
    assert "off (this key; the team&#x27;s is on)" in page
    assert 'name="store_content"' not in page  # managers see the choice, admins set it
    assert 'name="store_content"' in who.admin.get(url).content.decode()


@pytest.mark.django_db
def test_an_admins_console_edit_sets_the_choice_with_one_audit_event(console, who):
    url = reverse("keys:key_detail", args=[console.key.pk])
    form = {"name": console.key.name, "team": console.team.pk}
    with new_events() as events:
        saved = who.admin.post(url, {**form, "store_content": "off"})
    assert saved.status_code == 302
    assert [
        (e.action, e.object_type, e.before["store_content"], e.after["store_content"])
        for e in events
    ] == [("update", "keys.virtualkey", "inherit", "off")]

    with new_events() as events:
        refused = who.admin.post(url, {**form, "store_content": "maybe"})
    assert refused.status_code == 400  # the form again, with its error
    assert "Select a valid choice" in refused.content.decode()
    assert events == []
    # A post without the field (a script, not the browser) leaves the choice as it is.
    assert who.admin.post(url, {**form, "allowed_models": "gpt-4o"}).status_code == 302
    console.key.refresh_from_db()
    assert console.key.store_content == "off"


@pytest.mark.django_db
def test_a_managers_edit_of_a_key_leaves_its_choice_as_it_was(console, who):
    services.virtual_key_update(key=console.key, store_content="off")
    url = reverse("keys:key_detail", args=[console.key.pk])
    saved = who.manager.post(url, {"name": console.key.name, "team": console.team.pk})
    assert saved.status_code == 302
    console.key.refresh_from_db()
    assert console.key.store_content == "off"


# --- the configuration file ----------------------------------------------------------------

YAML = """
version: 1
customers:
  - name: acme
    teams:
      - name: hr
        store_content: true
        virtual_keys:
          - name: hr-payroll
            store_content: off
          - name: hr-chat
          - name: hr-debug
            store_content: "on"
"""


@pytest.mark.django_db
def test_the_configuration_file_declares_and_exports_each_keys_choice(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(YAML)
    document = load_file(str(path))  # unquoted off is YAML's false: it means off

    apply_config(document)

    keys = {key.name: key for key in VirtualKey.objects.select_related("team")}
    assert {name: key.store_content for name, key in keys.items()} == {
        "hr-payroll": "off",
        "hr-chat": "inherit",
        "hr-debug": "on",
    }
    assert [keys[name].keeps_content for name in ("hr-payroll", "hr-chat", "hr-debug")] == [
        False,
        True,
        True,
    ]
    exported = export_config()["customers"][0]["teams"][0]["virtual_keys"]
    assert [key["store_content"] for key in exported] == ["inherit", "on", "off"]
    assert apply_config(document).changed == []
    assert apply_config(export_config()).changed == []


@pytest.mark.django_db
def test_the_configuration_file_refuses_an_unknown_choice():
    document = {
        "version": 1,
        "teams": [{"name": "hr", "virtual_keys": [{"name": "k", "store_content": "sometimes"}]}],
    }
    with pytest.raises(ConfigError, match=r"store_content: 'sometimes' is not one of inherit"):
        apply_config(document)


@pytest.mark.django_db
def test_a_refused_edit_shows_the_keys_stored_choice_not_the_refused_one(console, who):
    # Moving the key into a team that has a key of the same name is refused
    # by the service, after the form itself was valid.
    services.virtual_key_create(name=console.key.name, team=console.other_team)
    url = reverse("keys:key_detail", args=[console.key.pk])
    refused = who.admin.post(
        url, {"name": console.key.name, "team": console.other_team.pk, "store_content": "on"}
    )
    assert refused.status_code == 400
    page = refused.content.decode()
    assert "inherits: off (team)" in page
    assert "on (this key" not in page
    console.key.refresh_from_db()
    assert (console.key.team_id, console.key.store_content) == (console.team.pk, "inherit")


@pytest.mark.django_db
def test_a_manager_creating_a_key_may_send_the_default_choice_but_no_other():
    world = ApiWorld()
    manager = world.client("manager")
    body = {"name": "etl", "team": world.team.pk}
    sent_default = manager.post(
        "/api/v1/virtual-keys/", {**body, "store_content": "inherit"}, format="json"
    )
    assert sent_default.status_code == 201, sent_default.content
    refused = manager.post(
        "/api/v1/virtual-keys/", {**body, "name": "etl-2", "store_content": "on"}, format="json"
    )
    assert refused.status_code == 400
    assert error_of(refused)["fields"]["store_content"] == ["Only admins may set this field."]
