"""Why greedy texts can part under speculative decoding on a quantized model: the evidence.

A speculative step verifies a draft by evaluating [last token + draft] in one batch, so the
logits at those positions come from a batch of several tokens instead of one. With the
same token sequence, this script compares the logits llama.cpp gives one token at a time
(plain decoding) with those it gives in 4-token batches, on the packaged SmolLM2 Q4_1 GGUF
and on an F32 copy of the same weights: the largest difference, the positions where the
greedy choice flips, and the smallest top-2 margins. Prints figures only (no target: this is
the evidence behind ``bench/openai_api.py``'s and docs/throughput.md's explanation).

    .venv/bin/python bench/_nearties.py [--tokens 128]

``f32_copy`` is also what ``bench/openai_api.py --f32`` runs on. (The name starts with
``_``: ``make bench`` runs only the scripts without one.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import smollm2_gguf

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
END_TOKENS = [0, 1, 2]  # SmolLM2's end tokens, suppressed as the benches do


def f32_copy(src: Path) -> Path:
    """An F32 GGUF with ``src``'s weights dequantized, written once to ~/.cache/loom/bench."""
    import gguf

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loom" / "bench"
    dst = cache / f"{src.stem}.f32.gguf"
    if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    cache.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(src)
    field = reader.fields["general.architecture"]
    writer = gguf.GGUFWriter(dst.with_suffix(".part"), bytes(field.parts[field.data[0]]).decode())
    for f in reader.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        kind = f.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            sub = f.types[1]
            if sub == gguf.GGUFValueType.STRING:
                value = [bytes(f.parts[i]).decode("utf-8", "surrogateescape") for i in f.data]
            else:
                value = [f.parts[i].tolist()[0] for i in f.data]
            writer.add_key_value(f.name, value, kind, sub_type=sub)
        elif kind == gguf.GGUFValueType.STRING:
            writer.add_key_value(f.name, bytes(f.parts[f.data[0]]).decode("utf-8", "surrogateescape"), kind)
        else:
            value = f.parts[f.data[0]].tolist()[0]
            writer.add_key_value(f.name, 0 if f.name == "general.file_type" else value, kind)  # 0: all F32
    for t in reader.tensors:
        weights = gguf.dequantize(t.data, t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, weights.reshape([int(x) for x in reversed(t.shape.tolist())]),
                          raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    dst.with_suffix(".part").rename(dst)
    return dst


def compare(path: Path, n_tokens: int, batch: int = 4) -> dict:
    """Logits of one greedy continuation, evaluated one token at a time vs ``batch`` at a time."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def model() -> llama_cpp.Llama:
        return llama_cpp.Llama(str(path), n_ctx=2048, n_threads=1, n_threads_batch=1, n_batch=512,
                               logits_all=True, verbose=False)

    llm = model()
    fmt = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"], eos_token="<|im_end|>",
                              bos_token="<|im_start|>")
    prompt = llm.tokenize(fmt(messages=[{"role": "user", "content": PROMPT}]).prompt.encode(), add_bos=False,
                          special=True)
    llm.eval(prompt)
    single, tokens = [], []
    for _ in range(n_tokens):  # plain greedy decoding: one token per evaluation
        row = np.array(llm.scores[llm.n_tokens - 1])
        row[END_TOKENS] = -np.inf
        single.append(row)
        tokens.append(int(row.argmax()))
        llm.eval([tokens[-1]])
    pieces = [llm.detokenize([t]).decode(errors="replace") for t in tokens]
    llm.close()
    other = model()  # a fresh context: the same sequence, the continuation fed ``batch`` at a time
    other.eval(prompt)
    batched = [np.array(other.scores[other.n_tokens - 1])]
    for i in range(0, n_tokens - 1, batch):
        chunk = tokens[i:i + batch]
        n_past = other.n_tokens
        other.eval(chunk)
        batched.extend(np.array(other.scores[n_past + j]) for j in range(len(chunk)))
    other.close()
    for row in batched:
        row[END_TOKENS] = -np.inf
    batched = batched[:n_tokens]
    finite = [np.isfinite(a) for a in single]
    diff = max(float(np.abs(a[m] - b[m]).max()) for a, b, m in zip(single, batched, finite, strict=True))
    margins = [float(np.diff(np.sort(a[m])[-2:])[0]) for a, m in zip(single, finite, strict=True)]
    flips = [i for i, (a, b) in enumerate(zip(single, batched, strict=True)) if a.argmax() != b.argmax()]
    return {"diff": diff, "flips": flips, "margins": sorted(margins)[:3],
            "first_flip_char": len("".join(pieces[:flips[0]])) if flips else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    q4 = smollm2_gguf()
    print(f"{args.tokens} greedy tokens of SmolLM2-135M-Instruct, logits one token at a time vs 4-token batches")
    for path in (q4, f32_copy(q4)):
        r = compare(path, args.tokens)
        where = f" (the first at character {r['first_flip_char']})" if r["flips"] else ""
        print(f"  {path.name:40s} max |logit difference| {r['diff']:.4g}; greedy choice flips at positions "
              f"{r['flips'] or 'none'}{where}; smallest top-2 margins "
              + ", ".join(f"{m:.3g}" for m in r["margins"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
