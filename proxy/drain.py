"""Whether this process is draining for shutdown.

Set by the server entry (``gateway_project.serve``) on SIGTERM, read by
``/readyz``, which then answers 503 so that no new work is sent here. Kept
free of imports: the signal may arrive while the application is still
being imported.
"""

from __future__ import annotations


class DrainState:
    """A flag, set once."""

    draining = False


state = DrainState()


def begin_drain() -> None:
    """Stop being ready; requests already accepted carry on."""
    state.draining = True
