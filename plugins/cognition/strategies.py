"""Reasoning strategies, as calls to any ``generate(messages, **kw) -> str``:

- ``direct``: answer;
- ``chain_of_thought``: think step by step, final answer on the last line;
- ``reflect``: draft (chain of thought) -> critique the draft -> revise it;
- ``self_consistency``: several chain-of-thought samples (drawn together through a
  ``sample`` function when one is given), the answer most of them reach.

The reasoning stage uses ``critique_and_revise`` on the assistant's draft; the benchmark
(bench/reasoning.py) runs ``solve`` for every strategy on the same problems, so the
prompts measured are the prompts used.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from . import agreement

Generate = Callable[..., Awaitable[str]]
#: ``sample(messages, n, **kw) -> n texts``: samples of one prompt drawn together
#: (``Chat.sample``: llama.cpp evaluates the prompt once for all of them)
Sample = Callable[..., Awaitable[list[str]]]

SYSTEM = "You are a careful assistant. Answer clearly and briefly."
COT = "\n\nThink it through step by step, then give the final answer on the last line as 'Answer: <answer>'."
DIRECT = "\n\nGive only the final answer."
CRITIQUE = ("Here is a question and a draft answer.\n\nQuestion: {question}\n\nDraft answer:\n{draft}\n\n"
            "Check each step of the draft. List any mistake you find; if every step is right, say 'No mistakes'.")
REVISE = ("Question: {question}\n\nDraft answer:\n{draft}\n\nReview of the draft:\n{critique}\n\n"
          "Write the corrected solution, step by step, and give the final answer on the last line as "
          "'Answer: <answer>'.")


# A final-answer line ("Answer: 12", "The answer is 12.") that has been finished (a newline
# follows it): what the prompts ask to end with.
_ANSWER_LINE = re.compile(r"(?:^|\n)[^\n]*?(?:final answer|the answer is|answer\s*:|respuesta(?: final)?\s*:|"
                          r"la respuesta es)[^\n]*?\d[^\n]*\n", re.IGNORECASE)


def answer_complete(text: str) -> bool:
    """Whether ``text`` already holds a finished final-answer line with a number in it: a
    solution's conclusion is out, and what a small model writes after it (repeats, new
    "problems") changes nothing but the time. Used to stop generations early."""
    return bool(_ANSWER_LINE.search(text))


def _messages(user: str, system: str = SYSTEM) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


async def critique_and_revise(generate: Generate, question: str, draft: str, *,
                              max_tokens: int = 256) -> dict[str, str]:
    """Self-reflection on ``draft``: a critique, then a revision that takes it into account."""
    critique = await generate(_messages(CRITIQUE.format(question=question, draft=draft)), temperature=0.0,
                              max_tokens=max_tokens)
    if "no mistake" in critique.lower():
        return {"critique": critique, "answer": draft}
    revised = await generate(_messages(REVISE.format(question=question, draft=draft, critique=critique)),
                             temperature=0.0, max_tokens=max_tokens)
    return {"critique": critique, "answer": revised or draft}


async def solve(strategy: str, generate: Generate, question: str, *, samples: int = 5,
                max_tokens: int = 256, sample: Sample | None = None) -> dict[str, Any]:
    """Answer ``question`` with ``strategy``; returns the answer and how many model calls it took
    (self-consistency's samples are drawn together through ``sample`` when given)."""
    if strategy == "direct":
        answer = await generate(_messages(question + DIRECT), temperature=0.0, max_tokens=64)
        return {"answer": answer, "calls": 1}
    if strategy == "chain_of_thought":
        answer = await generate(_messages(question + COT), temperature=0.0, max_tokens=max_tokens)
        return {"answer": answer, "calls": 1}
    if strategy == "reflect":
        draft = await generate(_messages(question + COT), temperature=0.0, max_tokens=max_tokens)
        out = await critique_and_revise(generate, question, draft, max_tokens=max_tokens)
        return {"answer": out["answer"], "draft": draft, "critique": out["critique"],
                "calls": 2 if out["answer"] is draft else 3}
    if strategy == "self_consistency":
        if sample is not None:
            answers = await sample(_messages(question + COT), samples, temperature=0.7, seed=1000,
                                   max_tokens=max_tokens)
        else:
            answers = [await generate(_messages(question + COT), temperature=0.7, seed=1000 + i,
                                      max_tokens=max_tokens) for i in range(samples)]
        best = agreement.clusters(answers, question=question)[0]
        return {"answer": answers[best[0]], "votes": len(best), "calls": samples}
    raise ValueError(f"unknown strategy {strategy!r}")
