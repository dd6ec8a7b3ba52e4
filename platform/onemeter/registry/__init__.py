"""The registry (台账): developers, communities and households, and the plan's targets.

`models` holds the tables, `categories` the plan's classification rules, `normalize` the
household address key, `plan` the shipped district plan and its totals check.
"""
