"""燃气 (gas) as a OneMeter utility plugin, written only against the public hooks.

The hook implementations are in `onemeter_gas.plugin` (the entry point), the 入户安检 table in
`onemeter_gas.models`, its Alembic branch `gas` in `migrations/`.
"""

__version__ = "0.1.0"
