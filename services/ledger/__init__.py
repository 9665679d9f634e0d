"""The ledger service (LedgerService). See README.md beside this file."""
