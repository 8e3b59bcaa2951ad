"""The response cache: repeated identical requests answered without the provider."""

from __future__ import annotations

import time

import httpx
import pytest
from django.conf import settings

from governance import services as governance
from keys import services
from proxy.cache import MemoryStore
from tests.conftest import gateway_env
from tests.ledger_helpers import new_tag, record_tagged
from tests.processes import GatewayProcess
from tests.test_metrics import scrape, total

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def ask(demo, key: str | None = None, **extra):
    """An OpenAI SDK chat request; returns the raw response (headers) and the completion."""
    raw = demo.openai(key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=QUESTION, max_tokens=20, **extra
    )
    return raw, raw.parse()


def streamed(demo, key: str | None = None, **extra):
    """A streamed OpenAI SDK chat request: its headers, its text, its chunks."""
    raw = demo.openai(key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=QUESTION, max_tokens=20, stream=True, **extra
    )
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return raw, text, chunks


def cache_on(demo, seconds: int = 60) -> None:
    services.team_update(team=demo.team, cache_ttl_seconds=seconds)
    demo.sync()


def test_the_cache_is_off_unless_a_team_or_key_opts_in(demo):
    first, _ = ask(demo)
    second, _ = ask(demo)
    assert demo.mock.request_count() == 2
    assert "x-gateway-cache" not in first.headers
    assert "x-gateway-cache" not in second.headers


def test_a_repeated_request_is_answered_without_the_provider(demo, celery_worker):
    cache_on(demo)
    first, answer = ask(demo)
    tag = new_tag()
    second, again = ask(demo, extra_headers={"x-request-id": tag})
    assert first.headers["x-gateway-cache"] == "miss"
    assert second.headers["x-gateway-cache"] == "hit"
    assert demo.mock.request_count() == 1
    assert again.choices[0].message.content == answer.choices[0].message.content
    assert again.id == answer.id
    record = record_tagged(tag)
    assert record.cache_hit and record.status == 200
    assert (record.input_tokens, record.output_tokens, record.cost_micros) == (0, 0, 0)


def test_a_whole_answer_replays_identically_as_an_openai_stream(demo):
    cache_on(demo)
    _, answer = ask(demo)
    raw, text, chunks = streamed(demo, stream_options={"include_usage": True})
    assert raw.headers["x-gateway-cache"] == "hit"
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert demo.mock.request_count() == 1
    assert text == answer.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == answer.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


def test_a_streamed_answer_is_stored_once_complete_and_replays_both_ways(demo):
    cache_on(demo)
    first, text, _ = streamed(demo)
    assert first.headers["x-gateway-cache"] == "miss"
    replay, replayed, chunks = streamed(demo)
    assert replay.headers["x-gateway-cache"] == "hit"
    assert replayed == text
    # Usage was not asked for: the replay has no usage chunk either.
    assert all(chunk.usage is None for chunk in chunks)
    whole, answer = ask(demo)
    assert whole.headers["x-gateway-cache"] == "hit"
    assert answer.choices[0].message.content == text
    assert demo.mock.request_count() == 1


def test_tool_calls_replay_as_a_stream(demo):
    cache_on(demo)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    _, answer = ask(demo, tools=tools)
    call = answer.choices[0].message.tool_calls[0]
    raw, _, chunks = streamed(demo, tools=tools)
    assert raw.headers["x-gateway-cache"] == "hit"
    calls = [
        c for chunk in chunks if chunk.choices for c in chunk.choices[0].delta.tool_calls or []
    ]
    assert calls[0].id == call.id and calls[0].function.name == call.function.name
    assert "".join(c.function.arguments or "" for c in calls) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_another_team_asking_the_same_misses(demo):
    cache_on(demo)
    other = services.team_create(name="research", customer=demo.team.customer)
    services.team_update(team=other, cache_ttl_seconds=60)
    _, secret = services.virtual_key_create(name="research-app", team=other)
    _, own = services.virtual_key_create(name="platform-second", team=demo.team)
    demo.sync()
    ask(demo)
    theirs, _ = ask(demo, secret)
    assert theirs.headers["x-gateway-cache"] == "miss"
    # Keys of the team that opted in share its entries.
    mine, _ = ask(demo, own)
    assert mine.headers["x-gateway-cache"] == "hit"
    assert demo.mock.request_count() == 2


def test_a_customer_may_share_entries_across_its_teams(demo):
    services.customer_update(
        customer=demo.team.customer, cache_ttl_seconds=60, cache_shared_across_teams=True
    )
    sibling = services.team_create(name="research", customer=demo.team.customer)
    _, theirs = services.virtual_key_create(name="research-app", team=sibling)
    stranger = services.team_create(
        name="outside",
        customer=services.customer_create(name="globex", cache_ttl_seconds=60),
    )
    _, outsider = services.virtual_key_create(name="outside-app", team=stranger)
    demo.sync()
    ask(demo)
    assert ask(demo, theirs)[0].headers["x-gateway-cache"] == "hit"
    assert ask(demo, outsider)[0].headers["x-gateway-cache"] == "miss"
    assert demo.mock.request_count() == 2


