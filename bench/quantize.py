"""What converting the packaged SmolLM2 (Q4_1) to Q8_0 buys and costs on this CPU (``quantize = "q8_0"``)

llama.cpp's batched matrix kernels on x86 cover F16, Q8_0 and Q4_0 but not Q4_1, so a
batch of tokens (a prompt, a speculative verify) costs almost as many single-token decodes.
This script converts the packaged file with Loom's own converter (``plugins.llamacpp.convert``)
and measures both files through llama-cpp-python with identical settings, the order of the
two sides alternating round by round:

- prompt evaluation tokens/s (a 1,000-token prompt, cache cleared each time);
- decode tokens/s (128 tokens greedy after a short prompt);
- a 9-token verify batch's cost in single-token decodes (after a 1,000-token context);
- whether greedy continuations agree (first 48 tokens of 8 prompts), as a check that the
  conversion keeps the model;
- weight bytes.

Target (the reason the option exists): prompt evaluation >= 1.3x. Exit status 1 when missed.
The decode ratio is printed as its price: single-token decode reads every weight once per
token, and Q8_0 weights are 1.5x the bytes of Q4_1, so decode can be slower; that is why the
packaged default keeps the file as it is (docs/throughput.md).

    .venv/bin/python bench/quantize.py [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _servers import smollm2_gguf  # noqa: E402

from plugins.llamacpp.convert import convert  # noqa: E402

PROMPT_TARGET = 1.3
PROMPTS = ["Write two sentences about lighthouses.", "What is a hash table?", "Name three red fruits.",
           "How do I boil an egg?", "Why is the sky blue?", "Give me a tip for sleeping better.",
           "What is the capital of Portugal?", "Explain recursion to a child."]


def measure(llm, context: list[int], chat: list[list[int]], decode_tokens: int) -> dict[str, float]:
    llm.reset()
    llm._ctx.kv_cache_clear()
    t0 = time.perf_counter()
    llm.eval(context)
    prompt_tps = len(context) / (time.perf_counter() - t0)
    base = llm.n_tokens
    one, nine = [], []
    for _ in range(3):
        for n, out in ((1, one), (9, nine)):
            llm._ctx.kv_cache_seq_rm(-1, base, -1)
            llm._batch.set_batch(batch=context[100:100 + n], n_past=base, logits_all=True)
            t = time.perf_counter()
            llm._ctx.decode(llm._batch)
            out.append(time.perf_counter() - t)
    llm.reset()
    llm._ctx.kv_cache_clear()
    t0 = time.perf_counter()
    produced = 0
    for _tok in llm.generate(chat[0], temp=0.0, top_k=1, reset=True):
        produced += 1
        if produced == 1:
            t_first = time.perf_counter()
        if produced >= decode_tokens:
            break
    decode_tps = (produced - 1) / (time.perf_counter() - t_first)
    return {"prompt": prompt_tps, "decode": decode_tps, "verify9": statistics.median(nine) / statistics.median(one),
            "load_s": 0.0, "t0": t0}


def greedy(llm, prompt: list[int], n: int) -> list[int]:
    out = []
    for tok in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        if tok == llm.token_eos() or len(out) >= n:
            break
        out.append(tok)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--decode-tokens", type=int, default=128)
    args = ap.parse_args()
    from llama_cpp import Llama

    source = smollm2_gguf()
    with tempfile.TemporaryDirectory(prefix="loom-bench-quantize-") as tmp:
        t0 = time.perf_counter()
        q8 = convert("smollm2", source, "q8_0", Path(tmp), threads=args.threads)
        convert_s = time.perf_counter() - t0
        models = {}
        for name, path in (("q4_1", source), ("q8_0", q8)):
            models[name] = Llama(str(path), n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads,
                                 n_batch=512, verbose=False, seed=0)
        text = (ROOT / "core" / "pool.py").read_text(encoding="utf-8")
        context = models["q4_1"].tokenize(text.encode())[:1000]
        chats = [models["q4_1"].tokenize(
            f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n".encode(), special=True) for p in PROMPTS]
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in models}
        for r in range(args.rounds):
            order = list(models) if r % 2 == 0 else list(reversed(models))
            for name in order:
                runs[name].append(measure(models[name], context, chats, args.decode_tokens))
        agree = sum(greedy(models["q4_1"], c, 48) == greedy(models["q8_0"], c, 48) for c in chats)
        sizes = {"q4_1": source.stat().st_size, "q8_0": q8.stat().st_size}
        for m in models.values():
            m.close()

    med = {k: {f: statistics.median(r[f] for r in v) for f in ("prompt", "decode", "verify9")} for k, v in runs.items()}
    prompt_x = med["q8_0"]["prompt"] / med["q4_1"]["prompt"]
    decode_x = med["q8_0"]["decode"] / med["q4_1"]["decode"]
    print(f"SmolLM2-135M-Instruct, packaged Q4_1 vs its Q8_0 conversion ({convert_s:.1f} s), "
          f"{args.threads} threads, {args.rounds} rounds (median)")
    print("             prompt tok/s   decode tok/s   9-token batch (x one token)   weights MiB")
    for k in models:
        print(f"  {k:8} {med[k]['prompt']:12.1f} {med[k]['decode']:14.1f} {med[k]['verify9']:18.2f}x"
              f" {sizes[k] / 2**20:20.1f}")
    print(f"  Q8_0/Q4_1: prompt {prompt_x:.2f}x (target >= {PROMPT_TARGET}x), decode {decode_x:.2f}x "
          f"(its price); greedy continuations identical on {agree}/{len(PROMPTS)} prompts")
    if prompt_x < PROMPT_TARGET:
        print("MISSED: prompt")
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
