"""Property-based fuzzing of the HTTP surfaces of a real `loom serve` (issue 20): `/mcp`,
`/v1/*`, the dashboard and the login form get malformed bodies, headers and encodings,
with and without the token.

The properties: the daemon keeps serving, nothing answers 5xx, every error is a 4xx with
a JSON body (the dashboard's HTML login page excepted), no answer echoes more than a
bounded size, and the daemon's memory stays bounded. Bounded for CI: derandomized, a
fixed number of examples.
"""

from __future__ import annotations

import json

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_strategies import JUNK, NASTY_STRINGS, deep
from tests.openai_helpers import LoomDaemon

PATHS = ["/mcp", "/v1/chat/completions", "/v1/embeddings", "/v1/images/generations", "/v1/audio/speech",
         "/v1/audio/transcriptions", "/v1/models", "/v1/models/x", "/", "/login", "/api/status", "/metrics",
         "/healthz", "/readyz", "/nowhere", "/v1/../../etc/passwd", "/%00", "/v1/models/" + "m" * 3000]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW", "get"]
HTML_PATHS = {"/", "/login"}  # the dashboard answers a person: an HTML page, also for errors
ECHO_LIMIT = 8192
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def client():
    """One client for every example: building one per request (an SSL context each) cost more
    than the requests. No keep-alive: every example still gets a fresh connection."""
    with httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        yield c


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = LoomDaemon(tmp_path_factory.mktemp("fuzz-http"), "admin,policy,memory,models",
                   "[plugin.memory]\nembedder = \"none\"\n[server]\nmax_body_bytes = 1048576\n").start()
    yield d
    d.stop()


def _json_bodies():
    valid = st.fixed_dictionaries({"model": st.sampled_from(["smollm2", "loom", "x", ""]),
                                   "messages": st.lists(JUNK, max_size=3)},
                                  optional={"stream": st.booleans(), "max_tokens": JUNK, "tools": JUNK, "n": JUNK,
                                            "input": JUNK, "prompt": JUNK})
    rpc = st.fixed_dictionaries({"jsonrpc": st.sampled_from(["2.0", "1.0", 2]), "method": JUNK},
                                optional={"id": JUNK, "params": JUNK})
    return st.one_of(valid, rpc, JUNK, st.just(deep(50)))


BODIES = st.one_of(
    _json_bodies().map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=2048),
    st.sampled_from([s.encode("utf-8", "surrogatepass") for s in NASTY_STRINGS]),
    st.just(b'{"model": "\xff\xfe\xfd", "messages": []}'),
    st.just(b"[" * 50_000),
    st.just(b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    st.just(b"token=" + b"A" * 20_000),
)
HEADERS = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x",
                                     "application/x-www-form-urlencoded", "application/json; charset=latin-1", ""]),
    "Accept": st.sampled_from(["application/json, text/event-stream", "*/*", "text/html", ""]),
    "Mcp-Session-Id": st.sampled_from(["", "x" * 300, "../../", "0"]),
    "MCP-Protocol-Version": st.sampled_from(["2025-11-25", "2026-07-28", "1999-01-01", "x"]),
    "Content-Encoding": st.sampled_from(["gzip", "br", "identity"]),
    "Origin": st.sampled_from(["http://127.0.0.1", "null", "http://evil.example"]),
    "Cookie": st.sampled_from(["loom_session=x", "a" * 3000]),
})


@FUZZ
@given(method=st.sampled_from(METHODS), path=st.sampled_from(PATHS), body=BODIES, headers=HEADERS,
       with_token=st.booleans())
def test_fuzz_http_surfaces(daemon, client, method, path, body, headers, with_token):
    auth = {"Authorization": f"Bearer {daemon.token}"} if with_token else {}
    try:
        r = client.request(method, daemon.base_url + path, content=body if method not in ("GET", "HEAD") else None,
                           headers={**headers, **auth})
    except httpx.RemoteProtocolError:
        return  # the server refused a request it could not parse (h11: 400 then close)
    assert r.status_code < 500, (method, path, r.status_code, r.text[:300])
    if r.status_code >= 400 and method != "HEAD":
        kind = r.headers.get("content-type", "")
        if path in HTML_PATHS and r.status_code in (401, 405):
            assert kind.startswith("text/html") or kind.startswith("application/json")
        else:
            assert kind.startswith("application/json"), (method, path, r.status_code, kind, r.text[:200])
            r.json()
    if path not in ("/metrics", "/api/status", "/v1/models") and r.status_code != 200:
        assert len(r.content) <= ECHO_LIMIT, (method, path, len(r.content))


def test_the_daemon_kept_serving_with_bounded_memory(daemon):
    rss_before = psutil.Process(daemon.proc.pid).memory_info().rss
    big = b'{"model": "x", "messages": [' + b'{"role": "user", "content": "' + b"y" * 900_000 + b'"}]}'
    with httpx.Client(timeout=60) as client:
        for _ in range(20):  # bodies near the cap, with and without the token
            client.post(daemon.base_url + "/v1/chat/completions", content=big, headers=daemon.headers)
            client.post(daemon.base_url + "/login", content=big)
    assert httpx.get(daemon.base_url + "/healthz", timeout=10).status_code == 200
    assert daemon.get("/api/status").status_code == 200
    grown = psutil.Process(daemon.proc.pid).memory_info().rss - rss_before
    assert grown < 150 * 1024 * 1024, f"RSS grew by {grown / 2**20:.0f} MiB"
