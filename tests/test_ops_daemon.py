"""Daemon operations on a real `loom serve`: health and readiness, Prometheus metrics that
parse, the live event stream, the data-dir lock, a full queue (429), and SIGTERM under load
(in-flight requests finish, nothing acknowledged is lost, exit 0)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.openai_helpers import ROOT, LoomDaemon

NO_EOS = {"0": -100, "1": -100, "2": -100}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("loom-ops")
    toml = "[plugin.openai]\nmax_waiting = 1\n[server]\nshutdown_grace = 60.0\n"
    d = LoomDaemon(base, "admin,models,llamacpp,embed,memory", toml).start()
    yield d
    if d.proc.poll() is None:
        d.stop()


def chat(d: LoomDaemon, max_tokens: int = 4, stream: bool = False, **extra) -> httpx.Response:
    body = {"model": "smollm2", "max_tokens": max_tokens, "temperature": 0, "stream": stream,
            "messages": [{"role": "user", "content": "Tell me a story."}], **extra}
    return d.post("/v1/chat/completions", json=body)


def test_health_and_readiness_need_no_token(daemon):
    assert httpx.get(daemon.base_url + "/healthz", timeout=10).json() == {"status": "ok"}
    assert httpx.get(daemon.base_url + "/readyz", timeout=10).json() == {"status": "ready"}
    assert httpx.get(daemon.base_url + "/metrics", timeout=10).status_code == 401
    assert httpx.get(daemon.base_url + "/events", timeout=10).status_code == 401
    assert httpx.get(daemon.base_url + "/healthz", headers={"Host": "evil.example"}, timeout=10).status_code == 421


def test_metrics_parse_and_count_tools_loads_and_memory(daemon):
    assert chat(daemon).status_code == 200  # loads smollm2
    # The OpenAI alias means "the default embedding model", served through the embed.text tool
    # (a named model is served through its Embed capability directly).
    emb = daemon.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["one", "two"]})
    assert emb.status_code == 200
    text = daemon.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("loom_tool_requests_total", (("status", "ok"), ("tool", "embed.text")))] == 1
    assert samples[("loom_tool_duration_seconds_count", (("tool", "embed.text"),))] == 1
    assert samples[("loom_model_loads_total", (("model", "smollm2"),))] >= 1
    assert samples[("loom_memory_budget_bytes", (("device", "cpu"),))] > 0
    assert samples[("loom_memory_used_bytes", (("device", "cpu"),))] > 0
    assert ("loom_model_memory_bytes", (("device", "cpu"), ("model", "smollm2"))) in samples
    assert ("loom_queue_depth", (("name", "cpu"), ("queue", "pool"))) in samples
    assert families["loom_http_requests"].type == "counter"
    assert families["loom_tool_duration_seconds"].type == "histogram"


def test_event_stream_delivers_bus_events(daemon):
    got: list[dict] = []
    opened = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", daemon.base_url + "/events?kinds=ToolFinished,ModelUnloaded",
                          headers=daemon.headers, timeout=30) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in r.iter_lines():
                opened.set()
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and line[6:].strip():  # an empty data line is a keep-alive
                    got.append({"event": kind, **json.loads(line[6:])})
                    if len(got) >= 2:
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert opened.wait(10)
    assert daemon.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hello"}).status_code == 200
    mcp_unload = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                  "params": {"name": "models.unload", "arguments": {"name": "smollm2"}}}
    _mcp(daemon, mcp_unload)
    t.join(20)
    kinds = [g["event"] for g in got]
    assert kinds == ["ToolFinished", "ToolFinished"] or "ModelUnloaded" in kinds, got
    assert got[0]["kind"] == got[0]["event"] and got[0]["tool"] == "embed.text" and got[0]["ok"] is True
    assert daemon.get("/events?kinds=NoSuchEvent").status_code == 400


def _mcp(d: LoomDaemon, message: dict) -> dict:
    """One request in a fresh MCP session."""
    with httpx.Client(timeout=60) as client:
        return _mcp_call(client, d, _mcp_session(client, d), message)


def _mcp_session(client: httpx.Client, d: LoomDaemon) -> dict:
    """Open an MCP session; returns the headers that carry it."""
    base = {**d.headers, "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2025-11-25"}
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "0"}}}
    r = client.post(d.base_url + "/mcp", json=init, headers=base)
    session = {**base, "mcp-session-id": r.headers["mcp-session-id"]}
    client.post(d.base_url + "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                headers=session)
    return session


def _mcp_call(client: httpx.Client, d: LoomDaemon, session: dict, message: dict) -> dict:
    r = client.post(d.base_url + "/mcp", json=message, headers=session)
    text = r.text
    if "data:" not in text:
        return json.loads(text)
    # A resumable stream opens with an empty priming event: the answer is the first data with a body.
    datas = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return json.loads(next(d for d in datas if d))


def test_second_daemon_on_the_same_data_dir_is_refused(daemon):
    done = subprocess.run([sys.executable, "-m", "core.cli", "serve", "--port", "0"], env=daemon.env,
                          cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "another Loom daemon" in done.stderr and f"pid {daemon.proc.pid}" in done.stderr
    assert "data_dir" in done.stderr  # says how to run a second one
    assert daemon.get("/readyz").status_code == 200  # the first one is untouched


def test_full_queue_answers_429_and_the_rest_are_served(daemon):
    """max_waiting = 1: one runs, one waits, a third is refused with 429 (not a timeout)."""
    results: dict[int, httpx.Response] = {}

    def run(i: int, tokens: int) -> None:
        results[i] = chat(daemon, tokens, logit_bias=NO_EOS)

    first = threading.Thread(target=run, args=(0, 64))
    first.start()
    _wait_for(lambda: daemon.get("/api/status").json()["queue"]["chat"].get("smollm2", {}).get("running") == 1)
    second = threading.Thread(target=run, args=(1, 4))
    second.start()
    _wait_for(lambda: daemon.get("/api/status").json()["queue"]["chat"]["smollm2"]["waiting"] == 1)
    refused = chat(daemon)
    first.join(120)
    second.join(120)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error" and "waiting" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert results[0].status_code == 200 and results[1].status_code == 200


def _wait_for(cond, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_sigterm_under_load_finishes_in_flight_work_and_exits_0(daemon):
    """Streams and calls in flight when SIGTERM arrives run to the end; then models unload,
    plugins close and the process exits 0. Nothing that got a 200 is cut short."""
    answers: list[tuple[int, str]] = []
    events_ended = threading.Event()

    def stream(i: int) -> None:
        body = {"model": "smollm2", "stream": True, "max_tokens": 24, "temperature": 0, "logit_bias": NO_EOS,
                "messages": [{"role": "user", "content": f"story {i}"}]}
        with httpx.stream("POST", daemon.base_url + "/v1/chat/completions", json=body, headers=daemon.headers,
                          timeout=120) as r:
            answers.append((r.status_code, "".join(r.iter_text())))

    def events() -> None:
        with httpx.stream("GET", daemon.base_url + "/events", headers=daemon.headers, timeout=120) as r:
            for _ in r.iter_lines():
                pass
        events_ended.set()

    acknowledged: list[str] = []
    stop_writing = threading.Event()
    terminated = threading.Event()

    def remember() -> None:  # a stream of memory writes over MCP; each answer is an acknowledgement
        # One session and connection for the whole stream, a short pause between writes, and
        # 20 writes once SIGTERM is sent: writes stay in flight across it without starving the
        # streams of CPU for the whole drain (the session's calls are still served meanwhile).
        after = 0
        with httpx.Client(timeout=60) as client:
            session = _mcp_session(client, daemon)
            for i in range(1000):
                after += terminated.is_set()
                if stop_writing.is_set() or after > 20:
                    return
                text = f"fact number {i} about the user"
                try:
                    reply = _mcp_call(client, daemon, session, {
                        "jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                        "params": {"name": "memory.remember", "arguments": {"text": text}}})
                except (httpx.HTTPError, KeyError, ValueError, IndexError, StopIteration):
                    return  # refused or cut before an answer: not acknowledged
                if "result" not in reply or reply["result"].get("isError"):
                    return  # refused (the daemon is draining): not acknowledged, and the stream ends
                acknowledged.append(text)
                time.sleep(0.02)

    writer = threading.Thread(target=remember, daemon=True)
    writer.start()
    ev = threading.Thread(target=events, daemon=True)
    ev.start()
    _wait_for(lambda: len(acknowledged) >= 3)  # writes are flowing
    def lane() -> dict:
        return daemon.get("/api/status").json()["queue"]["chat"].get("smollm2", {})

    served_before = lane().get("served", 0)
    threads = [threading.Thread(target=stream, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    # both streams admitted (decoding, queued, or done) before SIGTERM: a request that reaches
    # the daemon after it is refused with 503, which is the drain working, not a cut
    def admitted() -> bool:
        now = lane()
        return now.get("running", 0) + now.get("waiting", 0) + now.get("served", 0) - served_before >= 2

    _wait_for(admitted)
    daemon.proc.send_signal(signal.SIGTERM)
    terminated.set()
    for t in threads:
        t.join(120)
    rc = daemon.proc.wait(90)
    stop_writing.set()
    writer.join(30)
    log = daemon.stderr()
    assert rc == 0, log
    assert events_ended.wait(10)  # the event stream was ended, not left hanging
    assert len(answers) == 2
    for status, body in answers:
        assert status == 200
        assert body.rstrip().endswith("data: [DONE]"), body[-300:]
        assert '"finish_reason":"length"' in body  # every acknowledged stream ran to the end
    assert "draining" in log and '"reason": "shutdown"' in log and "loom: stopped" in log
    with pytest.raises(httpx.TransportError):
        httpx.get(daemon.base_url + "/healthz", timeout=5)
    # every memory the daemon acknowledged is in the database it closed
    import sqlite3

    db = sqlite3.connect(daemon.base / "data" / "loom" / "memory.db")
    stored = {row[0] for row in db.execute("SELECT text FROM memories")}
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert acknowledged and set(acknowledged) <= stored, set(acknowledged) - stored
