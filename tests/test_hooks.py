"""Every hook is documented, and each one is exercised here by a throwaway plugin.

Adding a hookspec without a docstring that describes each argument, a section in
docs/plugins.md, and a test implementing it fails this file.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import anyio
import anyio.lowlevel
import msgspec
import pytest

from core import hookspecs
from core.backends import MemoryEstimate, ModelBackend
from core.events import Event
from core.hookspecs import hookimpl
from core.tools import Decision, NoArgs, ToolDenied

ROOT = Path(__file__).resolve().parent.parent
HOOKS = [name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("loom_")]


def test_there_are_hooks():
    assert {"loom_register_tools", "loom_route", "loom_authorize", "loom_startup"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented(name: str):
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    assert len(doc.splitlines()[0]) > 10, f"{name} needs a one-line summary"
    for arg in inspect.signature(spec).parameters:
        assert re.search(rf"^\s*{arg}:", doc, re.M), f"{name}'s docstring does not describe argument {arg!r}"
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{name}`" in docs, f"docs/plugins.md has no section for {name}"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_tested(name: str):
    pattern = re.compile(rf"def {name}\(")
    users = [p for p in (ROOT / "tests").rglob("test_*.py") if pattern.search(p.read_text())]
    assert users, f"no test implements {name}"


# --- one plugin implementing every hook -----------------------------------------------


class Pinged(Event, frozen=True, kw_only=True):
    who: str


class EchoBackend(ModelBackend):
    name = "echo"

    def estimate(self, spec, device):
        return MemoryEstimate(total=1024, device=device)

    def load(self, spec, device):
        return {"model": spec.name}

    def unload(self, handle):
        handle.clear()


class Everything:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.events: list[Pinged] = []

    @hookimpl
    def loom_configure(self, config, app):
        self.calls.append(f"configure:{config.server.port}")

    @hookimpl
    def loom_register_tools(self, register):
        async def ping(args: NoArgs, ctx) -> str:
            """Publish a Pinged event."""
            await ctx.bus.publish(Pinged(who="everything", correlation_id=ctx.correlation_id))
            return "pong"

        async def wipe(args: NoArgs) -> str:
            """Pretend to delete everything."""
            return "wiped"

        register(ping, read_only=True)
        register(wipe, destructive=True)

    @hookimpl
    def loom_register_backends(self, register):
        register("echo", EchoBackend)

    @hookimpl
    def loom_register_subscribers(self, register):
        register(Pinged, self.events.append, name="everything.pinged")

    @hookimpl
    def loom_register_stages(self, register):
        register(object(), name="everything.stage", order=5)

    @hookimpl
    def loom_register_resources(self, register):
        async def calls(app):
            return list(self.calls)

        register("everything://calls", calls)

    @hookimpl
    def loom_register_prompts(self, register):
        def greet(name: str, tone: str = "warm") -> str:
            """Greet someone."""
            return f"Greet {name} in a {tone} way."

        register(greet)

    @hookimpl
    def loom_route(self, request, app):
        return {"steps": ["everything.ping"]} if "ping" in request else None

    @hookimpl
    def loom_authorize(self, call, app):
        if call.tool.annotations.destructive:
            async def decide():
                return Decision("deny", f"{call.tool.name}: destructive tools are off in this test")

            return decide()
        return None

    @hookimpl
    async def loom_startup(self, app):
        await anyio.lowlevel.checkpoint()
        self.calls.append("startup")

    @hookimpl
    def loom_shutdown(self, app):
        self.calls.append("shutdown")


@pytest.mark.anyio
async def test_every_hook_is_called(make_app):
    plugin = Everything()
    app = make_app(extra={"everything": plugin})
    assert plugin.calls == ["configure:8765"]
    assert "echo" in app.backends and app.backends["echo"]().name == "echo"
    assert [s.name for s in app.stages] == ["everything.stage"]
    assert app.prompts["everything.greet"].arguments() == [
        {"name": "name", "required": True}, {"name": "tone", "required": False}]
    async with app:
        assert plugin.calls[-1] == "startup"
        assert (await app.call("everything.ping", correlation_id="r-1")).text() == "pong"
        with pytest.raises(ToolDenied, match="destructive tools are off"):
            await app.call("everything.wipe")
        assert app.plugin_route("please ping") == {"steps": ["everything.ping"]}
        assert app.plugin_route("something else") is None
        assert await app.resources["everything://calls"].read(app) == ["configure:8765", "startup"]
        await anyio.sleep(0.01)
    assert plugin.calls[-1] == "shutdown"
    assert [(e.who, e.correlation_id) for e in plugin.events] == [("everything", "r-1")]


def test_authorize_must_return_a_decision(make_app):
    class Bad:
        @hookimpl
        def loom_authorize(self, call, app):
            return "yes"

    app = make_app("admin", extra={"bad": Bad()})

    async def go():
        async with app:
            await app.call("admin.plugins")

    # Fail closed: a hook that answers junk is a refusal (the call does not run), not an allow.
    from core.tools import ToolDenied

    with pytest.raises(ToolDenied, match="the policy gave no valid decision"):
        anyio.run(go)


def test_args_struct_round_trip_in_tests_helpers():
    # NoArgs forbids unknown fields: a caller's typo is an error, not silently ignored.
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"x": 1}, NoArgs)
