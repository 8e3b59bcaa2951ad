"""Log formatting: one JSON object per line, with secrets masked.

``JsonFormatter`` is what production uses (``GATEWAY_LOG_FORMAT=json``), so a
log pipeline reads fields, not prose. ``SecretFilter`` masks anything shaped
like a credential (virtual keys, provider keys, bearer tokens, cloud access
keys) in every record, whatever the format: a line that would leak one
carries a mask instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

import orjson

# Shapes of credentials that must never reach a log line.
SECRET_PATTERNS = re.compile(
    r"(?:"
    r"\bsk-[A-Za-z0-9_\-]{12,}"  # OpenAI, Anthropic (sk-ant-), the gateway's sk-gw-
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"  # AWS access key ids
    r"|\bAIza[0-9A-Za-z_\-]{30,}"  # Google API keys
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{12,}"  # bearer tokens
    r")"
)
MASK = "[secret]"


def mask_secrets(text: str) -> str:
    return SECRET_PATTERNS.sub(MASK, text)


class SecretFilter(logging.Filter):
    """Masks credentials in a record's message and arguments (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "exception"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line).decode()
