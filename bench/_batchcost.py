"""What a speculative verify batch costs on this CPU: the evidence behind the edits figure.

Speculative decoding pays off when evaluating [last token + k drafted tokens] in one batch
costs much less than k + 1 single-token decodes (on a GPU it costs about one). This script
times llama.cpp's ``decode`` of batches of 1, 2, 3, 5, 9 and 17 tokens with logits for
every position (what a verify needs) after a 1,500-token context, on the packaged SmolLM2
(Q4_1, whose matrix kernels have no batched path on x86: cost grows almost linearly with
the batch), and prints each batch's cost relative to one token and the ceiling it puts on
speculation: with every draft accepted, a batch of k + 1 yields k + 1 tokens for c(k+1)/c(1)
decodes. No target: this explains ``bench/speculative.py``'s edits row (docs/throughput.md).

    .venv/bin/python bench/_batchcost.py [--model PATH.gguf] [--threads 2] [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import smollm2_gguf

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 2, 3, 5, 9, 17)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="a GGUF (default: the packaged SmolLM2 Q4_1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    from llama_cpp import Llama

    path = args.model or str(smollm2_gguf())
    llm = Llama(path, n_ctx=4096, n_threads=args.threads, n_threads_batch=args.threads, n_batch=512,
                verbose=False)
    tokens = llm.tokenize((ROOT / "core" / "pool.py").read_text(encoding="utf-8").encode())[:1500]
    llm.eval(tokens)
    base = llm.n_tokens
    costs: dict[int, list[float]] = {n: [] for n in SIZES}
    for _ in range(args.repeats):  # sizes interleaved, so load hits them alike
        for n in SIZES:
            llm._ctx.kv_cache_seq_rm(-1, base, -1)
            llm._batch.set_batch(batch=tokens[100:100 + n], n_past=base, logits_all=True)
            t0 = time.perf_counter()
            llm._ctx.decode(llm._batch)
            costs[n].append(time.perf_counter() - t0)
    one = statistics.median(costs[1])
    print(f"{Path(path).name}, {args.threads} threads, context {base} tokens, logits for every position")
    print("batch   ms     x one token   ceiling if every draft is kept")
    for n in SIZES:
        c = statistics.median(costs[n])
        print(f"{n:5d} {1000 * c:6.1f}   {c / one:5.2f}x        {n * one / c:4.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
