"""Unauthenticated costs are bounded on a real `loom serve` (issue 20, items 2, 4, 6, 7, 9, 10):
the login body cap, bounded metric labels, header/idle timeouts and the connection cap,
MCP session eviction, invalid JSON-RPC ids, private data-dir modes, the OpenAI API's
answers to malformed bodies, and the CLI's message for a refused token."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.openai_helpers import ROOT, LoomDaemon

TOML = """
[server]
header_timeout = 1.0
idle_timeout = 1.0
max_connections = 24
max_sessions = 4
max_sessions_per_client = 2
"""
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "probe", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": "2025-11-25"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = LoomDaemon(tmp_path_factory.mktemp("loom-sec"), "admin,policy,memory", TOML).start()
    yield d
    d.stop()


def _host_port(d: LoomDaemon) -> tuple[str, int]:
    host, port = d.base_url.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (reads until EOF or timeout)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True  # reset by the server


def test_login_reads_at_most_a_few_kb_without_a_token(daemon):
    url = daemon.base_url + "/login"
    big = httpx.post(url, content=b"token=" + b"x" * 1_000_000, timeout=30,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413 and "8192" in big.json()["error"]

    def chunks():  # no Content-Length: the cap is counted while reading
        for _ in range(64):
            yield b"x" * 4096

    chunked = httpx.post(url, content=chunks(), timeout=30)
    assert chunked.status_code == 413
    ok = httpx.post(url, data={"token": "wrong"}, timeout=30)  # a real login form still works
    assert ok.status_code == 401 and "not valid" in ok.text
    time.sleep(0.3)
    assert "Traceback" not in daemon.stderr()  # a chunked body over the cap is not an ASGI error


def test_concurrent_big_logins_do_not_grow_the_daemon(daemon):
    import psutil

    proc = psutil.Process(daemon.proc.pid)
    before = proc.memory_info().rss

    def login() -> None:
        def body():  # 8 MiB, streamed: no Content-Length to refuse up front
            chunk = b"token=" + b"x" * 65530
            for _ in range(128):
                yield chunk

        try:
            httpx.post(daemon.base_url + "/login", content=body(), timeout=60)
        except httpx.TransportError:
            pass  # refused mid-upload: the server answered 413 and closed

    threads = [threading.Thread(target=login) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grown = proc.memory_info().rss - before
    assert grown < 40 * 2**20, f"RSS grew by {grown / 2**20:.0f} MiB"
    assert httpx.get(daemon.base_url + "/healthz", timeout=10).status_code == 200


def test_metric_labels_stay_bounded_under_junk_methods_and_paths(daemon):
    with httpx.Client(timeout=10) as client:
        for i in range(60):
            client.request(f"JUNK{i}", daemon.base_url + f"/nowhere/{i}")
    text = daemon.get("/metrics").text
    assert "JUNK" not in text and "/nowhere" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("loom_http_requests_total")]
    assert any('method="other"' in ln for ln in lines) and len(lines) < 20


def test_slowloris_and_unused_connections_are_closed(daemon):
    addr = _host_port(daemon)
    slow = socket.create_connection(addr)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes its headers
    idle = socket.create_connection(addr)  # never sends anything
    try:
        assert _closed_within(slow, 6) and _closed_within(idle, 6)
    finally:
        slow.close()
        idle.close()
    assert httpx.get(daemon.base_url + "/healthz", timeout=10).status_code == 200


def test_open_connections_are_capped(daemon):
    addr = _host_port(daemon)
    socks = [socket.create_connection(addr) for _ in range(40)]
    try:
        refused = sum(_closed_within(s, 0.3) for s in socks)
    finally:
        for s in socks:
            s.close()
    assert refused >= 40 - 24
    time.sleep(0.5)
    assert httpx.get(daemon.base_url + "/healthz", timeout=10).status_code == 200


def _open_session(d: LoomDaemon, agent: str) -> httpx.Response:
    return httpx.post(d.base_url + "/mcp", json=INIT, timeout=30,
                      headers={**d.headers, **MCP_HEADERS, "User-Agent": agent})


def _ping(d: LoomDaemon, sid: str, agent: str) -> int:
    body = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    return httpx.post(d.base_url + "/mcp", json=body, timeout=30,
                      headers={**d.headers, **MCP_HEADERS, "User-Agent": agent, "Mcp-Session-Id": sid}).status_code


def test_a_client_that_never_closes_sessions_cannot_lock_others_out(daemon):
    greedy = [_open_session(daemon, "greedy/1") for _ in range(6)]
    assert all(r.status_code == 200 for r in greedy)  # over its cap of 2: its own idlest go
    ids = [r.headers["mcp-session-id"] for r in greedy]
    assert [_ping(daemon, sid, "greedy/1") for sid in ids] == [404, 404, 404, 404, 200, 200]
    others = [_open_session(daemon, f"legacy/{i}") for i in range(4)]  # over max_sessions: the idlest go
    assert all(r.status_code == 200 for r in others)
    assert _ping(daemon, others[-1].headers["mcp-session-id"], "legacy/3") == 200


def test_invalid_jsonrpc_ids_get_an_error_not_silence(daemon):
    sid = _open_session(daemon, "ids/1").headers["mcp-session-id"]
    for bad in ({}, [1], 1.5, True, None):
        r = httpx.post(daemon.base_url + "/mcp", timeout=30,
                       json={"jsonrpc": "2.0", "id": bad, "method": "tools/list"},
                       headers={**daemon.headers, **MCP_HEADERS, "User-Agent": "ids/1", "Mcp-Session-Id": sid})
        assert r.status_code == 400, bad
        assert r.json()["error"]["code"] == -32600 and r.json()["id"] is None


def test_data_dir_and_private_files_are_not_world_readable(daemon):
    data = daemon.base / "data" / "loom"
    deadline = time.monotonic() + 30
    while not (data / "memory.db").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    daemon.post("/mcp", json=INIT, headers=MCP_HEADERS)
    assert data.stat().st_mode & 0o777 == 0o700
    for name in ("token", "memory.db", "loom.lock"):
        assert (data / name).stat().st_mode & 0o077 == 0, name


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"model": "\xff\xfe", "messages": []}',
                                  b'{"model": "m", "messages": [' + b"{" * 5000])
def test_malformed_openai_bodies_are_4xx_json(daemon, body):
    r = daemon.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert "Error" not in err["message"] and len(r.content) < 2000  # no exception class names, no echo


def test_the_cli_says_when_the_daemon_refuses_its_token(daemon, tmp_path):
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-of-this-daemon\n")
    env = {**daemon.env, "LOOM_SERVER__TOKEN_FILE": str(wrong)}
    proc = subprocess.run([sys.executable, "-m", "core.cli", "models", "list"], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "refused the token (HTTP 401)" in proc.stderr and "TaskGroup" not in proc.stderr


def test_a_data_dir_that_cannot_be_created_is_a_clear_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    d = LoomDaemon(tmp_path, "admin", env={"XDG_DATA_HOME": str(blocker)})
    proc = subprocess.run([sys.executable, "-m", "core.cli", "serve", "--port", "0"], env=d.env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "cannot be used" in proc.stderr and "Traceback" not in proc.stderr
    assert json.dumps(str(blocker))[1:-1] in proc.stderr
