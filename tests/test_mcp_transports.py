"""MCP over real transports: a `loom mcp` subprocess (stdio) and a `loom serve` subprocess
(streamable HTTP), with the SDK's own client, a bad-input corpus, and the security checks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.conformance_plugin.entrypoint import write_dist_info

ROOT = Path(__file__).resolve().parent.parent
MAX_BODY = 65536
pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Environment for loom subprocesses: the probe plugin via an entry point, private dirs."""
    base = tmp_path_factory.mktemp("loom-mcp")
    write_dist_info(base / "ep", {"probe": "tests.conformance_plugin.probe"})
    return {
        **os.environ,
        "PYTHONPATH": f"{base / 'ep'}{os.pathsep}{ROOT}",
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_CONFIG_HOME": str(base / "config"),
        "LOOM_PLUGINS": "admin,probe",
        "LOOM_SERVER__MAX_BODY_BYTES": str(MAX_BODY),
        "LOOM_LOGGING__LEVEL": "warning",
        "LOOM_PROFILES__PROBES__TOOLS": '["probe.echo", "probe.render"]',
        "LOOM_SERVER__MCP_TASK_TOOLS": '["probe.render"]',
    }


# --- stdio ---------------------------------------------------------------------------


def stdio_params(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "core.cli", "mcp"], env=env, cwd=str(ROOT))


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_client_lists_and_calls_tools(env, mode):
    async with Client(stdio_params(env), mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("probe.echo", {"text": "over stdio"})
        noisy = await client.call_tool("probe.noisy", {})  # prints to stdout inside the server
        version = client.protocol_version
    assert {"probe.echo", "admin.plugins"} <= names
    assert result.content[0].text == "over stdio"
    assert noisy.content[0].text == "quiet result"
    assert version == ("2025-11-25" if mode == "legacy" else "2026-07-28")


async def test_stdio_serves_one_profile(env):
    params = StdioServerParameters(command=sys.executable, args=["-m", "core.cli", "mcp", "--profile", "probes"],
                                   env=env, cwd=str(ROOT))
    async with Client(params, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {"probe.echo", "probe.render"}


def test_stdio_unknown_profile_is_a_clear_error(env):
    bad = subprocess.run([sys.executable, "-m", "core.cli", "mcp", "--profile", "nope"], env=env, cwd=str(ROOT),
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "unknown tool profile 'nope'" in bad.stderr and bad.stdout == ""


@pytest.mark.filterwarnings("ignore:ping is removed")
async def test_stdio_cancellation_stops_a_sync_tool_and_server_keeps_serving(env):
    async with Client(stdio_params(env), mode="legacy") as client:
        with anyio.move_on_after(1):
            await client.call_tool("probe.spin", {"seconds": 60})
        with anyio.fail_after(20):
            assert (await client.call_tool("probe.echo", {"text": "still here"})).content[0].text == "still here"
            await client.send_ping()


class RawStdio:
    """Line-level access to a `loom mcp` process, to send what no client would."""

    def __init__(self, proc: anyio.abc.Process) -> None:
        self.proc = proc
        self.buf = b""

    async def send(self, data: bytes) -> None:
        await self.proc.stdin.send(data)

    async def recv(self) -> dict:
        while b"\n" not in self.buf:
            chunk = await self.proc.stdout.receive()
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)  # every stdout line must be JSON-RPC

    async def request(self, ident: int, method: str, params: dict | None = None) -> dict:
        msg = {"jsonrpc": "2.0", "id": ident, "method": method, **({"params": params} if params else {})}
        await self.send(json.dumps(msg).encode() + b"\n")
        while True:
            reply = await self.recv()
            if reply.get("id") == ident:
                return reply


BAD_LINES = [
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/list"', types.PARSE_ERROR, None),  # truncated
    (b'\xff\xfe{"jsonrpc":"2.0"}', types.PARSE_ERROR, None),  # invalid UTF-8
    (b'{"jsonrpc":"2.0","id":11,"method":5}', types.INVALID_REQUEST, 11),  # wrong type
    (b'[{"jsonrpc":"2.0","id":12,"method":"ping"}]', types.INVALID_REQUEST, None),  # batch
    (b'{"jsonrpc":"2.0","id":13,"method":"ping","params":' + b"[" * 5000 + b"]" * 5000 + b"}",
     types.INVALID_REQUEST, None),  # deep nesting
    (b'{"jsonrpc":"2.0","id":14,"method":"ping","params":{"x":"' + b"a" * (MAX_BODY * 3) + b'"}}',
     types.INVALID_REQUEST, None),  # huge line
    (b'{"jsonrpc":"2.0","id":15,"method":"no/such/method"}', types.METHOD_NOT_FOUND, 15),
    (b'{"jsonrpc":"2.0","id":16,"method":"tools/call","params":{"name":7}}', types.INVALID_PARAMS, 16),
]


async def test_stdio_bad_input_corpus_gets_jsonrpc_errors_and_the_server_stays_up(env):
    proc = await anyio.open_process([sys.executable, "-m", "core.cli", "mcp"], env=env, cwd=str(ROOT),
                                    stderr=subprocess.DEVNULL)
    raw = RawStdio(proc)
    try:
        with anyio.fail_after(60):
            init = await raw.request(0, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                        "clientInfo": {"name": "raw", "version": "0"}})
            assert init["result"]["protocolVersion"] == "2025-11-25"
            await raw.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
            for n, (line, code, ident) in enumerate(BAD_LINES):
                await raw.send(line + b"\n")
                reply = await raw.recv()
                assert reply["error"]["code"] == code, (line[:60], reply)
                assert reply["id"] == ident
                ok = await raw.request(100 + n, "tools/list")
                assert any(t["name"] == "probe.echo" for t in ok["result"]["tools"])
    finally:
        proc.kill()
        await proc.aclose()


# --- streamable HTTP ------------------------------------------------------------------


class Daemon:
    def __init__(self, proc: subprocess.Popen, url: str, token_file: Path) -> None:
        self.proc, self.url, self.token_file = proc, url, token_file
        self.token = token_file.read_text().strip()
        self.base = url.rsplit("/", 1)[0]

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def client(self, mode: str = "auto", **kw) -> Client:
        http = httpx2.AsyncClient(headers=self.headers(), timeout=30)
        return Client(streamable_http_client(self.url, http_client=http), mode=mode, **kw)


@pytest.fixture(scope="module")
def daemon(env):
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", "--port", "0"], env=env, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = token = None
        for _ in range(20):
            if url and token:
                break
            line = proc.stdout.readline()
            if "MCP at" in line:
                url = line.split("MCP at", 1)[1].strip()
            if "token in" in line:
                token = Path(line.split("token in", 1)[1].split(" (", 1)[0].strip())
        assert url and token, "loom serve did not announce its URL and token file"
        yield Daemon(proc, url, token)
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=20) == 0  # SIGTERM is a clean shutdown
        finally:
            proc.kill()


