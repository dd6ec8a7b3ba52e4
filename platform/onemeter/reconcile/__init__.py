"""Reconciliation (核对): a utility's own account list against the sub-district's ledger, and
the registry against the district plan. See DESIGN.md "Imports and reconciliation"."""
