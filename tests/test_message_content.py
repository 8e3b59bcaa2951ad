"""Message content in the request log: never kept unless the team opts in; then the
messages and the answer's text (a stream's assembled as it passes), redacted, capped,
with the opt-in itself audited."""

from __future__ import annotations

import openai
import orjson

from audit.models import AuditEvent
from keys import services
from tests.conftest import gateway_env
from tests.content_helpers import (
    ANSWER,
    AWS_KEY,
    EMAIL,
    REDACTED_ANSWER,
    REDACTED_CONTENT,
    REDACTED_QUESTION,
    SPLIT,
    ask,
    assert_usage_only,
)
from tests.ledger_helpers import record_tagged
from tests.processes import GatewayProcess


def opt_in(demo) -> None:
    services.team_update(team=demo.team, store_content=True)
    demo.sync()


def test_nothing_is_kept_for_a_team_that_did_not_opt_in(demo, celery_worker):
    demo.mock.add_rule(answer=SPLIT)
    assert_usage_only(demo.openai())


def test_an_opted_in_team_keeps_the_messages_and_the_answer_redacted(demo, celery_worker):
    opt_in(demo)
    demo.mock.add_rule(answer=ANSWER)

    text, tag = ask(demo.openai(), stream=False)

    assert text == ANSWER  # no guardrail policy: the client's answer is untouched
    content = record_tagged(tag).content
    assert content == REDACTED_CONTENT
    stored = orjson.dumps(content).decode()
    assert EMAIL not in stored and AWS_KEY not in stored


def test_a_streamed_answer_is_assembled_from_its_deltas_and_redacted_whole(demo, celery_worker):
    opt_in(demo)
    demo.mock.add_rule(answer=SPLIT, inter_token_ms=20)

    text, tag = ask(demo.openai(), stream=True)

    assert text == ANSWER
    record = record_tagged(tag)
    assert record.stream
    assert record.content["response"] == REDACTED_ANSWER
    assert record.content["request"]["messages"][1]["content"] == REDACTED_QUESTION
    assert record.content["truncated"] is False


def test_opting_in_is_an_audited_change_of_the_team(demo):
    before = AuditEvent.objects.count()

    opt_in(demo)

    event = AuditEvent.objects.order_by("sequence")[before:].get()
    assert (event.action, event.object_type) == ("update", "keys.team")
    assert event.before["store_content"] is False
    assert event.after["store_content"] is True


def test_content_past_the_cap_is_cut_and_said_to_be_truncated(demo, celery_worker):
    opt_in(demo)
    words = [f"word{i:03d} " for i in range(200)]  # 1,600 bytes of answer
    demo.mock.add_rule(answer=words)
    server = GatewayProcess(gateway_env(GATEWAY_CONTENT_MAX_BYTES="100"))
    try:
        server.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=demo.key, max_retries=0)

        text, tag = ask(client, stream=True)
    finally:
        server.close()

    assert text == "".join(words)  # the client gets the whole stream
    content = record_tagged(tag).content
    assert content["truncated"] is True
    assert content["response"] == "".join(words)[:100]
    assert content["request"]["messages"][1]["content"] == REDACTED_QUESTION
