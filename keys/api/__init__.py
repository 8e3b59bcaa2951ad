"""The REST management API's shared parts and its endpoints for keys (``/api/v1/``)."""
