"""The mock LLM provider: a fast, faithful stand-in for every upstream the gateway speaks.

``server`` holds the core (behaviour, rules, failure injection, OpenAI and
Anthropic); ``formats`` lists the further wire formats, one module each.
"""

from proxy.mock_provider.server import (
    MODELS,
    Behaviour,
    MockProvider,
    MockServerThread,
    Rule,
    add_cli_arguments,
    anthropic_error,
    count_input_tokens,
    main,
    make_app,
    openai_error,
    parse_overrides,
    provider_from_options,
    run_from_options,
    serve,
    start_in_loop,
)

__all__ = [
    "MODELS",
    "Behaviour",
    "MockProvider",
    "MockServerThread",
    "Rule",
    "add_cli_arguments",
    "anthropic_error",
    "count_input_tokens",
    "main",
    "make_app",
    "openai_error",
    "parse_overrides",
    "provider_from_options",
    "run_from_options",
    "serve",
    "start_in_loop",
]
