"""MCP surface over the SDK's in-memory client: fast protocol checks, both protocol eras."""

from __future__ import annotations

import threading

import anyio
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from core.surfaces.mcp import McpSurface, parse_line
from tests.conformance_plugin import probe

MODES = ["legacy", "2026-07-28"]
pytestmark = pytest.mark.anyio


async def consent(ctx, params):
    """The person behind the client says yes (admin tools are destructive: they ask)."""
    return types.ElicitResult(action="accept", content={"allow": True})


@pytest.fixture
def surface(make_app):
    probe.state["cancelled"] = threading.Event()
    probe.state["started"] = threading.Event()
    app = make_app("admin", extra={"probe": probe})
    return McpSurface(app)


@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_shows_every_registered_tool_with_schema_and_annotations(surface, mode):
    async with surface.app, surface.running(), Client(surface.server, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) >= {"probe.echo", "probe.wait", "admin.disable_plugin"}
    echo = tools["probe.echo"]
    assert echo.description == "Repeat the text."
    assert echo.input_schema["required"] == ["text"]
    assert echo.input_schema["properties"]["times"]["type"] == "integer"
    assert echo.annotations.read_only_hint is True and echo.annotations.destructive_hint is False
    assert echo.title == "Echo"


@pytest.mark.parametrize("mode", MODES)
async def test_call_results_become_mcp_content(surface, mode):
    async with surface.app, surface.running(), Client(surface.server, mode=mode) as client:
        text = await client.call_tool("probe.echo", {"text": "hi", "times": 2})
        numbers = await client.call_tool("probe.numbers", {})
        picture = await client.call_tool("probe.picture", {})
    assert text.content[0].text == "hi hi" and not text.is_error
    assert numbers.structured_content == {"result": [1, 2, 3]}
    kinds = [c.type for c in picture.content]
    assert kinds == ["text", "image", "resource_link"]
    assert picture.content[1].mime_type == "image/png" and picture.content[1].data
    assert picture.content[2].uri == "file:///tmp/loom-probe.png"
    assert picture.structured_content == {"width": 1, "height": 1}


@pytest.mark.parametrize("mode", MODES)
async def test_tool_errors_and_bad_arguments_are_error_results(surface, mode):
    async with surface.app, surface.running(), Client(surface.server, mode=mode) as client:
        failed = await client.call_tool("probe.fail", {})
        wrong = await client.call_tool("probe.echo", {"text": 5})
        extra = await client.call_tool("probe.echo", {"text": "x", "bogus": 1})
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("probe.nope", {})
    assert failed.is_error and "failed on purpose" in failed.content[0].text
    assert wrong.is_error and "Expected `str`, got `int`" in wrong.content[0].text
    assert extra.is_error and "bogus" in extra.content[0].text
    assert unknown.value.error.code == types.INVALID_PARAMS and "probe.nope" in unknown.value.error.message


@pytest.mark.parametrize("mode", MODES)
async def test_progress_reaches_the_client(surface, mode):
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress, total, message):
        seen.append((progress, total, message))

    async with surface.app, surface.running(), Client(surface.server, mode=mode) as client:
        result = await client.call_tool("probe.steps", {"steps": 3}, progress_callback=on_progress)
    assert result.content[0].text == "3 steps"
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_cancelling_a_call_stops_the_tool(surface):
    async with surface.app, surface.running(), Client(surface.server, mode="legacy") as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "probe.wait", {"seconds": 60})
            assert await anyio.to_thread.run_sync(probe.state["started"].wait, 10)
            tg.cancel_scope.cancel()  # the client sends notifications/cancelled
        assert await anyio.to_thread.run_sync(probe.state["cancelled"].wait, 10)
        # the server is still fine
        assert (await client.call_tool("probe.echo", {"text": "after"})).content[0].text == "after"


@pytest.mark.filterwarnings("ignore:ping is removed")
@pytest.mark.parametrize("mode", MODES)
async def test_a_long_tool_does_not_block_ping_or_tools_list(surface, mode):
    async with surface.app, surface.running(), Client(surface.server, mode=mode) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "probe.wait", {"seconds": 60})
            assert await anyio.to_thread.run_sync(probe.state["started"].wait, 10)
            with anyio.fail_after(10):
                # answered while probe.wait is still running
                if mode == "legacy":
                    await client.send_ping()
                assert any(t.name == "probe.wait" for t in (await client.list_tools()).tools)
                assert (await client.call_tool("probe.echo", {"text": "x"})).content[0].text == "x"
            assert not probe.state["cancelled"].is_set()
            tg.cancel_scope.cancel()


