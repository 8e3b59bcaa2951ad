"""What refused requests leave in the usage ledger: every refusal of a known
key is recorded (it is the owner's traffic), while requests refused before
any key was found are recorded only up to a bound a minute per process and
counted beyond it, so that a flood of invalid keys cannot grow the ledger
without bound."""

from __future__ import annotations

import uuid

from governance.models import RequestRecord
from keys import selectors, tokens
from keys.models import VirtualKey
from tests.conftest import gateway_env
from tests.fault_helpers import wait_for_records
from tests.processes import GatewayProcess
from tests.reliability_report import add_row
from tests.test_metrics import scrape, total

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
ALLOWANCE = 10
FLOOD = 40


def test_a_flood_of_invalid_keys_is_recorded_up_to_a_bound_and_counted_beyond(demo, celery_worker):
    server = GatewayProcess(
        gateway_env(
            GATEWAY_AUTH_FAILURE_LIMIT="5",
            GATEWAY_LEDGER_UNAUTHENTICATED_PER_MINUTE=str(ALLOWANCE),
        )
    )
    try:
        server.wait_for_revision(selectors.config_revision())
        tag = uuid.uuid4().hex[:10]
        statuses = []
        for index in range(FLOOD):
            headers = {
                "authorization": f"Bearer {tokens.generate_key()}",
                "x-forwarded-for": f"203.0.113.{index % 4}",
                "x-request-id": f"{tag}-guess-{index}",
            }
            statuses.append(server.client.post("/v1/chat/completions", json=CHAT, headers=headers))
        for index in range(3):  # a known key's refusals: an unknown model
            headers = {"authorization": f"Bearer {demo.key}", "x-request-id": f"{tag}-own-{index}"}
            body = {**CHAT, "model": "no-such-model"}
            statuses.append(server.client.post("/v1/chat/completions", json=body, headers=headers))
        assert {r.status_code for r in statuses[:FLOOD]} == {401, 429}
        assert [r.status_code for r in statuses[FLOOD:]] == [404] * 3

        own = wait_for_records(f"{tag}-own-", 3, timeout=30)
        # (the allowance starts over each minute: a run across a minute's end gets two)
        guesses = wait_for_records(f"{tag}-guess-", ALLOWANCE, timeout=30)
        unrecorded = total(scrape(server.client), "gateway_unrecorded_refusals_total")
        key = VirtualKey.objects.get(name="platform-app")
        owned = RequestRecord.objects.filter(client_request_id__startswith=f"{tag}-own-")
        assert own == 3
        assert set(owned.values_list("key_id", "status")) == {(key.pk, 404)}
        assert ALLOWANCE <= guesses <= 2 * ALLOWANCE
        assert guesses + unrecorded == FLOOD
        guessed = RequestRecord.objects.filter(client_request_id__startswith=f"{tag}-guess-")
        assert set(guessed.values_list("key_id", flat=True)) == {None}
    finally:
        server.close()
    add_row(
        "Security",
        f"a flood of {FLOOD} invalid keys (ledger bound {ALLOWANCE} a minute per process), "
        "then 3 refusals of a known key",
        requests=FLOOD + 3,
        client_saw="401 then 429 for the flood; 404 for the known key",
        lost=f"by design: {guesses} of the flood recorded, {unrecorded:.0f} only counted "
        "(`gateway_unrecorded_refusals_total`); all 3 of the known key recorded, with its id",
    )
