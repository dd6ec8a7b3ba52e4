"""OneMeter (一户一表): the core of the retrofit administration platform.

Import nothing heavy here: `create_app()` in `onemeter.app` assembles everything.
"""

__version__ = "0.1.0"
#: Version of the hook API that plugins are written against (see hookspecs.py).
HOOK_API_VERSION = "1.5"