async def test_disabling_a_plugin_sends_tools_list_changed_legacy(surface):
    got = anyio.Event()

    async def handler(message):
        if isinstance(message, types.ToolListChangedNotification):
            got.set()

    async with surface.app, surface.running(), Client(surface.server, mode="legacy", message_handler=handler,
                                                      elicitation_callback=consent) as client:
        result = await client.call_tool("admin.disable_plugin", {"name": "probe"})
        assert not result.is_error
        with anyio.fail_after(10):
            await got.wait()
        names = {t.name for t in (await client.list_tools()).tools}
        assert "probe.echo" not in names
        await client.call_tool("admin.enable_plugin", {"name": "probe"})
        assert "probe.echo" in {t.name for t in (await client.list_tools()).tools}


async def test_disabling_a_plugin_notifies_listen_streams_modern(surface):
    async with surface.app, surface.running(), Client(surface.server, mode="2026-07-28",
                                                      elicitation_callback=consent) as client:
        async with client.listen(tools_list_changed=True) as sub:
            await client.call_tool("admin.disable_plugin", {"name": "probe"})
            with anyio.fail_after(10):
                event = await sub.__anext__()
        assert type(event).__name__ == "ToolsListChanged"
        assert "probe.echo" not in {t.name for t in (await client.list_tools()).tools}


@pytest.mark.parametrize("mode", MODES)
async def test_ctx_elicit_asks_the_client_in_both_eras(surface, mode):
    asked: list[str] = []

    async def answer(ctx, params):
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada" if "first" in params.message else "L"})

    async with surface.app, surface.running(), Client(surface.server, mode=mode,
                                                      elicitation_callback=answer) as client:
        result = await client.call_tool("probe.ask", {})
    assert result.content[0].text == "Ada L"
    assert asked[-2:] == ["Your first name?", "Your last name?"]


async def test_ctx_elicit_is_absent_without_the_client_capability(surface):
    async with surface.app, surface.running(), Client(surface.server, mode="legacy") as client:
        result = await client.call_tool("probe.ask", {})
    assert result.content[0].text == "cannot ask"


@pytest.mark.parametrize("mode", MODES)
async def test_resources_and_prompts(surface, mode):
    async with surface.app, surface.running(), Client(surface.server, mode=mode) as client:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        status = await client.read_resource("loom://status")
        with pytest.raises(MCPError):
            await client.read_resource("loom://nope")
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        got = await client.get_prompt("probe.greet", {"name": "Ada"})
        with pytest.raises(MCPError):
            await client.get_prompt("probe.greet", {})
    assert {"loom://status", "loom://events"} <= uris
    assert '"version"' in status.contents[0].text
    assert [a.name for a in prompts["probe.greet"].arguments] == ["name", "style"]
    assert got.messages[0].content.text == "Say hello to Ada in a plain way."


def test_stdio_line_parser_answers_bad_input_with_jsonrpc_errors():
    assert parse_line(b'{"jsonrpc":"2.0","id":1,"method":"ping"')[1]["code"] == types.PARSE_ERROR
    assert parse_line(b"\xff\xfe")[1]["code"] == types.PARSE_ERROR
    bad = parse_line(b'{"jsonrpc":"2.0","id":7,"method":5}')[1]
    assert bad["code"] == types.INVALID_REQUEST and bad["id"] == 7
    assert parse_line(b"[1,2]")[1]["code"] == types.INVALID_REQUEST
    deep = b'{"jsonrpc":"2.0","id":3,"method":"ping","params":{"a":' + b"[" * 200 + b"]" * 200 + b"}}"
    assert parse_line(deep)[1]["code"] == types.INVALID_REQUEST
    ok, err = parse_line(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert err is None and ok.method == "ping"


async def test_underscore_tool_names_for_clients_that_reject_dots(make_app):
    from core.config import LoomConfig, ServerConfig

    app = make_app("admin", extra={"probe": probe}, config=LoomConfig(server=ServerConfig(mcp_tool_names="underscore")))
    surface = McpSurface(app)
    async with app, surface.running(), Client(surface.server, mode="legacy", elicitation_callback=consent) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "admin_plugins" in names and "admin.plugins" not in names
        assert all("." not in n for n in names)
        result = await client.call_tool("admin_plugins", {})
        assert not result.is_error and "admin" in result.content[0].text
        await client.call_tool("admin_disable_plugin", {"name": "probe"})
        assert not any(n.startswith("probe_") for n in {t.name for t in (await client.list_tools()).tools})
