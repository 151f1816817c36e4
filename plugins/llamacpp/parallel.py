"""Several samples of one chat prompt decoded together (``chat.sample``): the prompt is
evaluated once for every sequence (each prompt token carries all the sequence ids), then
each step decodes one token for every live sequence in a single batch. This is what
self-consistency and the anti-hallucination check need: ``n`` answers to the same
question for little more than the time of one.

It uses a second, short-lived llama.cpp context on the loaded model's weights (a ``Llama``
is created with one sequence), sized for the prompt plus ``n * max_tokens``; for the
small models it serves this costs a few MB of KV cache and is freed at once. The model's
lock is held throughout, like any generation.

``sample`` serves the ``Chat.sample`` operation. Requests the batch cannot honour (tools,
grammars and response formats, logit bias, log-probabilities, images, backend options;
models without a chat template of their own or with a vision chat handler) are served by
ordinary generations one after another instead: the caller gets ``n`` answers either
way, and ``prompt_evaluations`` says which way they were drawn.

Every sample comes with the log-probability of each token it generated
(``SampleResult.logprobs``: log softmax of the model's logits, read from the row the
sampler used), the model's own confidence in what it wrote. The batch context takes
llama.cpp's default attention (flash attention, on CPU), so they can differ from an
ordinary generation's in the second decimal. One after another, they come only from a
model loaded with ``logits_all`` (llama-cpp-python computes them only then).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec

from core.capabilities import ChatRequest, ChatResult, ChatUsage, SampleRequest, SampleResult, combine_samples

DEFAULT_MAX_TOKENS = 512


def batchable(req: ChatRequest) -> str | None:
    """Why ``req`` cannot be decoded as one batch of sequences, or None when it can."""
    if req.tools and req.tool_choice != "none":
        return "tools"
    if req.grammar or req.response_format is not None:
        return "constrained output"
    if req.logit_bias:
        return "logit bias"
    if req.logprobs:
        return "log-probabilities"
    if req.options:
        return "backend options"
    for m in req.messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list) and any(not (isinstance(p, dict) and p.get("type") == "text") for p in content):
            return "images"
    return None


def sample(llm: Any, req: SampleRequest, cancel: threading.Event) -> SampleResult:
    """``req.n`` answers to ``req.request``: decoded together when the request allows it."""
    from .chat import LlamaChatError, generate, normalize_messages

    chat_req = req.request
    if req.n < 1:
        raise LlamaChatError("n must be at least 1")
    if chat_req.max_tokens is not None and chat_req.max_tokens < 1:
        raise LlamaChatError("max_tokens must be at least 1")
    seed = chat_req.seed if chat_req.seed is not None else 1000
    # The batch renders the prompt with the model's own chat template: a model without one,
    # or with a chat handler (vision), is served exactly as ``chat.generate`` would serve it.
    own_template = bool((getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template"))
    if req.n == 1 or not own_template or getattr(llm, "chat_handler", None) is not None \
            or batchable(chat_req) is not None:
        results: list[ChatResult] = []
        # Token log-probabilities come with ordinary generations only from a model that
        # keeps every logit (``logits_all``); other models' samples have none (None).
        want_logprobs = chat_req.logprobs or bool(getattr(llm, "_logits_all", False))
        for i in range(req.n):
            one = msgspec.structs.replace(chat_req, seed=seed + i, logprobs=want_logprobs)
            results.append(generate(llm, one, lambda _e: None, cancel))
        return combine_samples(results)
    return decode_together(llm, normalize_messages(llm, chat_req.messages), req.n,
                           max_tokens=chat_req.max_tokens or DEFAULT_MAX_TOKENS, temperature=chat_req.temperature,
                           top_k=chat_req.top_k, top_p=chat_req.top_p, min_p=chat_req.min_p, seed=seed,
                           stop=list(chat_req.stop), repeat_penalty=chat_req.repeat_penalty,
                           presence_penalty=chat_req.presence_penalty, frequency_penalty=chat_req.frequency_penalty,
                           cancel=cancel)


def sample_parallel(llm: Any, messages: list[dict[str, Any]], n: int, *, max_tokens: int = 64,
                    temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, seed: int = 1000) -> list[str]:
    """``n`` sampled answers to ``messages`` (seeds ``seed``, ``seed + 1``, ...)."""
    return decode_together(llm, messages, n, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                           top_p=top_p, seed=seed).texts


def decode_together(llm: Any, messages: list[dict[str, Any]], n: int, *, max_tokens: int = 64,
                    temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float | None = None,
                    seed: int = 1000, stop: list[str] | None = None, repeat_penalty: float = 1.0,
                    presence_penalty: float = 0.0, frequency_penalty: float = 0.0,
                    cancel: threading.Event | None = None) -> SampleResult:
    """The ``n`` sequences of one prompt, one batch a step; see the module docstring."""
    import ctypes

    import llama_cpp as lib

    from .chat import LlamaChatError, _acquire, _render, model_lock

    if n < 1:
        raise ValueError("n must be at least 1")
    cancel = cancel if cancel is not None else threading.Event()
    stop = [s for s in (stop or []) if s]
    t0 = time.perf_counter()
    lock = model_lock(llm)
    if not _acquire(lock, cancel):
        return SampleResult([""] * n, ["cancelled"] * n, ChatUsage(total_s=time.perf_counter() - t0), 0)
    try:
        prompt = llm.tokenize(_render(llm, messages).encode(), add_bos=True, special=True)
        if len(prompt) >= llm.n_ctx():
            raise LlamaChatError(f"the prompt takes {len(prompt)} tokens, more than the model's context "
                                 f"({llm.n_ctx()}): shorten it")
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
                if repeat_penalty != 1.0 or presence_penalty or frequency_penalty:
                    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_penalties(
                        64, repeat_penalty, frequency_penalty, presence_penalty))
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(top_k))
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(top_p, 1))
                if min_p is not None:
                    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(min_p, 1))
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
            # A step is a batch of n tokens, which llama.cpp would run on the batch threads:
            # give it the model's generation threads (extra threads spinning on a busy machine
            # stall each other, and one token a sequence is generation work, not a prompt).
            lib.llama_set_n_threads(ctx, llm.n_threads, llm.n_threads)
            pieces: list[list[bytes]] = [[] for _ in range(n)]
            logprobs: list[list[float]] = [[] for _ in range(n)]
            n_vocab = lib.llama_vocab_n_tokens(vocab)
            finish = ["length"] * n
            generated = 0
            first: float | None = None
            live = {i: len(prompt) - 1 for i in every}  # sequence -> batch index of its logits
            buf = (ctypes.c_char * 64)()
            for step in range(max_tokens):
                nxt: list[tuple[int, int]] = []
                for i, idx in live.items():
                    token = lib.llama_sampler_sample(samplers[i], ctx, idx)
                    if lib.llama_vocab_is_eog(vocab, token):
                        finish[i] = "stop"
                        continue
                    generated += 1
                    logprobs[i].append(_logprob(lib.llama_get_logits_ith(ctx, idx), n_vocab, token))
                    size = lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
                    pieces[i].append(bytes(buf[:max(size, 0)]))
                    if stop and _cut_at_stop(pieces[i], stop):
                        finish[i] = "stop"
                        continue
                    nxt.append((i, token))
                if first is None:
                    first = time.perf_counter()
                if cancel.is_set():
                    finish = ["cancelled" if f == "length" else f for f in finish]
                    break
                if not nxt or step == max_tokens - 1:
                    break
                fill([(token, len(prompt) + step, [i], True) for i, token in nxt])
                if lib.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama.cpp could not decode the samples")
                live = {i: k for k, (i, _) in enumerate(nxt)}
        finally:
            for chain in samplers:
                lib.llama_sampler_free(chain)
            lib.llama_batch_free(batch)
            lib.llama_free(ctx)
    finally:
        lock.release()
    end = time.perf_counter()
    texts = [b"".join(p).decode("utf-8", errors="replace").strip() for p in pieces]
    usage = ChatUsage(prompt_tokens=len(prompt), completion_tokens=generated, total_s=end - t0,
                      ttft_s=None if first is None else first - t0,
                      tokens_per_s=generated / (end - first) if first is not None and end > first else None)
    return SampleResult(texts, finish, usage, 1, logprobs)


def _logprob(logits: Any, n_vocab: int, token: int) -> float:
    """log softmax(logits)[token]: the model's own probability of the token, whatever the
    sampler's temperature or cut-offs (the samplers copy the logits; this row is untouched)."""
    import numpy as np

    row = np.ctypeslib.as_array(logits, shape=(n_vocab,))
    top = float(row.max())
    return float(row[token]) - top - float(np.log(np.exp(row - top, dtype=np.float64).sum()))


def _cut_at_stop(pieces: list[bytes], stop: list[str]) -> bool:
    """Whether the sequence's text now contains a stop string; if so, cut it there."""
    text = b"".join(pieces).decode("utf-8", errors="ignore")
    cut = min((k for k in (text.find(s) for s in stop) if k >= 0), default=-1)
    if cut < 0:
        return False
    pieces[:] = [text[:cut].encode()]
    return True
