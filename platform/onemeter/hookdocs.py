"""The plugin guide's hook reference, generated from the hookspec docstrings.

`onemeter docs hooks` prints it; a test keeps the README's copy in step.
"""

from __future__ import annotations

import inspect

from onemeter import HOOK_API_VERSION, hookspecs


def hooks_markdown() -> str:
    """Markdown: one section per hook with its signature and docstring."""
    lines = [f"Hook API version {HOOK_API_VERSION}. Implement with "
             "`@onemeter.plugins.hookimpl`; project name `onemeter`.", ""]
    for name in hookspecs.all_hook_names():
        function = getattr(hookspecs, name)
        signature = str(inspect.signature(function)).replace("'", "")
        options = getattr(function, "onemeter_spec", {}) or {}
        flags = [k for k in ("firstresult", "historic") if options.get(k)]
        lines.append(f"#### `{name}{signature}`" + (f" ({', '.join(flags)})" if flags else ""))
        lines.append("")
        lines.append(inspect.cleandoc(function.__doc__ or "(undocumented)"))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
