"""Speculative decoding for llama.cpp models: prompt lookup and small draft models.

A speculator proposes the next few tokens cheaply; the model checks them all in one batch
(one pass over the weights instead of one per token) and keeps the longest prefix it would
have produced itself, plus one token of its own. Every kept token is still sampled from the
model's own distribution at its position, so greedy output is exactly what plain decoding
gives, and sampled output has the same distribution.

- ``PromptLookup``: the draft is what followed the last n-gram the last time it appeared in
  the context. Free to compute and very good when the answer copies its input (``coder.edit``
  rewrites a file it was given); useless on free chat, where it rarely finds a match.
- ``DraftModel``: a small GGUF with the same tokenizer decodes the draft greedily.

Both adapt the draft length to what the model accepts: a miss halves it, a full hit doubles
it, and repeated misses pause drafting for a while, so a model gains where drafting helps
and loses (almost) nothing where it does not.

llama-cpp-python's ``generate`` already runs the verify loop when ``Llama.draft_model`` is
set, but only with ``logits_all=True`` on every batch, prompt included (a full vocabulary row
per prompt token: hundreds of MB for a long file). ``speculating`` sets the draft model for
one call and evaluates with logits only where they are needed: the draft batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


class Speculator:
    """Base: adaptive draft length, acceptance bookkeeping; subclasses make the draft."""

    def __init__(self, max_draft: int = 8, first_draft: int | None = None) -> None:
        self.max_draft = max_draft
        self.k = min(first_draft or max_draft, max_draft)
        self.pending = 0  # draft tokens handed out, to be verified by the next eval
        self.accepted = 0
        self.drafted = 0
        self._last: np.ndarray | None = None
        self._last_at = 0
        self._cooldown = 0
        self._pause = 4

    def propose(self, ids: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, ids: np.ndarray, /, **_: Any) -> np.ndarray:
        self._learn(ids)
        self.pending = 0
        if self._cooldown > 0:
            self._cooldown -= 1
            return np.empty(0, dtype=np.intc)
        draft = np.asarray(self.propose(ids, self.k), dtype=np.intc)[: self.k]
        if len(draft):
            self._last, self._last_at = draft, len(ids)
            self.pending = len(draft)
            self.drafted += len(draft)
        return draft

    def _learn(self, ids: np.ndarray) -> None:
        """How much of the last draft the model kept, from what the context now holds."""
        if self._last is None:
            return
        got = ids[self._last_at:self._last_at + len(self._last)]
        n = min(len(got), len(self._last))
        same = got[:n] == self._last[:n]
        kept = n if same.all() else int(np.argmin(same))
        self.accepted += kept
        if kept == len(self._last):
            self.k = min(self.k * 2, self.max_draft)
            self._pause = 4
        elif kept == 0:
            if self.k == 1:
                self._cooldown, self._pause = self._pause, min(self._pause * 2, 64)
            self.k = max(self.k // 2, 1)
        self._last = None


class PromptLookup(Speculator):
    """Drafts from the context: what followed the earlier occurrence of its tail that agrees
    with the most context before it (ties: the latest)."""

    def __init__(self, max_draft: int = 8, min_ngram: int = 3, max_context: int = 32, window: int = 8192,
                 first_draft: int = 4, candidates: int = 64) -> None:
        # min_ngram 3: a repeated token or two predicts little in free text, and on a CPU a
        # failed draft costs nearly one decode per drafted token (a verify batch's cost grows
        # almost linearly with its size: bench/_batchcost.py), so such drafts made chat 5%
        # slower. Copying (edits) repeats trigrams all the time. Start at 4, grow on full hits.
        super().__init__(max_draft, first_draft)
        self.min_ngram = min_ngram
        self.max_context = max_context
        self.window = window
        self.candidates = candidates

    def propose(self, ids: np.ndarray, k: int) -> np.ndarray:
        ids = ids[-self.window:]
        n, size = len(ids), self.min_ngram
        if n <= size:
            return ids[:0]
        windows = np.lib.stride_tricks.sliding_window_view(ids[:n - 1], size)
        hits = np.flatnonzero(np.all(windows == ids[n - size:], axis=1))
        hits = hits[hits + size < n][::-1][: self.candidates]  # latest first; continuation inside the context
        if not len(hits):
            return ids[:0]
        # Code repeats short n-grams everywhere (`self._`, `    def`); the occurrence whose
        # preceding tokens also match is the place being copied (in an edit, the same line
        # of the original file), so its continuation is the best guess.
        back = np.arange(1, self.max_context + 1)
        theirs = hits[:, None] - back[None, :]  # the tokens before each occurrence...
        mine = np.broadcast_to(n - size - back, theirs.shape)  # ...and before the tail
        ok = (theirs >= 0) & (mine >= 0)
        same = ok & (ids[np.where(ok, theirs, 0)] == ids[np.where(ok, mine, 0)])
        agree = np.cumprod(same, axis=1).sum(axis=1)
        start = int(hits[int(np.argmax(agree))]) + size  # argmax takes the first best: the latest
        return ids[start:start + k]


class DraftModel(Speculator):
    """Drafts with a small model of the same tokenizer, decoded greedily."""

    def __init__(self, draft: Any, max_draft: int = 6) -> None:
        super().__init__(max_draft)
        self.draft = draft

    def propose(self, ids: np.ndarray, k: int) -> np.ndarray:
        out: list[int] = []
        gen = self.draft.generate(ids.tolist(), top_k=1, temp=0.0, repeat_penalty=1.0)
        try:
            for token in gen:
                out.append(int(token))
                if len(out) >= k:
                    break
        finally:
            gen.close()
        return np.asarray(out, dtype=np.intc)


def speculator_for(llm: Any, wanted: bool | None) -> Speculator | None:
    """The speculator for one call: ``wanted`` (the request's choice) or the model's default."""
    settings = getattr(llm, "_loom_speculative", None) or {}
    on = settings.get("enabled", False) if wanted is None else wanted
    if not on:
        return None
    draft = settings.get("draft")
    return DraftModel(draft) if draft is not None else PromptLookup()


@contextlib.contextmanager
def speculating(llm: Any, spec: Speculator) -> Iterator[Speculator]:
    """Let ``llm.generate`` verify ``spec``'s drafts for the duration of one call."""
    if getattr(llm, "_logits_all", False):  # the library's own path already has every logit
        llm.draft_model = spec
        try:
            yield spec
        finally:
            llm.draft_model = None
        return
    n_ctx = llm.n_ctx()

    def eval_(tokens: Sequence[int]) -> None:
        # A draft batch is [last sampled token] + draft: each position needs its logits (the
        # sampler reads them by offset from the end). Other batches (the prompt) need only the
        # last one, as in the library's own eval.
        n = len(tokens)
        verify = spec.pending > 0 and 1 < n <= spec.pending + 1
        spec.pending = 0
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        for i in range(0, n, llm.n_batch):
            batch = list(tokens[i:i + llm.n_batch])
            n_past = llm.n_tokens
            llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=verify)
            llm._ctx.decode(llm._batch)
            llm.input_ids[n_past:n_past + len(batch)] = batch
            llm.n_tokens += len(batch)
        llm._requires_eval = False

    def draft(ids: np.ndarray, /, **kw: Any) -> np.ndarray:
        room = n_ctx - len(ids) - 1  # the library cuts drafts that overflow; cut them here
        out = spec(ids, **kw)[:max(room, 0)]
        spec.pending = len(out)
        return out

    llm.eval = eval_
    llm.draft_model = draft
    try:
        yield spec
    finally:
        llm.__dict__.pop("eval", None)
        llm.draft_model = None
