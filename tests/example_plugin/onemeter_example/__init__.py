"""Example plugin for the tests: checklists with items, written only against the public hooks."""
