"""Abandoned requests and shutdown on a real `loom serve` with the packaged SmolLM2
(issue 20, items 3 and 9): a chat whose client disconnects, running or queued, is
cancelled and frees its slot; during a drain `/readyz` answers 503, not a refused
connection (shown with a slow MCP tool call in flight)."""

from __future__ import annotations

import signal
import socket
import threading
import time

import httpx
import pytest

from tests.openai_helpers import LoomDaemon

NO_EOS = {"0": -100, "1": -100, "2": -100}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    toml = "[server]\nshutdown_grace = 60.0\ndrain_timeout = 10.0\n"
    d = LoomDaemon(tmp_path_factory.mktemp("loom-abandon"), "admin,models,llamacpp", toml).start()
    yield d
    if d.proc.poll() is None:
        d.stop()


def _body(max_tokens: int, stream: bool = False) -> dict:
    return {"model": "smollm2", "max_tokens": max_tokens, "temperature": 0, "logit_bias": NO_EOS, "stream": stream,
            "messages": [{"role": "user", "content": "Tell me a very long story."}]}


def _lane(d: LoomDaemon) -> dict:
    return d.get("/api/status").json()["queue"]["chat"].get("smollm2", {"running": 0, "waiting": 0})


def test_abandoned_requests_give_their_slot_back(daemon):
    assert daemon.post("/v1/chat/completions", json=_body(2)).status_code == 200  # the model is loaded

    def abandon() -> None:  # waits 2 s for an answer that takes minutes, then hangs up
        try:
            httpx.post(daemon.base_url + "/v1/chat/completions", json=_body(3000), headers=daemon.headers,
                       timeout=httpx.Timeout(10.0, read=2.0))
        except httpx.TimeoutException:
            pass

    threads = [threading.Thread(target=abandon) for _ in range(4)]  # one runs, three queue
    for t in threads:
        t.start()
        time.sleep(0.2)
    seen = _lane(daemon)
    for t in threads:
        t.join()
    deadline = time.monotonic() + 20
    lane = _lane(daemon)
    while (lane["running"] or lane["waiting"]) and time.monotonic() < deadline:
        time.sleep(0.2)
        lane = _lane(daemon)
    assert seen["running"] == 1 and seen["waiting"] >= 1  # the requests really were in line
    assert lane["running"] == 0 and lane["waiting"] == 0  # and every abandoned one left it
    answer = daemon.post("/v1/chat/completions", json={**_body(3), "logit_bias": {}})
    assert answer.status_code == 200


@pytest.fixture
def probe_daemon(tmp_path):
    from tests.conformance_plugin.entrypoint import write_dist_info
    from tests.openai_helpers import ROOT

    write_dist_info(tmp_path / "ep", {"probe": "tests.conformance_plugin.probe"})
    env = {"PYTHONPATH": f"{tmp_path / 'ep'}:{ROOT}", "LOOM_DISABLE_PLUGIN_AUTOLOAD": "0"}
    toml = "[server]\nshutdown_grace = 30.0\ndrain_timeout = 10.0\n"
    d = LoomDaemon(tmp_path, "admin,probe", toml, env=env).start()
    yield d
    if d.proc.poll() is None:
        d.stop()


def _mcp(d: LoomDaemon, body: dict, sid: str | None = None, timeout: float = 60) -> httpx.Response:
    headers = {**d.headers, "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    if sid:
        headers["Mcp-Session-Id"] = sid
    return httpx.post(d.base_url + "/mcp", json=body, headers=headers, timeout=timeout)


def test_readyz_answers_503_while_draining(probe_daemon):
    d = probe_daemon
    init = _mcp(d, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    sid = init.headers["mcp-session-id"]
    _mcp(d, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    answers: list[httpx.Response] = []
    call = threading.Thread(target=lambda: answers.append(_mcp(d, {
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "probe.wait", "arguments": {"seconds": 3}}}, sid)))
    call.start()
    time.sleep(1.0)  # the call is in flight
    d.proc.send_signal(signal.SIGTERM)
    statuses: list[object] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(d.base_url + "/readyz", timeout=5)
            statuses.append((resp.status_code, resp.json().get("status")))
            if resp.status_code == 503:
                break
        except httpx.TransportError as exc:
            statuses.append(type(exc).__name__)
        time.sleep(0.05)
    call.join(30)
    assert (503, "draining") in statuses, statuses
    assert answers and answers[0].status_code == 200 and "waited" in answers[0].text  # it ran to its end
    assert d.stop() == 0


def test_the_openai_surface_cancels_work_whose_client_left(make_app):
    """The same through the surface's request wrapper on a real uvicorn server, with a
    handler that holds a queue slot for a minute (runs where llama.cpp cannot)."""
    import anyio
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from core.surfaces.openai import OpenAISurface
    from core.surfaces.ops import DaemonOps

    app = make_app("admin")
    ops = DaemonOps(app)
    surface = OpenAISurface(app, ops)
    outcomes: list[str] = []

    async def slow(request):
        await request.body()
        try:
            async with ops.queue.slot("m"):
                await anyio.sleep(60)
        except BaseException:
            outcomes.append("cancelled")
            raise
        return JSONResponse({"done": True})

    star = Starlette(routes=[Route("/slow", surface._wrap(slow), methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(star, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def abandon() -> None:
        try:
            httpx.post(f"http://127.0.0.1:{port}/slow", json={}, timeout=httpx.Timeout(10.0, read=4.0))
        except httpx.TimeoutException:
            pass

    try:
        threads = [threading.Thread(target=abandon) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 3
        while ops.queue.depth < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        seen = ops.queue.snapshot().get("m")
        for t in threads:
            t.join()
        deadline = time.monotonic() + 10
        while len(outcomes) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen == {"running": 1, "waiting": 3, "served": 0}
        assert outcomes == ["cancelled"] * 4
        assert ops.queue.snapshot()["m"]["running"] == 0 and ops.queue.depth == 0
    finally:
        server.should_exit = True
        thread.join(10)
