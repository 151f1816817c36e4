"""Property-based fuzzing of every registered tool (issue 20): arguments generated from each
tool's input schema (plus hostile values and junk), called over MCP (the SDK's client on
the in-memory transport) and through the OpenAI tool-call path (arguments as a JSON
string, as a model's function call carries them, on the ``openai`` surface).

The properties: every failure is a clean tool error (never a crash caught by the surface,
never an internal JSON-RPC error), no error echoes more than a bounded size, and the app
keeps serving. Bounded for CI: a fixed number of examples per tool, derandomized.
"""

from __future__ import annotations

import json
import pathlib
import tempfile

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings

from core.config import LoomConfig, PathsConfig
from core.tools import ToolContext, ToolError
from tests.fuzz_strategies import tool_arguments

# Every built-in plugin that loads without a model download. llama.cpp is left out: with no
# chat model, the assistant and coder answer "no model" at once instead of generating.
PLUGINS = ("admin", "policy", "memory", "models", "coder", "assistant", "vision", "imagegen", "video", "voice",
           "embed", "cognition", "browser", "system")
ERROR_TEXT_LIMIT = 4000
FUZZ = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _config(root) -> LoomConfig:
    cfg = LoomConfig(paths=PathsConfig(data_dir=str(root / "data"), cache_dir=str(root / "cache"),
                                       allowed_roots=[str(root)]))
    cfg.plugin["memory"] = {"embedder": "none"}
    # Routing by rules only: the embedding router's first use embeds every prototype
    # sentence (a minute on a busy 2-core box), which would make the fuzz time that.
    cfg.plugin["assistant"] = {"use_embeddings": False}
    cfg.plugin["browser"] = {"allow_loopback": False}
    return cfg


def _app(root):
    from core.app import Loom

    (root / "data").mkdir(parents=True, exist_ok=True)
    env = {"LOOM_PLUGINS": ",".join(PLUGINS), "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "DISPLAY": ""}
    return Loom.create(_config(root), environ=env, configure_logs=False)


def _tool_schemas(tmp_root) -> dict[str, dict]:
    app = _app(tmp_root)
    return {t.name: t.input_schema for t in app.tools.list()}


_SCHEMAS = _tool_schemas(pathlib.Path(tempfile.mkdtemp(prefix="loom-fuzz-")))


class Served:
    """The app, its MCP surface and a connected MCP client, on a portal's event loop."""

    def __init__(self, root) -> None:
        from mcp.client import Client

        from core import datadir
        from core.surfaces import mcp as mcp_mod
        from core.surfaces.mcp import McpSurface

        self.crashes: list[str] = []
        original = mcp_mod.log.exception

        def record(event, **kw):
            self.crashes.append(f"{event} {kw}")
            return original(event, **kw)

        mcp_mod.log.exception = record  # a tool exception the surface had to catch
        self._restore = lambda: setattr(mcp_mod.log, "exception", original)
        self.app = _app(root)
        self.surface = McpSurface(self.app)
        self.client = Client(self.surface.server, mode="legacy")
        self._datadir = (datadir, root / "data")

    async def __aenter__(self) -> Served:
        await self.app.__aenter__()
        self._running = self.surface.running()
        await self._running.__aenter__()
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.__aexit__(None, None, None)
        await self._running.__aexit__(None, None, None)
        await self.app.__aexit__(None, None, None)
        self._restore()
        datadir, path = self._datadir
        datadir.release(path)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-tools")
    with anyio.from_thread.start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(Served(root)) as srv:
        srv.portal = portal
        yield srv


def _text(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def _still_serving(srv) -> None:
    result = srv.portal.call(srv.client.call_tool, "admin.plugins", {})
    assert not result.is_error


@pytest.mark.parametrize("tool", sorted(_SCHEMAS))
def test_fuzz_tool_over_mcp(served, tool):
    from mcp.shared.exceptions import MCPError

    @FUZZ
    @given(args=tool_arguments(_SCHEMAS[tool]))
    def check(args):
        before = len(served.crashes)
        try:
            result = served.portal.call(_call_with_timeout, served.client, tool, args)
        except MCPError as exc:  # only a bad-params answer is acceptable at the protocol level
            assert exc.error.code == -32602, (tool, args, exc.error)
            assert len(exc.error.message) <= ERROR_TEXT_LIMIT
            return
        assert served.crashes[before:] == [], (tool, args, served.crashes[before:])
        if result.is_error:
            assert len(_text(result)) <= ERROR_TEXT_LIMIT, (tool, _text(result)[:300])

    check()
    _still_serving(served)


@pytest.mark.parametrize("tool", sorted(_SCHEMAS))
def test_fuzz_tool_through_the_openai_tool_call_path(served, tool):
    @settings(FUZZ, max_examples=5)
    @given(args=tool_arguments(_SCHEMAS[tool]))
    def check(args):
        payload = json.dumps(args)  # a model's function call carries its arguments as a JSON string
        try:
            served.portal.call(_app_call, served.app, tool, payload)
        except ToolError as exc:
            assert len(str(exc)) <= ERROR_TEXT_LIMIT, (tool, str(exc)[:300])

    check()
    _still_serving(served)


async def _call_with_timeout(client, tool, args):
    with anyio.fail_after(60):
        return await client.call_tool(tool, args)


async def _app_call(app, tool, payload):
    with anyio.fail_after(60):
        return await app.call(tool, payload, ctx=ToolContext(surface="openai", caller="fuzz"))


def test_fuzz_covers_every_tool():
    assert len(_SCHEMAS) >= 40  # every plugin above registered its tools
