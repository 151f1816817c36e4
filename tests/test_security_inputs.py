"""Hostile inputs to tools (issue 20, items 5, 8 and 10): a DNS-rebinding name cannot reach
loopback through the vision URL fetch; a sync tool whose progress cannot be delivered
neither hangs nor outlives its cancellation; over-long paths and invalid CSS selectors
are clean tool errors."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import anyio
import msgspec
import pytest

from core.config import LoomConfig, PathsConfig
from core.tools import ToolContext, ToolError, ToolRegistry

pytestmark = pytest.mark.anyio

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@pytest.fixture
def loopback_server():
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            hits.append((self.path, self.headers.get("Host")))
            body, kind = (PNG, "image/png") if self.path.endswith(".png") else \
                (b"<html><title>t</title><main><a href='/x'>x</a></main></html>", "text/html")
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], hits
    server.shutdown()


def test_a_rebinding_name_cannot_reach_loopback_through_the_vision_fetch(monkeypatch, loopback_server):
    from core.images import ImageLimits, fetch_url

    port, hits = loopback_server
    real = socket.getaddrinfo
    answers = iter(["93.184.215.14"])  # the first lookup (the check) sees a public address
    dialled: list = []

    def rebinding(host, *args, **kw):
        if host == "rebind.example":  # ...every later lookup answers loopback
            ip = next(answers, "127.0.0.1")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, args[0] if args else port))]
        return real(host, *args, **kw)

    def no_traffic(address, *args, **kw):  # record where the fetch dials; send nothing anywhere
        dialled.append(address)
        raise OSError("the test network stops here")

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(socket, "create_connection", no_traffic)
    with pytest.raises(ToolError):
        fetch_url(f"http://rebind.example:{port}/secret.png", ImageLimits(url_timeout=1.0))
    assert dialled and all(host == "93.184.215.14" for host, _ in dialled)  # the checked address, no new lookup
    assert hits == []  # nothing reached the loopback server


def test_a_pinned_fetch_still_sends_the_name(monkeypatch, loopback_server):
    from core import images

    port, hits = loopback_server
    monkeypatch.setattr(images, "check_url", lambda url, allow_private, **kw: "127.0.0.1")  # as if it were vetted
    data = images.fetch_url(f"http://pictures.example:{port}/a.png", images.ImageLimits(url_timeout=5.0))
    assert data == PNG and hits == [("/a.png", f"pictures.example:{port}")]


class Steps(msgspec.Struct):
    n: int = 40


def _slow_tool(finished: threading.Event):
    def slow(args: Steps, ctx: ToolContext) -> str:
        try:
            for i in range(args.n):
                ctx.progress_sync(i, args.n, "working")
                time.sleep(0.02)
            return "done"
        finally:
            finished.set()

    return slow


async def test_a_sync_tool_whose_progress_cannot_be_delivered_still_finishes():
    finished = threading.Event()
    reg = ToolRegistry()
    reg.add(_slow_tool(finished), plugin="demo")

    async def stuck(progress, total, message):  # a client that dropped its stream
        await anyio.sleep_forever()

    with anyio.fail_after(30):
        result = await reg.call("demo.slow", {"n": 5}, ToolContext(on_progress=stuck))
    assert result.text() == "done" and finished.is_set()


async def test_cancelling_a_sync_tool_with_stuck_progress_is_prompt():
    finished = threading.Event()
    reg = ToolRegistry()
    reg.add(_slow_tool(finished), plugin="demo")

    async def stuck(progress, total, message):
        await anyio.sleep_forever()

    with anyio.move_on_after(0.5):
        await reg.call("demo.slow", {"n": 1000}, ToolContext(on_progress=stuck))
    # the worker thread (and whatever model it holds) stops soon after, not at shutdown
    assert await anyio.to_thread.run_sync(finished.wait, 10)


def _coder_app(make_app, data_dir):
    cfg = LoomConfig(paths=PathsConfig(data_dir=str(data_dir), allowed_roots=[str(data_dir)]))
    return make_app("coder", "assistant", config=cfg)


@pytest.mark.parametrize("path", ["a" * 5000, "d/" + "n" * 300 + ".py"])
async def test_over_long_paths_are_tool_errors(make_app, data_dir, path):
    app = _coder_app(make_app, data_dir)
    async with app:
        for tool, args in (("coder.edit", {"path": path, "instruction": "x"}),
                           ("coder.open_in_editor", {"path": path}),
                           ("coder.generate", {"task": "x", "context_files": [path]}),
                           ("assistant.route", {"text": "what is this", "attachments": [path]})):
            with pytest.raises(ToolError, match="too long") as err:
                await app.call(tool, args)
            assert len(str(err.value)) < 400, tool


@pytest.mark.slow
async def test_an_invalid_css_selector_is_a_tool_error(make_app, loopback_server):
    port, _ = loopback_server
    page = f"http://127.0.0.1:{port}/page"
    app = make_app("browser", config=LoomConfig(plugin={"browser": {"allow_loopback": True}}))
    async with app:
        with pytest.raises(ToolError, match="not a valid CSS selector") as err:
            await app.call("browser.extract", {"selector": "div[[[", "url": page})
        with pytest.raises(ToolError, match="no element matches"):
            await app.call("browser.extract", {"selector": "#nothing-here"})
        found = await app.call("browser.extract", {"selector": "main", "what": "links"})
    assert "    at " not in str(err.value)  # no JavaScript stack trace
    assert found.structured["links"][0]["text"] == "x"


async def test_a_progress_send_that_raises_does_not_fail_the_tool():
    """A dropped stream on the 2026-07-28 transport: the send raises WouldBlock; a tool that
    reports progress through ``ctx.progress`` from its own thread (voice.speak) keeps going."""
    finished = threading.Event()
    sends: list[float] = []

    def speak_like(args: Steps, ctx: ToolContext) -> str:
        token = ctx._token
        try:
            for i in range(args.n):
                anyio.from_thread.run(ctx.progress, float(i), float(args.n), "sentence", token=token)
            return "spoken"
        finally:
            finished.set()

    async def dropped(progress, total, message):
        sends.append(progress)
        raise anyio.WouldBlock

    reg = ToolRegistry()
    reg.add(speak_like, plugin="demo")
    with anyio.fail_after(30):
        result = await reg.call("demo.speak_like", {"n": 5}, ToolContext(on_progress=dropped))
    assert result.text() == "spoken" and finished.is_set() and sends == [0.0]  # tried once, then stopped


@pytest.mark.parametrize("ident", ["{}", "[1]", "1.5", "true", "null"])
def test_a_stdio_request_with_an_invalid_id_gets_an_error_not_silence(ident):
    from core.surfaces.mcp import parse_line

    message, error = parse_line(b'{"jsonrpc": "2.0", "id": ' + ident.encode() + b', "method": "tools/list"}')
    assert message is None and error["code"] == -32600 and error["id"] is None
