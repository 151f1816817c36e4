"""MCP completed: output schemas, resource templates, completion, subscriptions, tasks, event
payload references and tool profiles, over the SDK's in-memory client in both protocol eras."""

from __future__ import annotations

import json
import re
import threading

import anyio
import jsonschema
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from core.config import LoomConfig, ProfileConfig, ServerConfig
from core.surfaces.mcp import McpSurface
from tests.conformance_plugin import probe

MODES = ["legacy", "2026-07-28"]
pytestmark = pytest.mark.anyio
TASKS_EXT = "io.modelcontextprotocol/tasks"
CAPS_KEY = "io.modelcontextprotocol/clientCapabilities"


@pytest.fixture
def app(make_app):
    probe.state["cancelled"] = threading.Event()
    probe.state["started"] = threading.Event()
    cfg = LoomConfig(server=ServerConfig(mcp_task_tools=["probe.render"]),
                     profiles={"probes": ProfileConfig(description="probe tools", tools=["probe.*"],
                                                       exclude=["probe.fail"])})
    return make_app("admin", "models", extra={"probe": probe}, config=cfg)


@pytest.fixture
def surface(app):
    return McpSurface(app)


async def raw(client: Client, method: str, params: dict, *, tasks: bool = False) -> dict:
    """Send a request as the client would (its per-request stamp), without the typed layer:
    the SDK's client has no tasks/* methods and reads every tools/call answer as a CallToolResult.
    ``tasks``: declare the tasks extension in this request's capabilities (2026-07-28)."""
    data = {"method": method, "params": dict(params)}
    opts: dict = {}
    client.session._stamp(data, opts)
    if tasks:
        meta = data["params"]["_meta"]
        meta[CAPS_KEY] = {**meta.get(CAPS_KEY, {}), "extensions": {TASKS_EXT: {}}}
    return await client.session._dispatcher.send_raw_request(method, data["params"], opts)


