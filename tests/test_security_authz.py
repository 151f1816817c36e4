"""Authorization fails closed (issue 20, item 1): the policy cannot be switched off by a
client, no policy answer is not "allow", consent is an explicit yes bound to the request,
and an audit line that cannot be written stops the action. Real MCP clients over the
SDK's in-memory transport, both protocol eras."""

from __future__ import annotations

import json

import mcp_types as types
import pytest
from mcp.client import Client

from core.config import LoomConfig
from core.surfaces.mcp import McpSurface
from core.tools import ToolContext, ToolDenied
from tests.test_policy import _make_tools

MODES = ["legacy", "2026-07-28"]
pytestmark = pytest.mark.anyio


async def yes(ctx, params):
    return types.ElicitResult(action="accept", content={"allow": True})


def _surface(make_app, *builtins, **policy):
    plugin, ran = _make_tools()
    app = make_app(*builtins, extra={"demo": plugin}, config=LoomConfig(plugin={"policy": policy}))
    surface = McpSurface(app)
    return surface, ran


def _audit(app) -> list[dict]:
    return [json.loads(line) for line in app.services["policy"].audit_path.read_text().splitlines()]


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_cannot_disable_the_policy_even_with_consent(make_app, mode):
    surface, ran = _surface(make_app, "admin", "policy", deny=["demo.wipe"])
    async with surface.app, surface.running(), Client(surface.server, mode=mode, elicitation_callback=yes) as client:
        off = await client.call_tool("admin.disable_plugin", {"name": "policy"})
        wipe = await client.call_tool("demo.wipe", {})
    assert off.is_error and "cannot be disabled at run time" in off.content[0].text
    assert surface.app.host.plugins["policy"].enabled
    assert wipe.is_error and "denied by the policy" in wipe.content[0].text and ran == []
    rows = _audit(surface.app)
    admin = [r for r in rows if r["tool"] == "admin.disable_plugin"]
    # the admin tool is destructive: it asked, and the attempt is in the audit log
    assert [r["status"] for r in admin] == ["started", "error"] and admin[0]["decision"] == "ask:accepted"


async def test_a_config_reload_never_switches_the_policy_off(make_app, monkeypatch):
    surface, _ = _surface(make_app, "admin", "policy")
    app = surface.app
    monkeypatch.setattr(app.host, "_allowed", lambda name: False)  # a config that disables everything
    async with app:
        changes = app.reload_config()
    assert "policy" not in changes["disabled"] and app.host.plugins["policy"].enabled
    assert "demo" in changes["disabled"]


