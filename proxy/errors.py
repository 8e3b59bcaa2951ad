"""Errors the data plane answers with, in the client's own envelope.

Raising :class:`GatewayError` anywhere on the request path ends the request
with that status; the consumer renders it in OpenAI's or Anthropic's shape.
"""

from __future__ import annotations

import orjson

# Status → OpenAI's error ``type`` for errors the gateway itself raises.
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class GatewayError(Exception):
    """A request the gateway refuses or cannot complete; never a 500."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        error_type: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        retryable: bool = False,
        key_fault: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        # For upstream failures: may another attempt succeed, is the provider
        # key to blame (switch keys), and how long the provider asked to wait.
        self.retryable = retryable
        self.key_fault = key_fault
        self.retry_after = retry_after
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type or OPENAI_TYPES.get(status, "api_error")
        self.headers = headers or []

    def openai_body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.error_type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )


def bad_request(
    message: str, *, param: str | None = None, code: str = "invalid_request"
) -> GatewayError:
    return GatewayError(400, message, code=code, param=param)
