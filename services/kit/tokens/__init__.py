"""Operator tokens in the table: the only code that builds `TOKEN#` keys (see ACCESS_PATTERNS.md)."""
