"""资金 (funding) plugin: investment, fiscal review, developer share, backstop, award (四(一)).

Written only against the public hooks and the core's public classes, as a third party would.
"""

from __future__ import annotations

from onemeter.plugins import PluginInfo, hookimpl

__version__ = "0.1.0"


@hookimpl
def onemeter_plugin_info() -> PluginInfo:
    return PluginInfo(label="资金", version=__version__,
                      description="改造资金：投资估算、财政评审、开发企业出资、财政兜底、以奖代补")
