"""Surfaces: thin adapters that expose the kernel's registries to the outside world.

``mcp`` serves tools, resources and prompts as an MCP server (any transport);
``http`` is the daemon's ASGI app (MCP over streamable HTTP, plus future routes).
Both import the mcp SDK and Starlette only when used, so ``loom --help`` stays fast.
"""