def post(daemon: Daemon, body: bytes | dict, headers: dict[str, str] | None = None) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    extra = daemon.headers() if headers is None else headers
    return httpx.post(daemon.url, content=data, headers={**base, **extra}, timeout=30)


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_http_client_lists_and_calls_tools_with_progress(daemon, mode):
    seen: list[float] = []

    async def on_progress(progress, total, message):
        seen.append(progress)

    async with daemon.client(mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("probe.echo", {"text": "over http", "times": 2})
        steps = await client.call_tool("probe.steps", {"steps": 3}, progress_callback=on_progress)
        status = await client.read_resource("loom://status")
    assert {"probe.echo", "admin.disable_plugin"} <= names
    assert result.content[0].text == "over http over http"
    assert steps.content[0].text == "3 steps" and seen == [1, 2, 3]
    assert '"uptime_seconds"' in status.contents[0].text


@pytest.mark.filterwarnings("ignore:ping is removed")
async def test_http_long_tool_does_not_delay_ping_or_tools_list(daemon):
    async with daemon.client(mode="legacy") as client, anyio.create_task_group() as tg:
        tg.start_soon(client.call_tool, "probe.wait", {"seconds": 60})
        await anyio.sleep(0.2)
        with anyio.fail_after(10):
            await client.send_ping()
            assert "probe.wait" in {t.name for t in (await client.list_tools()).tools}
        tg.cancel_scope.cancel()


async def test_http_plugin_toggle_sends_list_changed(daemon):
    got = anyio.Event()

    async def handler(message):
        if isinstance(message, types.ToolListChangedNotification):
            got.set()

    async def consent(ctx, params):  # admin tools are destructive: the person is asked
        return types.ElicitResult(action="accept", content={"allow": True})

    async with daemon.client(mode="legacy", message_handler=handler, elicitation_callback=consent) as client:
        await client.list_tools()
        await anyio.sleep(0.3)  # let the client open its standalone GET stream
        try:
            assert not (await client.call_tool("admin.disable_plugin", {"name": "probe"})).is_error
            with anyio.fail_after(10):
                await got.wait()
            assert "probe.echo" not in {t.name for t in (await client.list_tools()).tools}
        finally:
            await client.call_tool("admin.enable_plugin", {"name": "probe"})


def test_http_security_checks(daemon):
    assert post(daemon, INIT, {}).status_code == 401  # no token
    assert post(daemon, INIT, {"Authorization": "Bearer wrong-token"}).status_code == 401
    assert post(daemon, INIT, daemon.headers(Host="evil.example:80")).status_code == 421
    assert post(daemon, INIT, daemon.headers(Origin="http://evil.example")).status_code == 403
    assert post(daemon, INIT, daemon.headers(Origin="http://localhost:3000")).status_code == 200
    assert post(daemon, b"x" * (MAX_BODY + 1)).status_code == 413
    assert post(daemon, INIT).status_code == 200
    assert stat.S_IMODE(daemon.token_file.stat().st_mode) == 0o600


def test_http_bad_input_corpus_gets_errors_and_the_server_stays_up(daemon):
    corpus = [
        (b'{"jsonrpc":"2.0","id":1,"method":"initialize"', types.PARSE_ERROR),
        (b"\xff\xfe\xfd", types.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":1,"method":5}', None),
        (b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":' + b"[" * 5000 + b"]" * 5000 + b"}", None),
    ]
    for body, code in corpus:
        r = post(daemon, body)
        assert 400 <= r.status_code < 500, (body[:40], r.status_code)
        if code is not None:
            assert r.json()["error"]["code"] == code
        assert post(daemon, INIT).status_code == 200  # the next valid request works
    r = post(daemon, INIT)
    session = {"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    post(daemon, {"jsonrpc": "2.0", "method": "notifications/initialized"}, daemon.headers(**session))
    unknown = post(daemon, {"jsonrpc": "2.0", "id": 5, "method": "no/such"}, daemon.headers(**session))
    assert '"code":-32601' in unknown.text.replace(" ", "")
    wrong = post(daemon, {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": 3}},
                 daemon.headers(**session))
    assert '"code":-32602' in wrong.text.replace(" ", "")
    ok = post(daemon, {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, daemon.headers(**session))
    assert "probe.echo" in ok.text


def test_no_auth_is_refused_off_loopback(env):
    done = subprocess.run([sys.executable, "-m", "core.cli", "serve", "--host", "0.0.0.0", "--port", "0",
                           "--no-auth"], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--no-auth" in done.stderr and "loopback" in done.stderr


def test_build_http_app_refuses_no_auth_off_loopback(make_app):
    from core.surfaces.http import build_http_app

    with pytest.raises(ValueError, match="loopback"):
        build_http_app(make_app("admin"), auth=False, host="192.168.1.10")


# --- profiles, resumable SSE and tasks over real HTTP ---------------------------------------


async def test_http_profile_path_serves_only_the_profile(daemon):
    http = httpx2.AsyncClient(headers=daemon.headers(), timeout=30)
    async with Client(streamable_http_client(daemon.url + "/probes", http_client=http), mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        echoed = await client.call_tool("probe.echo", {"text": "profiled"})
        with pytest.raises(Exception, match="not in the 'probes' profile"):
            await client.call_tool("admin.plugins", {})
    assert names == {"probe.echo", "probe.render"}
    assert echoed.content[0].text == "profiled"


def test_http_unknown_profile_path_is_404(daemon):
    unknown = httpx.post(daemon.url + "/nope", content=json.dumps(INIT), headers=daemon.headers(
        **{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}))
    assert unknown.status_code == 404


def _session(daemon: Daemon) -> dict[str, str]:
    r = post(daemon, INIT)
    headers = daemon.headers(**{"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25",
                                "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    post(daemon, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers)
    return headers


def _events(lines) -> list[tuple[str | None, dict | None]]:
    """(id, JSON data) for each SSE event in an iterator of lines; stops at the stream's end."""
    event_id, data = None, []
    for line in lines:
        if line == "":
            if event_id is not None or data:
                yield event_id, (json.loads("".join(data)) if "".join(data).strip() else None)
            event_id, data = None, []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def test_http_sse_stream_resumes_with_last_event_id(daemon):
    headers = _session(daemon)
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "probe.render", "arguments": {"steps": 6, "delay": 0.2},
                       "_meta": {"progressToken": "p"}}}
    seen: list[dict] = []
    last = None
    with httpx.stream("POST", daemon.url, content=json.dumps(call), headers=headers, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for event_id, data in _events(r.iter_lines()):
            last = event_id or last
            if data is not None:
                seen.append(data)
            if len(seen) == 2:
                break  # the connection drops mid-call
    assert last is not None and [m["params"]["progress"] for m in seen] == [1, 2]
    resumed: list[dict] = []
    get_headers = {k: v for k, v in headers.items() if k != "Content-Type"} | {"Last-Event-ID": last,
                                                                                "Accept": "text/event-stream"}
    with httpx.stream("GET", daemon.url, headers=get_headers, timeout=30) as r:
        assert r.status_code == 200
        for _, data in _events(r.iter_lines()):
            if data is not None:
                resumed.append(data)
                if data.get("id") == 9:
                    break
    progress = [m["params"]["progress"] for m in resumed if m.get("method") == "notifications/progress"]
    assert progress == [3, 4, 5, 6]  # nothing lost, nothing repeated
    assert resumed[-1]["result"]["structuredContent"] == {"frames": 6, "path": "/tmp/loom-probe.mp4"}


def test_http_task_started_on_one_connection_is_fetched_from_another(daemon):
    first = _session(daemon)
    start = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
             "params": {"name": "probe.render", "arguments": {"steps": 3, "delay": 0.1}, "task": {"ttl": 60000}}}
    created = _json_or_sse(httpx.post(daemon.url, content=json.dumps(start), headers=first, timeout=30))
    task_id = created["result"]["task"]["taskId"]
    httpx.request("DELETE", daemon.url, headers=first, timeout=30)  # the first client goes away
    second = _session(daemon)
    got = {"jsonrpc": "2.0", "id": 2, "method": "tasks/result", "params": {"taskId": task_id}}
    result = _json_or_sse(httpx.post(daemon.url, content=json.dumps(got), headers=second, timeout=30))
    assert result["result"]["structuredContent"] == {"frames": 3, "path": "/tmp/loom-probe.mp4"}
    status = {"jsonrpc": "2.0", "id": 3, "method": "tasks/get", "params": {"taskId": task_id}}
    assert _json_or_sse(httpx.post(daemon.url, content=json.dumps(status), headers=second,
                                   timeout=30))["result"]["status"] == "completed"


def _json_or_sse(r: httpx.Response) -> dict:
    if r.headers["content-type"].startswith("application/json"):
        return r.json()
    return [d for _, d in _events([*r.text.splitlines(), ""]) if d is not None][-1]


# --- fastmcp, a client nobody here wrote -----------------------------------------------------


def fastmcp_client(daemon: Daemon, path: str = ""):
    from fastmcp import Client as FastClient
    from fastmcp.client.transports import StreamableHttpTransport

    return FastClient(StreamableHttpTransport(daemon.url + path, headers=daemon.headers()))


async def test_fastmcp_client_reads_typed_structured_results(daemon):
    async with fastmcp_client(daemon) as client:
        tools = {t.name: t for t in await client.list_tools()}
        measured = await client.call_tool("probe.measure", {})
        templates = {t.uri_template for t in await client.list_resource_templates()}
    assert tools["probe.measure"].output_schema["required"] == ["width", "height"]
    assert measured.structured_content == {"width": 640, "height": 480, "unit": "px"}
    assert measured.data.width == 640  # fastmcp built a type from the declared outputSchema
    assert "loom://files/{+path}" in templates


async def test_fastmcp_client_drives_a_task_start_poll_fetch_and_cancel(daemon):
    from fastmcp_tasks.client import call_tool_task

    async with fastmcp_client(daemon) as client:
        # transparent: the server answers with a task, fastmcp polls tasks/get to the end
        plain = await client.call_tool("probe.render", {"steps": 3, "delay": 0.05})
        handle = await call_tool_task(client, "probe.render", {"steps": 4, "delay": 0.1})
        first = await handle.status()
        done = await handle.result()
        long = await call_tool_task(client, "probe.render", {"steps": 1000, "delay": 0.05})
        await long.cancel()
        final = await long.wait(timeout=20)
    assert plain.structured_content == {"frames": 3, "path": "/tmp/loom-probe.mp4"}
    assert first.status in ("working", "completed")
    assert done.structured_content == {"frames": 4, "path": "/tmp/loom-probe.mp4"}
    assert final.status == "cancelled"
