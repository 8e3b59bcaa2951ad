"""The REST endpoints of budgets, rate limits, prices, the request log and usage."""
