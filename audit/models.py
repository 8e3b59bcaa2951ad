"""The append-only audit trail of administrative changes (to come)."""
