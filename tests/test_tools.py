"""The tool registry: schemas, validation errors, annotations, threads, progress, cancellation."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Literal

import anyio
import msgspec
import pytest

from core.bus import EventBus
from core.events import Progress, ToolFinished
from core.results import Image, ToolResult
from core.tools import (
    Decision,
    DuplicateToolError,
    NoArgs,
    ToolArgumentError,
    ToolContext,
    ToolDenied,
    ToolNotFound,
    ToolRegistry,
)


class Viewport(msgspec.Struct):
    width: int
    height: int = 600


class OpenArgs(msgspec.Struct, forbid_unknown_fields=True):
    """Open a page."""

    url: Annotated[str, msgspec.Meta(description="Where to go.")]
    wait: Literal["load", "idle"] = "load"
    viewport: Viewport | None = None


async def open_page(args: OpenArgs) -> dict:
    """Open a URL and return its title."""
    return {"url": args.url, "wait": args.wait}


def test_schema_is_a_plain_object_with_nested_defs():
    reg = ToolRegistry()
    tool = reg.add(open_page, plugin="browser", name="open", read_only=True, open_world=True)
    schema = tool.input_schema
    assert "$ref" not in schema and schema["type"] == "object"
    assert schema["required"] == ["url"]
    assert schema["properties"]["url"]["description"] == "Where to go."
    assert sorted(schema["properties"]["wait"]["enum"]) == ["idle", "load"]
    assert "Viewport" in schema["$defs"], "nested structs stay resolvable from the inlined root"
    assert tool.name == "browser.open" and tool.description == "Open a URL and return its title."
    assert tool.annotations.to_mcp() == {
        "readOnlyHint": True, "destructiveHint": False, "idempotentHint": False, "openWorldHint": True,
    }
    assert tool.summary() == "browser.open(url: string, wait?: 'idle'|'load', viewport?: Viewport|null)"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"url": 5}, "Expected `str`, got `int` - at `$.url`"),
        ({}, "Object missing required field `url`"),
        ({"url": "x", "wait": "soon"}, "Invalid enum value 'soon' - at `$.wait`"),
        ({"url": "x", "extra": 1}, "Object contains unknown field `extra`"),
        ({"url": "x", "viewport": {"width": "wide"}}, "Expected `int`, got `str` - at `$.viewport.width`"),
        (b'{"url": ', "not valid JSON"),
        ([1, 2], "Expected `object`, got `array`"),
    ],
)
async def test_validation_errors_are_readable(arguments, message):
    reg = ToolRegistry()
    reg.add(open_page, plugin="browser", name="open")
    with pytest.raises(ToolArgumentError) as err:
        await reg.call("browser.open", arguments)
    assert message in str(err.value) and "browser.open" in str(err.value)


def test_duplicates_name_both_plugins():
    reg = ToolRegistry()
    reg.add(open_page, plugin="browser", name="open")
    with pytest.raises(DuplicateToolError, match="registered by plugin 'other' is already registered by plugin"
                       " 'browser'"):
        reg.add(open_page, plugin="other", name="browser.open")


def test_bad_tool_definitions_are_refused_at_registration():
    reg = ToolRegistry()

    def no_args() -> str:
        return ""

    def untyped(x) -> str:
        return ""

    with pytest.raises(TypeError, match="NoArgs"):
        reg.add(no_args, plugin="p")
    with pytest.raises(TypeError, match="msgspec.Struct"):
        reg.add(untyped, plugin="p")
    with pytest.raises(ValueError, match="invalid tool name"):
        reg.add(open_page, plugin="p", name="has space")


@pytest.mark.anyio
async def test_unknown_tool_suggests_near_names():
    reg = ToolRegistry()
    reg.add(open_page, plugin="browser", name="open")
    with pytest.raises(ToolNotFound, match="Did you mean browser.open"):
        await reg.call("web.open", {"url": "x"})


@pytest.mark.anyio
async def test_sync_tools_run_in_a_thread_and_do_not_block_the_loop():
    reg = ToolRegistry()
    loop_thread = threading.get_ident()

    def slow(args: NoArgs) -> dict:
        """Block for a while."""
        time.sleep(0.3)
        return {"same_thread": threading.get_ident() == loop_thread}

    reg.add(slow, plugin="t")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        result = await reg.call("t.slow")
        tg.cancel_scope.cancel()
    assert result.structured == {"same_thread": False}
    assert ticks >= 5, "the event loop kept running while the sync tool worked (blocked: 0 or 1)"


@pytest.mark.anyio
async def test_progress_is_published_and_forwarded():
    async with EventBus() as bus:
        reg = ToolRegistry(bus)
        seen_progress: list[Progress] = []
        finished: list[ToolFinished] = []
        bus.subscribe(Progress, seen_progress.append)
        bus.subscribe(ToolFinished, finished.append)

        def steps(args: NoArgs, ctx: ToolContext) -> str:
            for i in range(3):
                ctx.progress_sync(i + 1, 3, f"step {i + 1}")
            return "done"

        reg.add(steps, plugin="t")
        forwarded: list[tuple] = []

        async def on_progress(p, total, msg):
            forwarded.append((p, total, msg))

        result = await reg.call("t.steps", {}, ToolContext(on_progress=on_progress, correlation_id="req-9"))
        await anyio.sleep(0.01)
    assert result.text() == "done"
    assert forwarded == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert [p.progress for p in seen_progress] == [1, 2, 3]
    assert all(p.correlation_id == "req-9" for p in seen_progress)
    assert finished[-1].ok and finished[-1].tool == "t.steps"


@pytest.mark.anyio
async def test_cancelling_a_sync_tool_stops_it_at_its_next_check():
    reg = ToolRegistry()
    stopped = threading.Event()
    started = threading.Event()

    def loop(args: NoArgs, ctx: ToolContext) -> str:
        started.set()
        try:
            for i in range(1000):
                ctx.progress_sync(i)
                time.sleep(0.01)
        finally:
            stopped.set()
        return "finished"

    reg.add(loop, plugin="t")
    ctx = ToolContext()
    with anyio.move_on_after(0.2):
        await reg.call("t.loop", {}, ctx)
    assert ctx.cancelled.is_set()
    assert await anyio.to_thread.run_sync(stopped.wait, 2), "the worker thread stopped soon after"


@pytest.mark.anyio
async def test_cancelling_an_async_tool():
    reg = ToolRegistry()
    cancelled = anyio.Event()

    async def waits(args: NoArgs) -> str:
        try:
            await anyio.sleep(10)
        finally:
            cancelled.set()
        return "late"

    reg.add(waits, plugin="t")
    with anyio.move_on_after(0.1):
        await reg.call("t.waits")
    assert cancelled.is_set()


@pytest.mark.anyio
async def test_results_are_normalised():
    reg = ToolRegistry()

    async def image(args: NoArgs) -> Image:
        return Image(b"\x89PNG...", "image/png")

    async def mixed(args: NoArgs) -> ToolResult:
        return ToolResult([Image(b"x")], structured={"a": 1})

    reg.add(image, plugin="t")
    reg.add(mixed, plugin="t")
    assert isinstance((await reg.call("t.image")).content[0], Image)
    assert (await reg.call("t.mixed")).structured == {"a": 1}


@pytest.mark.anyio
async def test_authorization_can_deny_before_the_tool_runs():
    reg = ToolRegistry()
    ran = False

    async def danger(args: NoArgs) -> str:
        nonlocal ran
        ran = True
        return "did it"

    reg.add(danger, plugin="t", destructive=True)

    async def policy(call):
        return Decision("deny", f"{call.tool.name} is destructive") if call.tool.annotations.destructive else \
            Decision("allow")

    reg.authorize = policy
    with pytest.raises(ToolDenied, match="t.danger is destructive"):
        await reg.call("t.danger")
    assert not ran


def test_change_listeners_see_adds_and_removes():
    reg = ToolRegistry()
    changes: list[tuple] = []
    reg.on_change(lambda a, r: changes.append((a, r)))
    reg.add(open_page, plugin="browser", name="open")
    reg.remove_plugin("browser")
    assert changes == [(["browser.open"], []), ([], ["browser.open"])]


@pytest.mark.anyio
async def test_log_lines_carry_the_correlation_id_in_async_and_sync_tools(capsys):
    from core.logging import configure, get_logger

    configure("info", "json")
    log = get_logger("test")
    reg = ToolRegistry()

    async def speaks(args: NoArgs) -> str:
        log.info("async says hi")
        return "ok"

    def speaks_in_a_thread(args: NoArgs) -> str:
        log.info("thread says hi")
        return "ok"

    reg.add(speaks, plugin="t")
    reg.add(speaks_in_a_thread, plugin="t")
    await reg.call("t.speaks", {}, ToolContext(correlation_id="req-42"))
    await reg.call("t.speaks_in_a_thread", {}, ToolContext(correlation_id="req-43"))
    log.info("outside")
    import json

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    by_event = {line["event"]: line for line in lines}
    assert by_event["async says hi"]["correlation_id"] == "req-42" and by_event["async says hi"]["tool"] == "t.speaks"
    assert by_event["thread says hi"]["correlation_id"] == "req-43"
    assert "correlation_id" not in by_event["outside"], "the binding ends with the call"
