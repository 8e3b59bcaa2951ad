"""Policy and money: budgets, limits, prices and the usage ledger (to come)."""
