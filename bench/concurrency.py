"""Concurrent streamed chats: Loom with replicas vs llama-cpp-python's OpenAI server.

Same model (the packaged SmolLM2-135M-Instruct), same threads per model instance, same
prompt and greedy sampling with end-of-generation suppressed (every answer is exactly
--tokens long). Loom serves the model with ``replicas`` worker processes (each counted in
the memory budget; the pool sends each request to the least busy replica); the baseline
is ``python -m llama_cpp.server``, which serves one request at a time. For 1, 4 and 16
concurrent streamed clients over the OpenAI API: aggregate tokens/s (all completion tokens
over the wall time), p50/p99 time to first token, errors, and how many clients that had to
wait were told their queue position. The two servers take turns, the order alternating by
level.

Targets (Loom, 16 clients, 2 cores): aggregate tokens/s >= 1.6x Loom's single stream, zero
errors, every waiting client told its queue position.

    .venv/bin/python bench/concurrency.py [--threads 1] [--replicas 2] [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import smollm2_gguf, start_llama_server, start_loom, stop

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
NO_EOS = {"0": -100, "1": -100, "2": -100}  # SmolLM2's end tokens
LEVELS = (1, 4, 16)
SPEEDUP_TARGET = 1.6


async def one_chat(client: httpx.AsyncClient, url: str, headers: dict[str, str], model: str,
                   tokens: int) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "max_tokens": tokens, "temperature": 0.0, "top_p": 1.0, "top_k": 1, "repeat_penalty": 1.0,
            "seed": 0, "logit_bias": NO_EOS}
    t0 = time.perf_counter()
    out = {"ttft": None, "chunks": 0, "queued": False, "error": None}
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as resp:
            if resp.status_code != 200:
                out["error"] = f"HTTP {resp.status_code}"
                return out
            async for line in resp.aiter_lines():
                if line.startswith(": queued"):
                    out["queued"] = True
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    out["error"] = chunk["error"].get("message", "error")
                    continue
                delta = (chunk.get("choices") or [{}])[0].get("delta", {})
                if delta.get("content"):
                    out["chunks"] += 1
                    if out["ttft"] is None:
                        out["ttft"] = time.perf_counter() - t0
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)
    return out


async def level(url: str, headers: dict[str, str], model: str, n: int, tokens: int) -> dict:
    results: list[dict] = []
    async with httpx.AsyncClient(timeout=600) as client:
        t0 = time.perf_counter()

        async def run() -> None:
            results.append(await one_chat(client, url, headers, model, tokens))

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(run)
        wall = time.perf_counter() - t0
    ttfts = sorted(r["ttft"] for r in results if r["ttft"] is not None)
    return {"clients": n, "tps": n * tokens / wall, "wall": wall,
            "p50": statistics.median(ttfts) if ttfts else float("nan"),
            "p99": ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))] if ttfts else float("nan"),
            "errors": sum(1 for r in results if r["error"]), "queued": sum(1 for r in results if r["queued"]),
            "short": sum(1 for r in results if not r["error"] and r["chunks"] < tokens // 2)}


async def main(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="loom-bench-conc-"))
    gguf = smollm2_gguf()
    loom = start_loom(base, gguf, threads=args.threads, ctx=1024,
                      settings=f'placement = "process"\nreplicas = {args.replicas}\nspeculative = false\n')
    llama = start_llama_server(gguf, threads=args.threads, ctx=1024)
    servers = {"loom": (loom[1], loom[2], "smollm2"), "llama_cpp.server": (llama[1], llama[2], "smollm2")}
    table: dict[str, dict[int, dict]] = {"loom": {}, "llama_cpp.server": {}}
    try:
        for url, headers, model in servers.values():  # warm both (loads, first prompt)
            await level(url, headers, model, 1, 8)
        for i, n in enumerate(LEVELS):
            order = list(servers) if i % 2 == 0 else list(reversed(servers))
            for name in order:
                url, headers, model = servers[name]
                table[name][n] = await level(url, headers, model, n, args.tokens)
    finally:
        stop(loom, llama)
    print(f"concurrent streamed chats, SmolLM2-135M, {args.threads} thread(s) per model, {args.tokens} tokens, "
          f"Loom replicas = {args.replicas}")
    print(f"  {'server':18} {'clients':>7} {'tok/s':>8} {'p50 TTFT':>9} {'p99 TTFT':>9} {'errors':>6} {'told':>5}")
    for name, rows in table.items():
        for n, r in rows.items():
            print(f"  {name:18} {n:7d} {r['tps']:8.1f} {r['p50']:8.2f}s {r['p99']:8.2f}s {r['errors']:6d} "
                  f"{r['queued']:5d}")
    single = table["loom"][1]["tps"]
    top = table["loom"][LEVELS[-1]]
    speedup = top["tps"] / single
    base16 = table["llama_cpp.server"][LEVELS[-1]]["tps"]
    waiting = LEVELS[-1] - args.replicas
    print(f"  Loom {LEVELS[-1]} clients / Loom single stream: {speedup:.2f}x (target >= {SPEEDUP_TARGET}x); "
          f"vs llama_cpp.server at {LEVELS[-1]} clients: {top['tps'] / base16:.2f}x")
    print(f"  waiting clients told their queue position: {top['queued']}/{waiting}")
    missed = []
    if speedup < SPEEDUP_TARGET:
        missed.append(f"aggregate speed-up {speedup:.2f}x < {SPEEDUP_TARGET}x")
    if any(r["errors"] or r["short"] for r in table["loom"].values()):
        missed.append("Loom had errors or cut answers")
    if top["queued"] < waiting:
        missed.append("not every waiting client was told its queue position")
    if missed:
        print("MISSED: " + "; ".join(missed))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--tokens", type=int, default=64)
    sys.exit(anyio.run(main, p.parse_args()))