def test_a_key_opting_in_alone_keeps_its_entries_to_itself(demo):
    key, secret = services.virtual_key_create(
        name="platform-cached", team=demo.team, cache_ttl_seconds=60
    )
    demo.sync()
    ask(demo, secret)
    again, _ = ask(demo, secret)
    assert again.headers["x-gateway-cache"] == "hit"
    teammate, _ = ask(demo)  # the team's other key has no cache
    assert "x-gateway-cache" not in teammate.headers
    # A key may turn its team's cache off for itself.
    services.team_update(team=demo.team, cache_ttl_seconds=60)
    services.virtual_key_update(key=key, cache_ttl_seconds=0)
    demo.sync()
    off, _ = ask(demo, secret)
    assert "x-gateway-cache" not in off.headers
    assert demo.mock.request_count() == 3


def test_a_different_request_misses(demo):
    cache_on(demo)
    ask(demo)
    warmer, _ = ask(demo, temperature=0.9)
    other_model = demo.openai().chat.completions.with_raw_response.create(
        model="mock/mock-gpt", messages=QUESTION, max_tokens=20
    )
    assert warmer.headers["x-gateway-cache"] == "miss"
    assert other_model.headers["x-gateway-cache"] == "miss"
    assert demo.mock.request_count() == 3


def test_entries_expire_after_their_ttl(demo):
    cache_on(demo, seconds=1)
    ask(demo)
    assert ask(demo)[0].headers["x-gateway-cache"] == "hit"
    time.sleep(1.6)
    assert ask(demo)[0].headers["x-gateway-cache"] == "miss"
    assert demo.mock.request_count() == 2


def test_no_cache_skips_the_lookup_but_stores_the_fresh_answer(demo):
    cache_on(demo)
    ask(demo)
    fresh, _ = ask(demo, extra_headers={"cache-control": "no-cache"})
    assert fresh.headers["x-gateway-cache"] == "bypass"
    assert demo.mock.request_count() == 2
    assert ask(demo)[0].headers["x-gateway-cache"] == "hit"


def test_no_store_neither_reads_nor_stores(demo):
    cache_on(demo)
    first, _ = ask(demo, extra_headers={"cache-control": "no-store"})
    assert first.headers["x-gateway-cache"] == "bypass"
    assert ask(demo)[0].headers["x-gateway-cache"] == "miss"
    assert demo.mock.request_count() == 2


def test_requests_for_several_choices_are_not_cached(demo):
    cache_on(demo)
    ask(demo, n=2)
    again, _ = ask(demo, n=2)
    assert again.headers["x-gateway-cache"] == "bypass"
    assert demo.mock.request_count() == 2


def test_errors_are_not_cached(demo):
    cache_on(demo)
    demo.mock.add_rule(match={"path": "/v1/chat/completions"}, status=400, times=1)
    with pytest.raises(Exception):  # noqa: B017 - the SDK's BadRequestError
        ask(demo)
    assert ask(demo)[0].headers["x-gateway-cache"] == "miss"
    assert demo.mock.request_count() == 2


def test_a_hit_costs_nothing_against_the_budget(demo):
    governance.model_price_set(
        provider_kind="openai",
        model="mock-gpt",
        input_micros_per_mtok=1_000_000,
        output_micros_per_mtok=2_000_000,
    )
    governance.budget_create(owner=demo.team, amount_micros=5_000_000, period="1d")
    cache_on(demo)
    labels = (("owner", "platform"), ("period", "1d"), ("scope", "team"))

    def remaining() -> float:
        # Settlement follows the answer: wait until the reservation is replaced.
        deadline = time.monotonic() + 5
        while True:
            value = scrape(demo.gateway.client)["gateway_budget_remaining_micros"][labels]
            if value == 5_000_000 - cost or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    _, answer = ask(demo)
    cost = -(
        -(answer.usage.prompt_tokens * 1_000_000 + answer.usage.completion_tokens * 2_000_000)
        // 1_000_000
    )
    assert cost > 0
    assert remaining() == 5_000_000 - cost
    assert ask(demo)[0].headers["x-gateway-cache"] == "hit"
    time.sleep(0.3)
    assert remaining() == 5_000_000 - cost
    after = scrape(demo.gateway.client)
    assert total(after, "gateway_cache_lookups_total", team="platform", result="hit") >= 1
    assert total(after, "gateway_cache_lookups_total", team="platform", result="miss") >= 1


def test_a_hit_counts_against_request_rate_limits(demo):
    governance.rate_limit_create(owner=demo.team, metric="requests", limit=2, window_seconds=60)
    cache_on(demo)
    ask(demo)
    assert ask(demo)[0].headers["x-gateway-cache"] == "hit"
    refused = demo.gateway.client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": QUESTION, "max_tokens": 20},
        headers={"authorization": f"Bearer {demo.key}"},
    )
    assert refused.status_code == 429


