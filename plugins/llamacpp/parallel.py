"""Several samples of one chat prompt decoded together: the prompt is evaluated once for
every sequence (each prompt token carries all the sequence ids), then each step decodes
one token for every live sequence in a single batch. This is what self-consistency and
the anti-hallucination check need: ``n`` answers to the same question for little more
than the time of one.

It uses a second, short-lived llama.cpp context on the loaded model's weights (a ``Llama``
is created with one sequence), sized for the prompt plus ``n * max_tokens``; for the
small models it serves this costs a few MB of KV cache and is freed at once. The model's
lock is held throughout, like any generation.

Kept as one separate function (the cognition plugin's request, issue 16); not yet exposed
through the ``Chat`` capability.
"""

from __future__ import annotations

from typing import Any


def sample_parallel(llm: Any, messages: list[dict[str, Any]], n: int, *, max_tokens: int = 64,
                    temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, seed: int = 1000) -> list[str]:
    """``n`` sampled answers to ``messages`` (seeds ``seed``, ``seed + 1``, ...)."""
    import ctypes

    import llama_cpp as lib

    from .chat import _render, model_lock

    if n < 1:
        raise ValueError("n must be at least 1")
    with model_lock(llm):
        prompt = llm.tokenize(_render(llm, messages).encode(), add_bos=True, special=True)
        params = lib.llama_context_default_params()
        params.n_ctx = len(prompt) + n * max_tokens + 16
        params.n_batch = params.n_ubatch = max(len(prompt), n)
        params.n_seq_max = n
        params.kv_unified = True  # one cache: the prompt's cells are shared by every sequence
        params.n_threads = llm.n_threads
        params.n_threads_batch = llm.n_threads_batch
        ctx = lib.llama_init_from_model(llm.model, params)
        if not ctx:
            raise RuntimeError("llama.cpp could not create a context for parallel sampling")
        vocab = lib.llama_model_get_vocab(llm.model)
        batch = lib.llama_batch_init(params.n_batch, 0, n)
        samplers = []
        try:
            for i in range(n):
                chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(top_k))
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(top_p, 1))
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(temperature))
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed + i))
                samplers.append(chain)

            def fill(entries: list[tuple[int, int, list[int], bool]]) -> None:
                batch.n_tokens = len(entries)
                for k, (token, pos, seqs, logits) in enumerate(entries):
                    batch.token[k] = token
                    batch.pos[k] = pos
                    batch.n_seq_id[k] = len(seqs)
                    for j, s in enumerate(seqs):
                        batch.seq_id[k][j] = s
                    batch.logits[k] = logits

            every = list(range(n))
            fill([(t, p, every, p == len(prompt) - 1) for p, t in enumerate(prompt)])
            if lib.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama.cpp could not evaluate the prompt")
            pieces: list[list[bytes]] = [[] for _ in range(n)]
            live = {i: len(prompt) - 1 for i in every}  # sequence -> batch index of its logits
            buf = (ctypes.c_char * 64)()
            for step in range(max_tokens):
                nxt: list[tuple[int, int]] = []
                for i, idx in live.items():
                    token = lib.llama_sampler_sample(samplers[i], ctx, idx)
                    if lib.llama_vocab_is_eog(vocab, token):
                        continue
                    size = lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
                    pieces[i].append(bytes(buf[:max(size, 0)]))
                    nxt.append((i, token))
                if not nxt or step == max_tokens - 1:
                    break
                fill([(token, len(prompt) + step, [i], True) for i, token in nxt])
                if lib.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama.cpp could not decode the samples")
                live = {i: k for k, (i, _) in enumerate(nxt)}
            return [b"".join(p).decode("utf-8", errors="replace").strip() for p in pieces]
        finally:
            for chain in samplers:
                lib.llama_sampler_free(chain)
            lib.llama_batch_free(batch)
            lib.llama_free(ctx)
