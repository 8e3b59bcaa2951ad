"""The interface every provider adapter implements.

The gateway's canonical request and answer are OpenAI's Chat Completions
shapes: a front door turns what its client sent into a canonical request, an
adapter turns that into its provider's bytes, and the provider's answer back
into a canonical completion (or, streamed, into canonical chunks), which the
front door renders in its client's format. When a client speaks the provider's
own wire format (an OpenAI client and an OpenAI-compatible provider, an
Anthropic client and Anthropic), nothing is translated: the request goes as
sent (with the provider's model name) and the answer's bytes are relayed
untouched.

Canonical shapes (plain dicts, exactly as OpenAI's API documents them):

* request: ``{"model", "messages": [...], "tools"?, "tool_choice"?, "stream"?,
  "max_tokens"? | "max_completion_tokens"?, "temperature"?, "top_p"?, "stop"?,
  "n"?, "seed"?, "response_format"?, "logprobs"?, "user"?, ...}``; message
  content is a string or a list of ``{"type": "text", "text"}`` /
  ``{"type": "image_url", "image_url": {"url"}}`` parts; assistant
  ``tool_calls`` and ``{"role": "tool", "tool_call_id", "content"}`` results.
* completion: ``{"id", "object": "chat.completion", "created", "model",
  "choices": [{"index", "message": {"role": "assistant", "content",
  "tool_calls"?}, "finish_reason"}], "usage": {"prompt_tokens",
  "completion_tokens", "total_tokens", "prompt_tokens_details":
  {"cached_tokens"}}}``; ``finish_reason`` is one of ``stop``, ``length``,
  ``tool_calls``, ``content_filter``.
* chunk: ``{"id", "object": "chat.completion.chunk", "created", "model",
  "choices": [{"index", "delta": {"role"?, "content"?, "tool_calls"?:
  [{"index", "id"?, "type"?, "function": {"name"?, "arguments"}}]},
  "finish_reason"}]}``; usage travels in a last chunk with ``"choices": []``
  and ``"usage": {...}`` (as OpenAI sends it for ``include_usage``).

Adding a provider is one module implementing :class:`ProviderAdapter` and one
line in ``proxy.providers.REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.usage import Usage


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What to send upstream."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where one attempt goes: the provider's address and options, one of its
    keys, and the provider's name for the model."""

    base_url: str
    api_key: str = field(repr=False)
    model: str
    # ``Provider.options``: per-kind settings such as Azure's ``api_version``
    # or Bedrock's ``region``.
    options: Mapping[str, Any] = field(default_factory=dict)


class StreamDecoder(Protocol):
    """Turns a provider's streamed bytes into canonical chunks, incrementally.

    ``feed`` gets the bytes as they arrive, cut anywhere (mid-event, mid-UTF-8
    sequence); it returns the chunks complete so far and keeps the rest.
    ``finish`` is called once the upstream stream ended and returns what is
    left (the final chunk with ``finish_reason``, then the usage chunk).
    A stream the decoder cannot understand raises a ``GatewayError`` (502,
    ``upstream_invalid_response``).
    """

    # The stream's usage once known (complete after ``finish``).
    usage: Usage | None

    def feed(self, data: bytes) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...


class ProviderAdapter(Protocol):
    """Wire-format translation for one kind of provider."""

    # ``Provider.kind`` served by this adapter.
    kind: str
    # The wire format spoken: "openai" or "anthropic" when a front door speaks
    # it too (then requests and answers pass through untranslated), else the
    # adapter's own name.
    wire: str
    # The content type of the provider's streamed answers.
    stream_content_type: str
    # The ``Provider.options`` this kind reads, by name, with what each means
    # (``Provider.clean`` refuses any other).
    options: Mapping[str, str]

    def chat_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        """A canonical chat request (already validated) as this provider's request."""
        ...

    def native_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        """A request already in this adapter's wire format (a client of the same
        wire), sent as it is but for the provider's model name. Only called
        when a front door speaks ``wire``."""
        ...

    def chat_response(self, data: Any, *, model: str) -> dict[str, Any]:
        """The provider's parsed (JSON) answer as a canonical completion."""
        ...

    def stream_decoder(self, *, model: str) -> StreamDecoder:
        """A decoder for one streamed answer."""
        ...

    # Optional: ``refused_key(status, body) -> bool``, for a provider that
    # refuses a key with something other than 401/403 (the gateway then
    # treats it as its own key's fault: another key, a cool-down, a 502).