async def test_admin_tools_are_destructive_so_a_client_that_cannot_be_asked_is_refused(make_app):
    surface, _ = _surface(make_app, "admin", "policy")
    async with surface.app, surface.running(), Client(surface.server, mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        off = await client.call_tool("admin.disable_plugin", {"name": "demo"})
    for name in ("admin.enable_plugin", "admin.disable_plugin", "admin.reload_config"):
        assert tools[name].annotations.destructive_hint is True
    assert off.is_error and "needs the user's consent" in off.content[0].text
    assert surface.app.host.plugins["demo"].enabled


@pytest.mark.parametrize("mode", MODES)
async def test_without_a_policy_plugin_destructive_tools_still_ask(make_app, mode):
    surface, ran = _surface(make_app, "admin")  # no policy plugin: the kernel's default decides
    async with surface.app, surface.running():
        async with Client(surface.server, mode=mode) as client:
            refused = await client.call_tool("demo.wipe", {})
            looked = await client.call_tool("demo.look", {})
        async with Client(surface.server, mode=mode, elicitation_callback=yes) as client:
            allowed = await client.call_tool("demo.wipe", {})
    assert refused.is_error and "needs the user's consent" in refused.content[0].text
    assert looked.content[0].text == "looked" and allowed.content[0].text == "wiped"
    assert ran == ["look", "wipe"]


async def test_a_raising_or_broken_authorize_hook_is_a_refusal(make_app):
    import types as pytypes

    from core.hookspecs import hookimpl

    @hookimpl
    def loom_authorize(call, app):
        if call.tool.name == "demo.look":
            raise RuntimeError("policy backend down")
        return "yes please"

    plugin, ran = _make_tools()
    app = make_app(extra={"demo": plugin, "broken": pytypes.SimpleNamespace(loom_authorize=loom_authorize)})
    async with app:
        with pytest.raises(ToolDenied, match="policy failed to decide"):
            await app.call("demo.look", {})
        with pytest.raises(ToolDenied, match="no valid decision"):
            await app.call("demo.tweak", {})
    assert ran == []


@pytest.mark.parametrize("mode", MODES)
async def test_an_accept_without_allow_is_not_consent(make_app, mode):
    surface, ran = _surface(make_app, "policy")

    async def blind_accept(ctx, params):  # a client that accepts every form without filling it in
        return types.ElicitResult(action="accept", content={})

    async with surface.app, surface.running(), Client(surface.server, mode=mode,
                                                      elicitation_callback=blind_accept) as client:
        result = await client.call_tool("demo.wipe", {})
    assert result.is_error and "did not allow demo.wipe" in result.content[0].text
    assert ran == []


async def test_a_consent_request_cannot_be_pre_answered_on_the_2026_protocol(make_app):
    surface, ran = _surface(make_app, "policy")
    forged = {f"loom-elicit-{i}": {"action": "accept", "content": {"allow": True}} for i in range(3)}
    asked: list[str] = []

    async def no(ctx, params):
        asked.append(params.message)
        return types.ElicitResult(action="decline")

    async with surface.app, surface.running(), Client(surface.server, mode="2026-07-28",
                                                      elicitation_callback=no) as client:
        result = await client.call_tool("demo.wipe", {}, input_responses=forged)
    # the forged answers were ignored: the person was really asked, and said no
    assert result.is_error and "declined" in result.content[0].text
    assert ran == [] and len(asked) == 1


async def test_consent_on_the_2026_protocol_is_bound_to_the_request(make_app):
    surface, ran = _surface(make_app, "policy")
    # The callback only declares the capability: the rounds are driven by hand below.
    async with surface.app, surface.running(), Client(surface.server, mode="2026-07-28",
                                                      elicitation_callback=yes) as client:
        first = await client.session.call_tool("demo.wipe", {"text": "a"}, allow_input_required=True)
        key = next(iter(first.input_requests))
        answer = {key: {"action": "accept", "content": {"allow": True}}}
        # the same key and sealed state replayed for other arguments: refused by the SDK's binding
        with pytest.raises(Exception, match="Invalid or expired requestState"):
            await client.session.call_tool("demo.wipe", {"text": "b"}, input_responses=answer,
                                           request_state=first.request_state, allow_input_required=True)
        done = await client.session.call_tool("demo.wipe", {"text": "a"}, input_responses=answer,
                                              request_state=first.request_state, allow_input_required=True)
    assert key.startswith("loom-elicit-") and len(key) > len("loom-elicit-") + 16  # random, not a counter
    assert not done.is_error and ran == ["wipe"]


async def test_a_call_whose_audit_line_cannot_be_written_does_not_run(make_app, data_dir):
    blocker = data_dir / "not-a-dir"
    blocker.write_text("a file where the audit log's folder should be")
    plugin, ran = _make_tools()
    app = make_app("policy", extra={"demo": plugin},
                   config=LoomConfig(plugin={"policy": {"audit_file": str(blocker / "audit.jsonl")}}))
    async with app:
        with pytest.raises(ToolDenied, match="audit log .* cannot be written"):
            await app.call("demo.tweak", {}, ctx=ToolContext(surface="mcp"))
        assert (await app.call("demo.look", {})).text() == "looked"  # read-only: nothing to stop
    assert ran == ["look"]


async def test_the_audit_log_is_private(make_app):
    surface, _ = _surface(make_app, "policy")
    async with surface.app:
        await surface.app.call("demo.look", {})
    assert surface.app.services["policy"].audit_path.stat().st_mode & 0o777 == 0o600
