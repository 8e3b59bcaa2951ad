"""Counting tokens where a provider does not: a real BPE tokenizer (tiktoken's
``cl100k_base``), loaded once per process from a local file, never downloaded.

Counts are estimates for any model whose own tokenizer differs; records that
use them are marked as estimated.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import orjson
import tiktoken
from tiktoken.load import load_tiktoken_bpe

# tiktoken's published SHA-256 of cl100k_base.tiktoken.
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
    r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
# Per-message overhead of chat formats (role and separators), as OpenAI counts it.
TOKENS_PER_MESSAGE = 3


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The tokenizer (about 0.3 s to load the first time)."""
    import tiktoken_ext

    path = os.path.join(next(iter(tiktoken_ext.__path__)), "data", "cl100k_base.tiktoken")
    return tiktoken.Encoding(
        name="cl100k_base",
        pat_str=CL100K_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(path, expected_hash=CL100K_SHA256),
        special_tokens={"<|endoftext|>": 100257},
    )


def count_text(text: str) -> int:
    return len(encoding().encode_ordinary(text)) if text else 0


def _text_of(value: Any) -> str:
    """Every string inside a JSON value (texts, tool arguments, schemas)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(_text_of(item) for key, item in value.items() if key != "data")
    if isinstance(value, list):
        return " ".join(_text_of(item) for item in value)
    return ""


def count_messages(messages: Any, *, system: Any = None, tools: Any = None) -> int:
    """Input tokens of a chat request: message texts plus their framing.

    Inline image data is not counted as text (providers price images apart).
    """
    total = count_text(_text_of(system)) if system else 0
    if isinstance(messages, list):
        for message in messages:
            total += TOKENS_PER_MESSAGE + count_text(_text_of(message))
    if tools:
        total += count_text(orjson.dumps(tools).decode())
    return max(total, 1)
