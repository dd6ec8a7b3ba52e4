"""诉讼 (litigation) plugin: tracing vanished developers, lawsuits, recoveries (五(四)).

Written only against the public hooks and the core's public classes, as a third party would.
"""

from __future__ import annotations

from onemeter.plugins import PluginInfo, hookimpl

__version__ = "0.1.0"


@hookimpl
def onemeter_plugin_info() -> PluginInfo:
    return PluginInfo(label="诉讼", version=__version__,
                      description="开发企业注销、解散或失联：查找、催告、起诉、执行与追回款项")
