"""MCP round-trip benchmark: Loom vs a bare SDK ``MCPServer`` with the same tool, same run.

Measures a near no-op tool call (p50, p99) over stdio and over streamable HTTP, the
throughput of 32 concurrent HTTP clients, and the cold start of ``loom serve`` (launch to
the first answered ``tools/list``). Prints each figure and the ratio Loom / bare
(target: within 1.15x on every figure; exits 1 on a miss). The two sides alternate which
goes first in each round; figures are medians over rounds.

    .venv/bin/python bench/mcp_roundtrip.py [--calls 300] [--clients 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import anyio
import httpx
import httpx2
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conformance_plugin.entrypoint import write_dist_info  # noqa: E402

BARE = textwrap.dedent('''
    import sys
    from mcp.server import MCPServer
    mcp = MCPServer("bare")

    @mcp.tool(name="probe.echo")
    def echo(text: str, times: int = 1) -> str:
        """Repeat the text."""
        return " ".join([text] * times)

    if sys.argv[1] == "stdio":
        mcp.run("stdio")
    else:
        print("bare: MCP at http://127.0.0.1:%s/mcp" % sys.argv[2], flush=True)
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
''')


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


async def timed_calls(client: Client, n: int) -> list[float]:
    for _ in range(20):
        await client.call_tool("probe.echo", {"text": "x"})
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await client.call_tool("probe.echo", {"text": "x"})
        out.append(time.perf_counter() - t)
    return out


class Servers:
    def __init__(self, tmp: Path, clients: int) -> None:
        self.tmp = tmp
        write_dist_info(tmp / "ep", {"probe": "tests.conformance_plugin.probe"})
        (tmp / "bare.py").write_text(BARE)
        self.env = {**os.environ, "PYTHONPATH": f"{tmp / 'ep'}{os.pathsep}{ROOT}",
                    "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config"),
                    "LOOM_PLUGINS": "admin,probe", "LOOM_LOGGING__LEVEL": "warning",
                    # All bench clients share one token, so Loom's per-client session cap (16 by
                    # default; past it the client's idlest session is closed) would end sessions
                    # that the bare server, which has no cap, keeps: same limits on both sides.
                    "LOOM_SERVER__MAX_SESSIONS_PER_CLIENT": str(clients + 4),
                    "LOOM_SERVER__MAX_SESSIONS": str(max(64, clients + 4))}

    def stdio(self, which: str) -> StdioServerParameters:
        args = ["-m", "core.cli", "mcp"] if which == "loom" else [str(self.tmp / "bare.py"), "stdio"]
        return StdioServerParameters(command=sys.executable, args=args, env=self.env, cwd=str(ROOT))

    def launch_http(self, which: str) -> tuple[subprocess.Popen, str, dict[str, str]]:
        port = free_port()
        args = (["-m", "core.cli", "serve", "--port", str(port)] if which == "loom"
                else [str(self.tmp / "bare.py"), "http", str(port)])
        proc = subprocess.Popen([sys.executable, *args], env=self.env, cwd=str(ROOT), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        headers = {}
        if which == "loom":
            token_file = self.tmp / "data" / "loom" / "token"
            for _ in range(200):
                if token_file.exists() and token_file.read_text().strip():
                    break
                time.sleep(0.01)
            headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        return proc, f"http://127.0.0.1:{port}/mcp", headers


def first_tools_list(url: str, headers: dict[str, str], started: float) -> float:
    """Seconds from ``started`` until the server answered initialize + tools/list."""
    h = {**headers, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}
    with httpx.Client(timeout=10) as http:
        while True:
            try:
                r = http.post(url, json=init, headers=h)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.005)
        s = {**h, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=s)
        r = http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=s)
        assert "probe.echo" in r.text, r.text[:200]
    return time.perf_counter() - started


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def throughput(url: str, headers: dict[str, str], clients: int, per_client: int) -> float:
    async def one() -> None:
        http = httpx2.AsyncClient(headers=headers, timeout=60)
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as c:
            for _ in range(per_client):
                await c.call_tool("probe.echo", {"text": "x"})

    t = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(one)
    return clients * per_client / (time.perf_counter() - t)


async def measure(servers: Servers, which: str, args: argparse.Namespace) -> dict[str, float]:
    """Every figure for one side (``loom`` or ``bare``) in one round."""
    out: dict[str, float] = {}
    async with Client(servers.stdio(which), mode="legacy") as c:
        lat = await timed_calls(c, args.calls)
    out["stdio p50 ms"] = pct(lat, 0.5) * 1e3
    out["stdio p99 ms"] = pct(lat, 0.99) * 1e3

    cold = []
    for _ in range(3):
        started = time.perf_counter()
        proc, url, headers = servers.launch_http(which)
        try:
            cold.append(first_tools_list(url, headers, started))
        finally:
            stop(proc)
    out["cold start to tools/list s"] = statistics.median(cold)

    proc, url, headers = servers.launch_http(which)
    try:
        first_tools_list(url, headers, time.perf_counter())
        http = httpx2.AsyncClient(headers=headers, timeout=60)
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as c:
            lat = await timed_calls(c, args.calls)
        out["http p50 ms"] = pct(lat, 0.5) * 1e3
        out["http p99 ms"] = pct(lat, 0.99) * 1e3
        out[f"http {args.clients} clients calls/s"] = await throughput(url, headers, args.clients, args.per_client)
    finally:
        stop(proc)
    return out


TARGET_RATIO = 1.15


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--per-client", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)  # odd: the median is one round, not a mean of two
    args = ap.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {"loom": [], "bare": []}
    with tempfile.TemporaryDirectory() as d:
        servers = Servers(Path(d), args.clients)
        for rnd in range(args.rounds):
            # Alternate which side goes first so neither always gets the warmer caches / quieter slot.
            for which in (("bare", "loom") if rnd % 2 == 0 else ("loom", "bare")):
                rounds[which].append(await measure(servers, which, args))
    results = {which: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for which, rs in rounds.items()}
    missed = []
    print(f"{'figure (median of rounds)':36} {'loom':>10} {'bare':>10} {'loom/bare':>10}")
    for key, loom in results["loom"].items():
        bare = results["bare"][key]
        # for throughput, higher is better: report bare/loom so >1 always means "Loom slower"
        ratio = bare / loom if "calls/s" in key else loom / bare
        print(f"{key:36} {loom:10.3f} {bare:10.3f} {ratio:9.2f}x")
        if ratio > TARGET_RATIO:
            missed.append(f"{key} {ratio:.2f}x")
    print(f"(ratio > 1 means Loom is slower; target <= {TARGET_RATIO}x on every figure)")
    print(f"MISSED: {'; '.join(missed)} > {TARGET_RATIO}x" if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
