"""Loom's kernel: events, bus, plugins, tools, config, model pool.

Nothing here imports a model library at module level; backends import theirs lazily.
"""

__version__ = "0.1.0"
