"""Fixtures: a real mock provider, a real gateway process, and the org tree.

The gateway runs in its own uvicorn process against the same test database
(PostgreSQL or the SQLite file), so tests that drive it use committed data
(``transactional_db``) and wait until the gateway has loaded the revision.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import anthropic
import openai
import pytest
from django.conf import settings
from django.db import connection

from keys import selectors, services
from keys.models import Provider, Team
from tests.processes import ROOT, GatewayProcess, MockProviderProcess, stop

# A one-pixel PNG, base64: the image input of the SDK tests.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154"
        "789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log() -> Iterator[None]:
    """No secret the run used appears in any log it produced (tests.secret_watch)."""
    from tests.secret_watch import SecretWatch

    watch = SecretWatch(ROOT / "var" / f"test-run-{os.getpid()}.log")
    watch.start()
    yield
    watch.stop()
    leaks = watch.leaks(GatewayProcess.logs)
    assert leaks == [], f"secrets in the logs of this run (see {watch.run_log}): {leaks}"
    watch.run_log.unlink(missing_ok=True)


@pytest.fixture(scope="session", autouse=True)
def redis_namespace() -> None:
    """Counters of earlier runs (same ids, same windows) must not leak in."""
    from django.test import override_settings

    # (override_settings tells gateway_project.fast_settings too.)
    override_settings(GATEWAY_REDIS_PREFIX=f"gwtest-{uuid.uuid4().hex[:8]}").enable()


@pytest.fixture(scope="session")
def mock_provider() -> Iterator[MockProviderProcess]:
    server = MockProviderProcess()
    yield server
    server.close()


def gateway_env(**extra: str) -> dict[str, str]:
    """Environment for a gateway process sharing this test run's state."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        database_url = f"sqlite:///{db['NAME']}"
    else:
        credentials = f"{db['USER']}:{db['PASSWORD'] or ''}"
        database_url = f"postgres://{credentials}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        "DATABASE_URL": database_url,
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "GATEWAY_ENCRYPTION_KEY": settings.GATEWAY_ENCRYPTION_KEY,
        "GATEWAY_SNAPSHOT_POLL_SECONDS": "0.2",
        "GATEWAY_NEGATIVE_CACHE_SECONDS": "0.5",
        "GATEWAY_REDIS_PREFIX": settings.GATEWAY_REDIS_PREFIX,
        "LOG_LEVEL": "WARNING",
        # The session's gateway serves every test: one test's injected outage
        # must not open a breaker or spend a retry budget for the next. The
        # tests of those start gateways of their own with real thresholds.
        "GATEWAY_BREAKER_MIN_FAILURES": "1000000",
        "GATEWAY_RETRY_BUDGET_MIN_RETRIES": "1000000",
        # Every test calls from 127.0.0.1; the key guessing tests start a
        # gateway with a real limit.
        "GATEWAY_AUTH_FAILURE_LIMIT": "1000000",
        # Tests expecting the record of an unauthenticated refusal must not
        # find the allowance spent by other tests' refusals (that bound has
        # a test of its own, tests/test_refusal_records.py).
        "GATEWAY_LEDGER_UNAUTHENTICATED_PER_MINUTE": "1000000",
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def gateway(django_db_setup, django_db_blocker) -> Iterator[GatewayProcess]:
    with django_db_blocker.unblock():
        server = GatewayProcess(gateway_env())
    yield server
    server.close()


@dataclass
class Demo:
    """A team with a key, and a provider pointing at the mock provider."""

    key: str
    team: Team
    provider: Provider
    gateway: GatewayProcess
    mock: MockProviderProcess

    def openai(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.gateway.url}/v1", api_key=key or self.key, max_retries=0, timeout=20
        )

    def anthropic(self, key: str | None = None) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=f"{self.gateway.url}/anthropic",
            api_key=key or self.key,
            max_retries=0,
            timeout=20,
        )

    def sync(self) -> None:
        """Wait until the gateway serves the latest configuration."""
        self.gateway.wait_for_revision(selectors.config_revision())


@pytest.fixture
def demo(transactional_db, gateway, mock_provider) -> Demo:
    mock_provider.reset()
    customer = services.customer_create(name="acme")
    team = services.team_create(name="platform", customer=customer)
    _, secret = services.virtual_key_create(name="platform-app", team=team)
    provider = services.provider_create(
        name="mock",
        kind="openai",
        base_url=f"{mock_provider.url}/v1",
        allow_private_network=True,
    )
    services.provider_key_create(provider=provider, name="primary", secret="sk-mock-primary-0001")
    services.model_route_create(name="gpt-4o-mini", provider=provider, provider_model="mock-gpt")
    result = Demo(key=secret, team=team, provider=provider, gateway=gateway, mock=mock_provider)
    result.sync()
    return result


@pytest.fixture
def claude(demo):
    """An Anthropic provider (the mock's Messages API) beside the demo's OpenAI one."""
    provider = services.provider_create(
        name="claude",
        kind="anthropic",
        base_url=f"{demo.mock.url}/anthropic/v1",
        allow_private_network=True,
    )
    services.provider_key_create(provider=provider, name="primary", secret="sk-ant-mock-0001")
    services.model_route_create(
        name="claude-sonnet", provider=provider, provider_model="mock-claude"
    )
    demo.sync()
    return demo


@pytest.fixture
def celery_worker(demo) -> Iterator[subprocess.Popen | None]:
    """A real Celery worker with beat, draining the usage stream (cluster mode).

    Embedded mode has no stream: the gateway writes its records directly.
    """
    if not settings.REDIS_URL:
        yield None
        return
    from tests.fault_helpers import start_worker

    process = start_worker(gateway_env(), quick_reclaim=False)
    yield process
    stop(process)


@pytest.fixture
def console(db):
    """The console tests' world: two teams and what hangs off them (tests.console_helpers)."""
    from tests.console_helpers import console_world

    return console_world()


@pytest.fixture
def who(console):
    """One signed-in test client per role (tests.console_helpers.personas)."""
    from tests.console_helpers import personas

    return personas(console)
