"""LLM overhead benchmark: raw llama-cpp-python vs ``coder.generate`` in process vs MCP over HTTP.

Same model (the packaged SmolLM2-135M-Instruct), same messages (the ones coder.generate
builds), greedy decoding with the same max_tokens, so every path produces the same
tokens. Figures, medians over --runs rounds (paths alternate inside each round):

- decode tokens/s: completion tokens / (end - first token), as the caller sees them;
- time to first token (TTFT): call start to the first text the caller receives
  (raw: first streamed chunk; coder: first progress callback; MCP: first progress
  notification). "cold" resets the model's KV cache first (the whole prompt is
  evaluated); "warm" repeats the prompt (llama.cpp reuses its prefix).

Targets: in process >= 0.97 of raw tokens/s and TTFT overhead < 20 ms; MCP >= 0.95.

    .venv/bin/python bench/llm_overhead.py [--runs 5] [--tokens 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.app import Loom  # noqa: E402
from core.config import LoomConfig, PathsConfig  # noqa: E402
from plugins.coder import prompts  # noqa: E402

TASK = "python function that checks whether a string is a palindrome, with a docstring and an example"


class Run(dict):
    """One measured call: ttft (s), tokens, decode seconds, text."""

    @property
    def tps(self) -> float:
        return (self["tokens"] - 1) / self["decode_s"] if self["decode_s"] > 0 else float("nan")


def raw_call(llm: Any, messages: list[dict[str, Any]], max_tokens: int, cold: bool) -> Run:
    """llama-cpp-python alone: its own streaming chat completion, same sampling settings."""
    if cold:
        llm.reset()
    t0 = time.perf_counter()
    first = None
    parts = []
    for chunk in llm.create_chat_completion(messages=messages, stream=True, max_tokens=max_tokens, temperature=0.0,
                                            top_p=0.95, top_k=40, seed=0, stop=[], repeat_penalty=1.0):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            if first is None:
                first = time.perf_counter()
            parts.append(text)
    end = time.perf_counter()
    return Run(ttft=first - t0, decode_s=end - first, text="".join(parts), tokens=None)


async def coder_call(app: Loom, max_tokens: int) -> Run:
    first = None

    async def progress(done: float, total: float | None, message: str | None) -> None:
        nonlocal first
        if first is None:
            first = time.perf_counter()

    t0 = time.perf_counter()
    result = await app.call("coder.generate", {"task": TASK, "max_tokens": max_tokens, "temperature": 0.0,
                                               "seed": 0}, on_progress=progress)
    end = time.perf_counter()
    return Run(ttft=first - t0, decode_s=end - first, text=result.text(),
               tokens=result.structured["usage"]["completion_tokens"])


async def in_process(runs: int, max_tokens: int) -> dict[str, list[Run]]:
    cfg = LoomConfig(paths=PathsConfig(data_dir=tempfile.mkdtemp(prefix="loom-bench-")))
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "llamacpp,coder"},
                      configure_logs=False)
    messages = prompts.generate_messages(TASK, "python", [])
    out: dict[str, list[Run]] = {k: [] for k in ("raw cold", "coder cold", "raw warm", "coder warm")}
    async with app:
        name = app.pool.model_for("coder")
        async with app.pool.use(name) as llm:  # keep it loaded across the whole run
            await coder_call(app, max_tokens)  # warm-up (page in the weights)
            for i in range(runs):
                order = ("raw", "coder") if i % 2 == 0 else ("coder", "raw")
                for cold in (True, False):
                    label = "cold" if cold else "warm"
                    for path in order:
                        if path == "raw":
                            run = await anyio.to_thread.run_sync(raw_call, llm, messages, max_tokens, cold)
                        else:
                            if cold:
                                llm.reset()
                            run = await coder_call(app, max_tokens)
                        out[f"{path} {label}"].append(run)
    return out


async def over_mcp(runs: int, max_tokens: int) -> list[Run] | str:
    """coder.generate through `loom serve` (streamable HTTP), progress notifications as the stream."""
    if not (ROOT / "core" / "commands" / "serve.py").exists():
        return "skipped: `loom serve` is not available in this build"
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp / "data"),
               "XDG_CONFIG_HOME": str(tmp / "config"), "LOOM_PLUGINS": "llamacpp,coder",
               "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_LOGGING__LEVEL": "warning"}
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = await anyio.to_thread.run_sync(lambda: subprocess.Popen(
            [sys.executable, "-m", "core.cli", "serve", "--port", str(port)], env=env, cwd=str(ROOT),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        try:
            line = await anyio.to_thread.run_sync(proc.stdout.readline) if proc.stdout else ""
            if "MCP at" not in line:
                return f"skipped: loom serve did not start ({line.strip() or 'no output'})"
            token_file = tmp / "data" / "loom" / "token"
            for _ in range(500):
                if token_file.exists() and token_file.read_text().strip():
                    break
                await anyio.sleep(0.01)
            headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
            url = f"http://127.0.0.1:{port}/mcp"
            http = httpx2.AsyncClient(headers=headers, timeout=300)
            out = []
            async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                for i in range(runs + 1):
                    first = None

                    async def progress(done: float, total: float | None, message: str | None) -> None:
                        nonlocal first
                        if first is None:
                            first = time.perf_counter()

                    t0 = time.perf_counter()
                    res = await client.call_tool("coder.generate", {"task": TASK, "max_tokens": max_tokens,
                                                                    "temperature": 0.0, "seed": 0},
                                                 progress_callback=progress)
                    end = time.perf_counter()
                    if res.is_error:
                        return f"skipped: coder.generate failed over MCP: {res.content}"
                    usage = (res.structured_content or {}).get("usage", {})
                    if i and first is not None:  # the first call loads the model
                        out.append(Run(ttft=first - t0, decode_s=end - first, tokens=usage.get("completion_tokens"),
                                       text=""))
            return out or "skipped: no progress notifications arrived"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def med(values: list[float]) -> float:
    return statistics.median(values)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128, help="max_tokens per call")
    ap.add_argument("--no-mcp", action="store_true")
    args = ap.parse_args()

    res = await in_process(args.runs, args.tokens)
    tokens = res["coder cold"][0]["tokens"]
    for runs in res.values():
        for r in runs:
            if r["tokens"] is None:
                r["tokens"] = tokens
    same = all(r["text"] == res["coder cold"][0]["text"] for rs in res.values() for r in rs)
    mcp = "skipped (--no-mcp)" if args.no_mcp else await over_mcp(args.runs, args.tokens)

    print(f"model SmolLM2-135M-Instruct Q4_1, {tokens} completion tokens per call, {args.runs} runs, "
          f"identical output on every in-process path: {same}")
    print(f"{'path':18} {'tokens/s':>10} {'TTFT ms':>10}")
    rows: dict[str, tuple[float, float]] = {}
    for label, runs in res.items():
        rows[label] = (med([r.tps for r in runs]), med([r["ttft"] for r in runs]) * 1e3)
    if isinstance(mcp, list):
        rows["mcp warm"] = (med([r.tps for r in mcp]), med([r["ttft"] for r in mcp]) * 1e3)
    for label, (tps, ttft) in rows.items():
        print(f"{label:18} {tps:10.1f} {ttft:10.1f}")
    print()
    for kind in ("cold", "warm"):
        raw, coder = rows[f"raw {kind}"], rows[f"coder {kind}"]
        print(f"in process ({kind}): tokens/s ratio coder/raw = {coder[0] / raw[0]:.3f} (target >= 0.97); "
              f"TTFT overhead = {coder[1] - raw[1]:+.1f} ms (target < 20 ms)")
    if isinstance(mcp, list):
        raw, m = rows["raw warm"], rows["mcp warm"]
        print(f"MCP over HTTP (warm): tokens/s ratio mcp/raw = {m[0] / raw[0]:.3f} (target >= 0.95); "
              f"TTFT overhead = {m[1] - raw[1]:+.1f} ms")
    else:
        print(f"MCP over HTTP: {mcp}")


if __name__ == "__main__":
    anyio.run(main)