# --- outputSchema -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_output_schemas_come_from_return_types_and_results_match_them(surface, mode):
    async with surface.app, surface.running(), Client(surface.server, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        # The SDK client validates structuredContent against the declared outputSchema.
        measured = await client.call_tool("probe.measure", {})
        numbers = await client.call_tool("probe.numbers", {})
        plugins = await client.call_tool("admin.plugins", {})
    assert tools["probe.measure"].output_schema["properties"]["width"] == {"type": "integer"}
    assert tools["probe.measure"].output_schema["required"] == ["width", "height"]
    assert tools["probe.numbers"].output_schema["properties"]["result"]["type"] == "array"
    assert tools["probe.echo"].output_schema is None  # text only: no structured content, no schema
    assert measured.structured_content == {"width": 640, "height": 480, "unit": "px"}
    assert numbers.structured_content == {"result": [1, 2, 3]}
    assert not plugins.is_error
    for tool in tools.values():
        if tool.output_schema is not None:
            jsonschema.Draft202012Validator.check_schema(tool.output_schema)


def test_output_schema_matches_what_each_return_type_sends():
    """Declared exactly when the result carries structuredContent (MCP requires it then)."""
    from typing import Any

    from core.results import Image, Text, ToolResult
    from core.tools import output_schema_for

    assert output_schema_for(probe.Size)["required"] == ["width", "height"]
    assert output_schema_for(dict[str, Any])["type"] == "object"
    for wrapped in (list[int], list[str], tuple[float, ...], int, bool):
        assert output_schema_for(wrapped)["required"] == ["result"], wrapped
    for unstructured in (str, None, ToolResult, Image, list[Image], list[Text | Image], probe.Size | None,
                         dict | str, Any):
        assert output_schema_for(unstructured) is None, unstructured


def test_every_plugin_tool_with_structured_results_declares_an_output_schema(make_app):
    """Whatever a built-in tool returns as structured content, its schema says so (and is valid)."""
    import inspect

    from core.plugins import BUILTIN_PLUGINS

    app = make_app(*BUILTIN_PLUGINS)
    missing = []
    for tool in app.tools.list():
        schema = tool.output_schema
        if schema is None:
            # A ToolResult-returning tool that fills `structured=` must declare output_schema=.
            if "structured=" in inspect.getsource(tool.func):
                missing.append(tool.name)
            continue
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema.get("type") == "object", tool.name
    assert not missing, f"tools returning structured content without an outputSchema: {missing}"


# --- resource templates and completion ------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_resource_templates_model_details_and_files(surface, mode, data_dir):
    out = data_dir / "outputs"
    out.mkdir()
    (out / "cat.png").write_bytes(probe.PNG)
    async with surface.app, surface.running(), Client(surface.server, mode=mode) as client:
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        with pytest.raises(MCPError) as unknown_model:
            await client.read_resource("loom://models/nope")
        png = await client.read_resource(f"loom://files{out}/cat.png")
        with pytest.raises(MCPError) as outside:
            await client.read_resource("loom://files/etc/passwd")
    assert {"loom://models/{name}", "loom://files/{+path}", "loom://events/{id}/{field}"} <= templates
    assert "unknown model 'nope'" in unknown_model.value.error.message
    assert png.contents[0].blob and png.contents[0].mime_type == "application/octet-stream"
    import base64

    assert base64.b64decode(png.contents[0].blob) == probe.PNG
    assert "outside the allowed roots" in outside.value.error.message


async def test_the_bearer_token_is_never_served_or_offered(surface, data_dir):
    (data_dir / "token").write_text("s3cret-token-value-0123456789\n")
    files = types.ResourceTemplateReference(uri="loom://files/{+path}")
    async with surface.app, surface.running(), Client(surface.server, mode="legacy") as client:
        with pytest.raises(MCPError) as refused:
            await client.read_resource(f"loom://files{data_dir}/token")
        offered = await client.complete(files, {"name": "path", "value": str(data_dir / "to")[1:]})
    assert "token is not readable" in refused.value.error.message
    assert offered.completion.values == []


async def test_model_details_template_reads_one_model(make_app):
    app = make_app("admin", "models", "embed")
    surface = McpSurface(app)
    async with app, surface.running(), Client(surface.server, mode="legacy") as client:
        got = await client.read_resource("loom://models/minilm")
    body = json.loads(got.contents[0].text)
    assert body["name"] == "minilm" and body["backend"] == "minilm" and body["state"] == "unloaded"
    assert body["config"]["role"] == "embed"


@pytest.mark.parametrize("mode", MODES)
async def test_completion_of_models_tools_and_paths_inside_the_roots(make_app, data_dir, mode):
    (data_dir / "outputs").mkdir()
    (data_dir / "outputs" / "video-1.mp4").write_bytes(b"x")
    (data_dir / "outputs" / "video-2.mp4").write_bytes(b"x")
    app = make_app("admin", "models", "embed", extra={"probe": probe})
    surface = McpSurface(app)
    files = types.ResourceTemplateReference(uri="loom://files/{+path}")
    async with app, surface.running(), Client(surface.server, mode=mode) as client:
        models = await client.complete(types.ResourceTemplateReference(uri="loom://models/{name}"),
                                       {"name": "name", "value": "mini"})
        paths = await client.complete(files, {"name": "path", "value": str(data_dir / "outputs" / "vid")[1:]})
        outside = await client.complete(files, {"name": "path", "value": "etc/pas"})
        nothing = await client.complete(types.PromptReference(name="probe.greet"), {"name": "name", "value": "A"})
        with pytest.raises(MCPError):
            await client.complete(types.PromptReference(name="no.such"), {"name": "x", "value": ""})
    from core.completion import complete

    tools = complete(app, "tool", "probe.e")
    assert models.completion.values == ["minilm"]
    assert paths.completion.values == [str(data_dir / "outputs" / f"video-{i}.mp4")[1:] for i in (1, 2)]
    assert outside.completion.values == []
    assert nothing.completion.values == []
    assert tools == ["probe.echo"]


# --- subscriptions --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed")
async def test_resource_subscription_pushes_updates_legacy(surface):
    updated: list[str] = []
    got = anyio.Event()

    async def handler(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            got.set()

    async with surface.app, surface.running(), Client(surface.server, mode="legacy",
                                                      message_handler=handler) as client:
        await client.subscribe_resource("probe://counter")
        await client.subscribe_resource("probe://fixed")
        await client.call_tool("probe.bump", {})
        with anyio.fail_after(10):
            await got.wait()
        await anyio.sleep(0.5)  # nothing more: probe://fixed did not change
        await client.unsubscribe_resource("probe://counter")
        await client.call_tool("probe.bump", {})
        await anyio.sleep(0.5)
        with pytest.raises(MCPError):
            await client.subscribe_resource("probe://nope")
    assert updated == ["probe://counter"]


async def test_resource_subscription_pushes_updates_on_listen_streams_modern(surface):
    async with surface.app, surface.running(), Client(surface.server, mode="2026-07-28") as client:
        async with client.listen(resource_subscriptions=["probe://counter"]) as sub:
            await client.call_tool("probe.bump", {})
            with anyio.fail_after(10):
                event = await sub.__anext__()
    assert type(event).__name__ == "ResourceUpdated" and event.uri == "probe://counter"


# --- tasks --------------------------------------------------------------------------------------------


async def _poll(client: Client, task_id: str, until: set[str]) -> dict:
    with anyio.fail_after(20):
        while True:
            task = await raw(client, "tasks/get", {"taskId": task_id})
            if task["status"] in until:
                return task
            await anyio.sleep(0.02)


async def test_a_drain_refuses_new_calls_and_waits_for_the_task_already_running(surface):
    """Shutting down (``loom serve`` shares its drain event with every MCP path): a task accepted
    before the drain runs to the end and keeps the daemon up; new calls, plain or as tasks, get
    the shutting-down error. The transports' own drains are in test_mcp_drain.py."""
    from core.surfaces.mcp import SHUTTING_DOWN
    from core.surfaces.ops import DaemonOps

    ops = DaemonOps(surface.app)
    async with surface.app, surface.running(), Client(surface.server, mode="legacy") as client:
        await client.list_tools()
        started = await raw(client, "tools/call", {"name": "probe.render", "arguments": {"steps": 5, "delay": 0.05},
                                                   "task": {}})
        surface.begin_drain()
        busy_while_running = ops.busy
        with pytest.raises(MCPError) as plain:
            await client.call_tool("probe.echo", {"text": "too late"})
        with pytest.raises(MCPError) as as_task:
            await raw(client, "tools/call", {"name": "probe.render", "arguments": {"steps": 1}, "task": {}})
        result = await raw(client, "tasks/result", {"taskId": started["task"]["taskId"]})
        busy_after = ops.busy
    assert busy_while_running and not busy_after
    assert result["structuredContent"]["frames"] == 5 and not result["isError"]
    for refused in (plain.value, as_task.value):
        assert refused.error.code == SHUTTING_DOWN and "shutting down" in refused.error.message


async def test_tasks_legacy_start_poll_fetch_and_cancel(surface):
    async with surface.app, surface.running(), Client(surface.server, mode="legacy") as client:
        caps = client.server_capabilities
        tools = {t.name: t for t in (await client.list_tools()).tools}
        started = await raw(client, "tools/call", {"name": "probe.render", "arguments": {"steps": 4, "delay": 0.05},
                                                   "task": {"ttl": 60000}})
        task_id = started["task"]["taskId"]
        assert started["task"]["status"] == "working" and started["task"]["ttl"] == 60000
        working = await _poll(client, task_id, {"working", "completed"})
        result = await raw(client, "tasks/result", {"taskId": task_id})  # waits for the end
        done = await raw(client, "tasks/get", {"taskId": task_id})
        listed = await raw(client, "tasks/list", {})

        long = await raw(client, "tools/call", {"name": "probe.render", "arguments": {"steps": 1000, "delay": 0.05},
                                                "task": {}})
        long_id = long["task"]["taskId"]
        await _poll(client, long_id, {"working"})
        cancelled = await raw(client, "tasks/cancel", {"taskId": long_id})
        with anyio.fail_after(10):
            await anyio.to_thread.run_sync(probe.state["cancelled"].wait, 10)
        with pytest.raises(MCPError):
            await raw(client, "tasks/cancel", {"taskId": long_id})  # already terminal
        with pytest.raises(MCPError):
            await raw(client, "tasks/get", {"taskId": "no-such-task"})
    assert caps.tasks is not None and caps.tasks.requests is not None
    assert tools["probe.render"].execution.task_support == "optional"
    assert working["status"] in ("working", "completed")
    assert result["structuredContent"] == {"frames": 4, "path": "/tmp/loom-probe.mp4"}
    assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task_id}
    assert done["status"] == "completed"
    assert task_id in {t["taskId"] for t in listed["tasks"]}
    assert cancelled["status"] == "cancelled"


async def test_tasks_progress_shows_in_the_status_message(surface):
    async with surface.app, surface.running(), Client(surface.server, mode="legacy") as client:
        started = await raw(client, "tools/call", {"name": "probe.render", "arguments": {"steps": 50, "delay": 0.05},
                                                   "task": {}})
        with anyio.fail_after(20):
            while True:
                task = await raw(client, "tasks/get", {"taskId": started["task"]["taskId"]})
                if (task.get("statusMessage") or "").startswith("frame"):
                    break
                await anyio.sleep(0.02)
        await raw(client, "tasks/cancel", {"taskId": started["task"]["taskId"]})
    assert task["statusMessage"].endswith("/50)")


async def test_tasks_modern_extension_is_server_directed(surface):
    async with surface.app, surface.running(), Client(surface.server, mode="2026-07-28") as client:
        discovered = await raw(client, "server/discover", {})
        plain = await raw(client, "tools/call", {"name": "probe.render", "arguments": {"steps": 2, "delay": 0.01}})
        other = await raw(client, "tools/call", {"name": "probe.echo", "arguments": {"text": "x"}}, tasks=True)
        started = await raw(client, "tools/call", {"name": "probe.render", "arguments": {"steps": 3, "delay": 0.02}},
                            tasks=True)
        done = await _poll(client, started["taskId"], {"completed", "failed", "cancelled"})
        update = await raw(client, "tasks/update", {"taskId": started["taskId"], "inputResponses": {}})
        long = await raw(client, "tools/call", {"name": "probe.render", "arguments": {"steps": 1000, "delay": 0.05}},
                         tasks=True)
        ack = await raw(client, "tasks/cancel", {"taskId": long["taskId"]})
        gone = await _poll(client, long["taskId"], {"cancelled", "completed", "failed"})
    assert TASKS_EXT in discovered["capabilities"]["extensions"]
    assert plain["resultType"] == "complete" and "content" in plain  # no extension declared: a plain result
    assert other["resultType"] == "complete"  # not a long-running tool: answered directly
    assert started["resultType"] == "task" and started["status"] == "working" and "ttlMs" in started
    assert done["status"] == "completed"
    assert done["result"]["structuredContent"] == {"frames": 3, "path": "/tmp/loom-probe.mp4"}
    assert update["resultType"] == "complete" and ack["resultType"] == "complete"
    assert gone["status"] == "cancelled"


# --- loom://events carries references, not bytes -----------------------------------------------------


async def test_events_resource_carries_references_to_large_payloads(make_app):
    from plugins.voice.tools import SpeechChunk

    app = make_app("admin")
    surface = McpSurface(app)
    pcm = bytes(range(256)) * 800  # 200 KB, like a spoken sentence
    async with app, surface.running(), Client(surface.server, mode="legacy") as client:
        event = SpeechChunk(index=0, total=1, text="hello", sample_rate=22050, pcm=pcm)
        await app.bus.publish(event)
        listing = await client.read_resource("loom://events")
        body = listing.contents[0].text
        ref = next(e for e in json.loads(body) if e["kind"] == "SpeechChunk")["pcm"]
        payload = await client.read_resource(ref["$ref"])
        with pytest.raises(MCPError) as gone:
            await client.read_resource(f"loom://events/{event.id}-nope/pcm")
    import base64

    assert len(body) < 10_000  # no PCM inline
    assert ref == {"$ref": f"loom://events/{event.id}/pcm", "bytes": len(pcm)}
    assert base64.b64decode(payload.contents[0].blob) == pcm
    assert "no longer in the recent window" in gone.value.error.message


# --- tool profiles --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_profiles_list_their_tools_and_refuse_others(app, mode):
    from core.profiles import profile_tools

    probes = McpSurface(app, profile="probes")
    discover = McpSurface(app, profile="discover")
    async with app, probes.running(), discover.running():
        async with Client(probes.server, mode=mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            ok = await client.call_tool("probe.echo", {"text": "in profile"})
            with pytest.raises(MCPError) as refused:
                await client.call_tool("admin.plugins", {})
        async with Client(discover.server, mode=mode) as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            allowed = await client.call_tool("probe.echo", {"text": "found by search"})
    assert names == {t.name for t in profile_tools(app, "probes")}
    assert "probe.echo" in names and "probe.fail" not in names and "admin.plugins" not in names
    assert ok.content[0].text == "in profile"
    assert "not in the 'probes' profile" in refused.value.error.message
    assert listed == set()  # tools.search is not loaded in this app
    assert allowed.content[0].text == "found by search"  # discover may call what it finds


def test_unknown_profile_names_the_known_ones(app):
    from core.profiles import ProfileNotFound, profile_tools

    with pytest.raises(ProfileNotFound, match="known: all, coding, discover, media, probes"):
        profile_tools(app, "nope")
    with pytest.raises(ProfileNotFound):
        McpSurface(app, profile="nope")


# --- tools.search -----------------------------------------------------------------------------------


SEARCH_PLUGINS = ("admin", "models", "embed", "toolsearch", "voice", "imagegen", "video", "vision", "coder",
                  "browser", "memory", "system")


@pytest.fixture(scope="module")
def search_app(tmp_path_factory):
    from core.app import Loom
    from core.config import PathsConfig

    base = tmp_path_factory.mktemp("search")
    cfg = LoomConfig(paths=PathsConfig(data_dir=str(base), allowed_roots=[str(base)]))
    return Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": ",".join(SEARCH_PLUGINS)})


async def test_tools_search_finds_the_tools_for_a_task_with_the_embedder(search_app):
    app = search_app
    surface = McpSurface(app, profile="discover")
    queries = {  # from the development set (bench/toolsearch.py), never the held-out one
        "say this sentence out loud": "voice.speak",
        "draw a picture of a red bicycle": "imagegen.generate",
        "turn this audio recording into text": "voice.transcribe",
    }
    found: dict[str, list[str]] = {}
    async with app, surface.running(), Client(surface.server, mode="legacy") as client:
        listed = [t.name for t in (await client.list_tools()).tools]
        for task, _ in queries.items():
            res = await client.call_tool("tools.search", {"task": task, "limit": 3})
            assert not res.is_error, res.content[0].text
            assert res.structured_content["method"] == "embedding"
            found[task] = [t["name"] for t in res.structured_content["tools"]]
        first = res.structured_content["tools"][0]
        call = await client.call_tool("voice.voices", {})  # discovered, then called on the same connection
    assert listed == ["tools.search"]
    for task, tool in queries.items():
        assert tool in found[task], (task, found[task])
    assert found["say this sentence out loud"][0] == "voice.speak"
    assert first["input_schema"]["type"] == "object"
    assert not call.is_error


async def test_tools_search_falls_back_to_words_without_an_embedding_model(make_app):
    app = make_app("admin", "toolsearch", extra={"probe": probe})
    async with app:
        res = await app.call("tools.search", {"task": "repeat the text", "limit": 2})
    assert res.structured["method"] == "lexical" and "embedding model" in res.structured["note"]
    assert res.structured["tools"][0]["name"] == "probe.echo"


def test_profile_tools_for_openai_and_anthropic_tool_lists(search_app):
    from core.profiles import profile_tools

    media = {t.name for t in profile_tools(search_app, "media")}
    coding = {t.name for t in profile_tools(search_app, "coding")}
    assert {"voice.speak", "imagegen.generate", "video.generate", "vision.describe", "tools.search"} <= media
    assert not any(n.startswith(("coder.", "system.", "admin.")) for n in media)
    assert {"coder.generate", "tools.search"} <= coding and "voice.speak" not in coding
    assert len(profile_tools(search_app, "all")) == len(search_app.tools)



@pytest.mark.parametrize(("toml", "message"), [
    ('[profiles."a b"]\ntools = ["voice.*"]\n', "a profile name is part of a URL path"),
    ('[profiles.mine]\ntools = "voice.*"\n', "Expected `array`, got `str` - at `$.profiles.mine.tools`"),
    ('[profiles.mine]\ntools = ["voice.*"]\nbogus = 1\n', "unknown field `bogus` - at `$.profiles.mine`"),
])
def test_bad_profile_config_names_the_profile(tmp_path, toml, message):
    from core.config import ConfigError, load_config

    path = tmp_path / "loom.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("$", r"\$").replace("[", r"\[")):
        load_config(path)


@pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed")
async def test_memory_by_id_template_and_its_updates(make_app):
    app = make_app("admin", "memory", config=LoomConfig(plugin={"memory": {"embedder": "none"}}))
    surface = McpSurface(app)
    updated = anyio.Event()

    async def handler(message):
        if isinstance(message, types.ResourceUpdatedNotification) and str(message.params.uri) == uri:
            updated.set()

    async with app, surface.running(), Client(surface.server, mode="legacy", message_handler=handler) as client:
        stored = await client.call_tool("memory.remember", {"text": "my sister lives in Lyon"})
        uri = f"loom://memory/{stored.structured_content['id']}"
        before = json.loads((await client.read_resource(uri)).contents[0].text)
        await client.subscribe_resource(uri)
        await client.call_tool("memory.forget", {"ids": [stored.structured_content["id"]]})
        with anyio.fail_after(10):
            await updated.wait()
        after = json.loads((await client.read_resource(uri)).contents[0].text)
        with pytest.raises(MCPError) as missing:
            await client.read_resource("loom://memory/99999")
        with pytest.raises(MCPError) as not_int:
            await client.read_resource("loom://memory/abc")
    assert before["text"] == "my sister lives in Lyon" and before["archived_at"] is None
    assert after["archived_at"] is not None
    assert "no memory with id 99999" in missing.value.error.message
    assert "memory ids are integers" in not_int.value.error.message


def test_voice_and_profile_completion(make_app):
    from core.completion import complete

    app = make_app("admin", "voice")
    assert complete(app, "voice", "") == ["espeak", "piper-joe"]
    assert complete(app, "voice", "pip") == ["piper-joe"]
    assert complete(app, "profile", "me") == ["media"]
    assert complete(app, "unknown_argument", "x") == []


async def test_too_many_running_tasks_is_refused_with_what_to_do(surface, monkeypatch):
    from core.surfaces import mcp_tasks

    monkeypatch.setattr(mcp_tasks, "MAX_RUNNING", 2)
    long = {"name": "probe.render", "arguments": {"steps": 1000, "delay": 0.05}, "task": {}}
    async with surface.app, surface.running(), Client(surface.server, mode="legacy") as client:
        ids = [(await raw(client, "tools/call", long))["task"]["taskId"] for _ in range(2)]
        with pytest.raises(MCPError) as refused:
            await raw(client, "tools/call", long)
        await raw(client, "tasks/cancel", {"taskId": ids[0]})
        again = await raw(client, "tools/call", long)  # room again
        for tid in (ids[1], again["task"]["taskId"]):
            await raw(client, "tasks/cancel", {"taskId": tid})
    assert "at most 2" in refused.value.error.message and "tasks/cancel" in refused.value.error.message


def test_profile_tool_lists_for_openai_and_anthropic_requests(search_app):
    from core.profiles import api_tools

    openai_specs, back = api_tools(search_app, "media", "openai")
    anthropic_specs, back2 = api_tools(search_app, "media", "anthropic")
    speak = next(s for s in openai_specs if s["function"]["name"] == "voice_speak")
    assert back["voice_speak"] == "voice.speak" and back == back2
    assert speak["type"] == "function" and speak["function"]["parameters"]["required"] == ["text"]
    assert {s["name"] for s in anthropic_specs} == set(back)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", n) for n in back)
    with pytest.raises(ValueError):
        api_tools(search_app, "media", "gemini")


# --- a real long job end to end: a tiny diffusers model behind an MCP task ----------------------


async def test_image_generation_as_a_task_then_the_file_through_a_template(make_app, tmp_path, data_dir):
    pytest.importorskip("diffusers")
    import base64

    from core.config import ModelConfig
    from plugins.imagegen import tiny

    sd = tiny.build_sd(tmp_path / "sd")
    app = make_app("admin", "imagegen", config=LoomConfig(
        models={"sd": ModelConfig(backend="diffusers", file=str(sd), role="imagegen", placement="inline")}))
    surface = McpSurface(app)
    async with app, surface.running(), Client(surface.server, mode="2026-07-28") as client:
        schema = {t.name: t for t in (await client.list_tools()).tools}["imagegen.generate"].output_schema
        started = await raw(client, "tools/call", {"name": "imagegen.generate", "arguments": {
            "prompt": "a red cube", "width": 32, "height": 32, "steps": 4, "seed": 7}}, tasks=True)
        assert started["resultType"] == "task"  # imagegen.* is a task tool by default
        done = await _poll(client, started["taskId"], {"completed", "failed", "cancelled"})
        result = done["result"]
        link = next(c for c in result["content"] if c["type"] == "resource_link")
        path = link["uri"].removeprefix("file://")
        completed = await client.complete(types.ResourceTemplateReference(uri="loom://files/{+path}"),
                                          {"name": "path", "value": path[1:-6]})
        file = await client.read_resource("loom://files" + path)
    assert done["status"] == "completed", done
    jsonschema.validate(result["structuredContent"], schema)
    assert result["structuredContent"]["seed"] == 7 and path.startswith(str(data_dir / "outputs"))
    assert path[1:] in completed.completion.values
    image = next(c for c in result["content"] if c["type"] == "image")
    assert base64.b64decode(file.contents[0].blob) == base64.b64decode(image["data"])