# --- the Anthropic front door ----------------------------------------------------------


def ask_claude(demo, model: str = "claude-sonnet"):
    raw = demo.anthropic().messages.with_raw_response.create(
        model=model, max_tokens=20, messages=QUESTION
    )
    return raw, raw.parse()


@pytest.mark.parametrize("model", ["claude-sonnet", "gpt-4o-mini"])
def test_the_anthropic_front_door_replays_a_message_as_its_event_stream(claude, model):
    cache_on(claude)
    first, message = ask_claude(claude, model)
    assert first.headers["x-gateway-cache"] == "miss"
    second, again = ask_claude(claude, model)
    assert second.headers["x-gateway-cache"] == "hit"
    assert again.content[0].text == message.content[0].text
    with claude.anthropic().messages.stream(
        model=model, max_tokens=20, messages=QUESTION
    ) as stream:
        assert stream.response.headers["x-gateway-cache"] == "hit"
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.content[0].text == message.content[0].text
    assert final.stop_reason == message.stop_reason
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert claude.mock.request_count() == 1


def test_an_anthropic_stream_is_stored_and_replayed_as_a_message(claude):
    cache_on(claude)
    with claude.anthropic().messages.stream(
        model="claude-sonnet", max_tokens=20, messages=QUESTION
    ) as stream:
        assert stream.response.headers["x-gateway-cache"] == "miss"
        streamed_text = stream.get_final_text()
    _, message = ask_claude(claude)
    assert message.content[0].text == streamed_text
    assert message.usage.output_tokens > 0
    assert claude.mock.request_count() == 1


def test_the_front_doors_do_not_share_entries(claude):
    cache_on(claude)
    ask_claude(claude, "gpt-4o-mini")
    openai_door, _ = ask(claude)
    assert openai_door.headers["x-gateway-cache"] == "miss"


# --- the stores --------------------------------------------------------------------------


def test_the_in_process_store_drops_the_least_recently_used_first():
    store = MemoryStore(max_entries=2, max_bytes=1000)
    store.put("a", b"1", 60, now=0)
    store.put("b", b"2", 60, now=0)
    assert store.get("a", now=1) == b"1"  # a is now the most recent
    store.put("c", b"3", 60, now=1)
    assert store.get("b", now=1) is None
    assert store.get("a", now=1) == b"1" and store.get("c", now=1) == b"3"
    assert store.get("a", now=61) is None  # expired


def test_the_in_process_store_keeps_within_its_bytes():
    store = MemoryStore(max_entries=100, max_bytes=10)
    store.put("a", b"12345", 60, now=0)
    store.put("b", b"12345", 60, now=0)
    store.put("c", b"123", 60, now=0)
    assert store.get("a", now=0) is None
    assert store.size == 8
    store.put("big", b"x" * 11, 60, now=0)
    assert store.get("big", now=0) is None


def test_an_answer_larger_than_the_entry_limit_is_served_but_not_stored(demo):
    server = GatewayProcess(gateway_env(GATEWAY_CACHE_MAX_ENTRY_BYTES="64"))
    try:
        cache_on(demo)
        server.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
        client = httpx.Client(base_url=server.url, timeout=20)
        body = {"model": "gpt-4o-mini", "messages": QUESTION, "max_tokens": 20}
        auth = {"authorization": f"Bearer {demo.key}"}
        for _ in range(2):
            answer = client.post("/v1/chat/completions", json=body, headers=auth)
            assert answer.status_code == 200
            assert answer.headers["x-gateway-cache"] == "miss"
        for _ in range(2):
            with client.stream(
                "POST", "/v1/chat/completions", json={**body, "stream": True}, headers=auth
            ) as answer:
                assert answer.headers["x-gateway-cache"] == "miss"
                assert b"[DONE]" in answer.read()
        client.close()
    finally:
        server.close()


@pytest.mark.skipif(not settings.REDIS_URL, reason="cluster mode: replicas share Redis")
def test_replicas_share_entries_through_redis(demo):
    cache_on(demo)
    replica = GatewayProcess(gateway_env())
    try:
        replica.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
        _, answer = ask(demo)
        body = {"model": "gpt-4o-mini", "messages": QUESTION, "max_tokens": 20}
        hit = replica.client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {demo.key}"}
        )
        assert hit.headers["x-gateway-cache"] == "hit"
        assert hit.json()["choices"][0]["message"]["content"] == answer.choices[0].message.content
        assert demo.mock.request_count() == 1
    finally:
        replica.close()


@pytest.mark.skipif(bool(settings.REDIS_URL), reason="embedded mode: each process its own store")
def test_embedded_processes_keep_their_own_entries(demo):
    cache_on(demo)
    other = GatewayProcess(gateway_env())
    try:
        other.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
        ask(demo)
        body = {"model": "gpt-4o-mini", "messages": QUESTION, "max_tokens": 20}
        answer = other.client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {demo.key}"}
        )
        assert answer.headers["x-gateway-cache"] == "miss"
    finally:
        other.close()
