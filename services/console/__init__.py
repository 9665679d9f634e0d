"""The operator console: server-rendered pages over assets, ledger and sealer, with the operator's own token."""
