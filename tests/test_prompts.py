"""Each plugin family with an obvious prompt serves one over MCP, with its arguments."""

from __future__ import annotations

import pytest
from mcp.client import Client

from core.surfaces.mcp import McpSurface

FAMILIES = ("coder", "vision", "imagegen", "video", "voice", "browser", "memory", "document")
pytestmark = pytest.mark.anyio


async def test_every_family_serves_a_prompt_over_mcp(make_app):
    app = make_app("admin", *FAMILIES)
    assert {p.plugin for p in app.prompts.values()} >= set(FAMILIES)
    surface = McpSurface(app)
    async with app, surface.running(), Client(surface.server, mode="legacy") as client:
        listed = {p.name: p for p in (await client.list_prompts()).prompts}
        assert set(app.prompts) <= set(listed)
        for name, prompt in app.prompts.items():
            required = {a["name"]: "a lighthouse.png" for a in prompt.arguments() if a["required"]}
            got = await client.get_prompt(name, required)
            text = got.messages[0].content.text
            assert all(v in text for v in required.values()), f"{name} uses its arguments"
