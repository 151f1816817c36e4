"""Training rows from labelled requests in the dev-set format (``id``, ``text``,
``attachments``, ``intent``, ``steps``): the files people write to teach and test the router.

A dev-format row gives the whole plan, not which clause asks for which step. The router
learns clauses, so each row is aligned: its text is split with the router's own
``split_clauses`` and every clause gets a label, a tool, ``none`` (the clause adds no step:
"... and summarise it" after a search) or ``a+b`` (one clause asking for two steps:
"describe it out loud"), such that the plan the router builds from those labels is exactly
the row's ``steps``. The steps the router adds by structure are taken into account the way
it adds them: attached audio is transcribed first (a typed "transcribe this" is that step,
and a spoken request's words are routed after it), and an image sent to a first tool that
takes none is described first.

When several labellings give the row's plan, the one whose first clause gives the row's
intent wins, then the simplest (fewest ``a+b`` and ``none`` labels), then the one that
puts steps on earlier clauses; such ties are counted as ``ambiguous``. A row no labelling
explains (more steps than its clauses can carry, a plan the router cannot build) is not
used, and is listed in ``Aligned.failed`` with the reason, never dropped silently.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .rules import split_clauses

TRANSCRIBE = "voice.transcribe"  # what attached audio becomes first
DESCRIBE = "vision.describe"  # what an image sent to a tool that takes none becomes first
TAKES_IMAGE = ("vision.", "imagegen.edit")  # the tools an attached image goes to as it is
MAX_PER_CLAUSE = 3  # steps one clause may ask for ("look it up, write it down and read it to me")


@dataclass
class Aligned:
    """The training rows made from one or more files, and what could not be used."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (id, why)
    ambiguous: int = 0  # rows with more than one equally good labelling (the first was kept)
    intent_differs: int = 0  # rows whose plan aligns but whose intent the router would name otherwise

    def summary(self) -> str:
        return (f"{len(self.rows)} rows aligned ({self.ambiguous} ambiguous, {self.intent_differs} with an intent "
                f"the router would name otherwise), {len(self.failed)} not alignable")


def plan_of(labels: list[str], attachments: list[str], spoken: bool) -> list[str] | None:
    """The tool names of the plan the router builds from per-clause labels (router._Builder),
    or None when it would not build it (a first clause with no step, a follow-up that
    repeats the step before it and so would be merged into it)."""
    steps = [TRANSCRIBE] if "audio" in attachments else []
    for i, label in enumerate(labels):
        if label == "none":
            if i == 0:
                return None
            continue
        tools = label.split("+")
        if i == 0 and steps and label == steps[-1]:
            continue  # "transcribe this" with the audio: step 1 already does it
        if i > 0 and steps and label == steps[-1]:
            return None  # the router would merge it into the step before
        if not steps and "image" in attachments and not tools[0].startswith(TAKES_IMAGE):
            steps.append(DESCRIBE)
        steps += tools
    return steps


def _labellings(n: int, steps: list[str], attachments: list[str]) -> list[list[str]]:
    """Every labelling of ``n`` clauses that could give ``steps``: the structural first step
    (transcription, description) taken as implicit or as the first clause's own."""
    out = []
    starts = [0]
    if steps and ((steps[0] == TRANSCRIBE and "audio" in attachments) or
                  (steps[0] == DESCRIBE and "image" in attachments)):
        starts.append(1)
    for start in starts:
        rest = steps[start:]
        for counts in itertools.product(range(MAX_PER_CLAUSE + 1), repeat=n):
            if sum(counts) != len(rest):
                continue
            labels, pos = [], 0
            for k in counts:
                labels.append("+".join(rest[pos:pos + k]) if k else "none")
                pos += k
            out.append(labels)
            if start == 1 and steps[0] == TRANSCRIBE and counts[0] == 0 and n > 0:
                out.append([TRANSCRIBE, *labels[1:]])  # "transcribe this and ...": the clause is step 1
    return out


def intent_of(labels: list[str], attachments: list[str], spoken: bool, intents: dict[str, str]) -> str:
    """The intent the router names for a plan: transcription for typed words about audio,
    else the first clause's (router._Builder.audio / request)."""
    if "audio" in attachments and not spoken:
        return intents.get(TRANSCRIBE, "transcribe")
    first = labels[0].split("+")[0]
    if first in intents:
        return intents[first]
    group = first.split(".")[0]  # a tool the corpus never plans: its plugin's intent, as the router names it
    return next((i for t, i in intents.items() if t.split(".")[0] == group), group)


def align(ex: dict[str, Any], intents: dict[str, str]) -> tuple[dict[str, Any] | None, str, bool, bool]:
    """(row with ``parts``, or None; why not; whether ambiguous; whether its intent differs)."""
    text, atts, steps = ex["text"], list(ex.get("attachments", [])), list(ex["steps"])
    spoken = text.startswith("[spoken]")
    words = text[len("[spoken]"):].strip() if spoken else text
    if not steps:
        return None, "no steps", False, False
    clauses = split_clauses(words)
    fits = [ls for ls in _labellings(len(clauses), steps, atts) if plan_of(ls, atts, spoken) == steps]
    if not fits:
        return None, (f"{len(clauses)} clause(s) {clauses} cannot give the steps {steps} as the router plans "
                      "them"), False, False
    right = [ls for ls in fits if intent_of(ls, atts, spoken, intents) == ex["intent"]]
    differs = not right
    pool = right or fits

    def cost(ls: list[str]) -> tuple[int, list[int]]:
        simple = sum(2 * label.count("+") + (label == "none") for label in ls)
        return simple, [-(0 if label == "none" else label.count("+") + 1) for label in ls]

    pool = sorted(pool, key=cost)
    ambiguous = len(pool) > 1 and cost(pool[0])[0] == cost(pool[1])[0]
    row = {"id": ex.get("id", ""), "text": text, "attachments": atts, "intent": ex["intent"], "steps": steps,
           "parts": [[c, label] for c, label in zip(clauses, pool[0], strict=True)]}
    return row, "", ambiguous, differs


def load(paths: list[Path], intents: dict[str, str], weight: float = 1.0) -> Aligned:
    """Aligned training rows (``weight`` each) from dev-format JSONL files; a line that is
    not JSON or lacks a field is an error naming the file and line."""
    out = Aligned()
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                ex = json.loads(line)
                missing = [k for k in ("text", "steps", "intent") if k not in ex]
                if missing:
                    raise KeyError(", ".join(missing))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a dev-format request ({exc!r}): each line needs text, "
                                 "attachments, intent and steps") from None
            ex.setdefault("id", f"{path.stem}:{n}")
            row, why, ambiguous, differs = align(ex, intents)
            if row is None:
                out.failed.append((ex["id"], why))
                continue
            out.rows.append({**row, "weight": weight})
            out.ambiguous += ambiguous
            out.intent_differs += differs
    return out
