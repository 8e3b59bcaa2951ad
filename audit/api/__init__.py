"""The REST endpoints of the audit trail: read-only, with its JSONL and CSV export."""
