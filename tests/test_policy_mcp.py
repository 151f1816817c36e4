"""The policy's "ask" over a real MCP client (in-memory transport, both protocol eras)."""

from __future__ import annotations

import mcp_types as types
import pytest
from mcp.client import Client

from core.config import LoomConfig
from core.surfaces.mcp import McpSurface
from tests.test_policy import _make_tools

MODES = ["legacy", "2026-07-28"]
pytestmark = pytest.mark.anyio


@pytest.fixture
def surface(make_app):
    plugin, ran = _make_tools()
    app = make_app("policy", extra={"demo": plugin}, config=LoomConfig(plugin={"policy": {"deny": ["demo.tweak"]}}))
    surface = McpSurface(app)
    surface.ran = ran
    return surface


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_that_accepts_lets_the_destructive_tool_run(surface, mode):
    asked: list[str] = []

    async def accept(ctx, params):
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"allow": True})

    async with surface.app, surface.running(), Client(surface.server, mode=mode,
                                                      elicitation_callback=accept) as client:
        result = await client.call_tool("demo.wipe", {"text": "disk"})
    assert not result.is_error and result.content[0].text == "wiped"
    assert surface.ran == ["wipe"] and "Allow demo.wipe?" in asked[0]
    rows = surface.app.services["policy"].audit_path.read_text().splitlines()
    assert '"decision": "ask:accepted"' in rows[-1] and '"status": "ok"' in rows[-1]


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_that_declines_gets_an_error_and_nothing_runs(surface, mode):
    async def decline(ctx, params):
        return types.ElicitResult(action="decline")

    async with surface.app, surface.running(), Client(surface.server, mode=mode,
                                                      elicitation_callback=decline) as client:
        result = await client.call_tool("demo.wipe", {})
        denied = await client.call_tool("demo.tweak", {})
    assert result.is_error and "the user declined demo.wipe, so nothing was done" in result.content[0].text
    assert denied.is_error and "denied by the policy" in denied.content[0].text
    assert surface.ran == []


async def test_a_client_without_elicitation_is_told_why(surface):
    async with surface.app, surface.running(), Client(surface.server, mode="legacy") as client:
        result = await client.call_tool("demo.wipe", {})
        look = await client.call_tool("demo.look", {})
    assert result.is_error and "cannot be asked (no MCP elicitation support)" in result.content[0].text
    assert look.content[0].text == "looked" and surface.ran == ["look"]
