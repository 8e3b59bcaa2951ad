"""Lists of the API read a fixed number of queries, however many rows they show."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance import services as governance
from keys import services
from tests.api_fixtures import ApiWorld

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> ApiWorld:
    return ApiWorld()


def more(world: ApiWorld, path: str, n: int) -> None:
    makers: dict[str, Callable[[int], object]] = {
        "virtual-keys": lambda i: services.virtual_key_create(name=f"extra-{i}", team=world.team),
        "provider-keys": lambda i: services.provider_key_create(
            provider=world.provider, name=f"extra-{i}", secret=f"sk-extra-{i:04d}"
        ),
        "role-assignments": lambda i: services.role_assignment_create(
            user=ApiWorld._user(f"extra-{i}"), role="viewer"
        ),
        "api-tokens": lambda i: services.api_token_create(
            user=world.users["viewer"], name=f"extra-{i}"
        ),
        "budgets": lambda i: governance.budget_create(
            owner=world.key, amount_micros=i, period="1h"
        ),
        "teams": lambda i: services.team_create(name=f"extra-{i}", customer=world.customer),
    }
    for i in range(n):
        makers[path](i)


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize(
    ("path", "who"),
    [
        *[
            (path, "viewer")
            for path in ("virtual-keys", "provider-keys", "role-assignments", "api-tokens")
        ],
        *[(path, "manager") for path in ("virtual-keys", "budgets", "teams")],
    ],
)
def test_a_list_costs_the_same_queries_for_one_row_or_many(world, path, who):
    client = world.client(who)
    url = f"/api/v1/{path}/"
    queries(client, url)  # the token's last use is written once, on the first call
    few = queries(client, url)

    more(world, path, 6)

    assert queries(client, url) == few
