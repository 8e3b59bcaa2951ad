"""Finding a request's usage record, written off the request path.

Records arrive after the answer (a batch flush, or the Celery worker draining
the stream in cluster mode), and a late flush of an earlier test's requests
may land too: tests tag their requests with an ``x-request-id`` and look for
that tag.
"""

from __future__ import annotations

import time
import uuid

from governance.models import RequestRecord


def new_tag() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def record_tagged(tag: str, timeout: float = 20.0) -> RequestRecord:
    """The usage record of the request sent with ``x-request-id: tag``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = RequestRecord.objects.filter(client_request_id=tag).first()
        if record is not None:
            return record
        time.sleep(0.1)
    raise AssertionError(f"no usage record for the request {tag}")
