"""Conversations: a thread's history, trimmed to the coordinator's context, older turns
folded into a rolling summary.

A conversation is identified by an id (``assistant.ask``'s ``conversation`` argument, an
MCP session, ``loom chat``) and kept in memory in a bounded ``ConversationStore``; a
client that holds its own history (the OpenAI API's ``messages``) passes it as
``history`` instead and nothing is stored for it.

``fit`` decides what the coordinator sees: the newest turns that fit the budget, in
order; the turns that no longer fit are folded into the summary by ``summarize`` (the
coordinator rewrites "summary so far + these turns" into a new summary, bounded in
length). So a conversation never fails for length: the oldest detail fades into the
summary, the recent turns stay verbatim.

Token counts come from the model that will answer (``Tokens``: ``Chat.count_tokens``,
its own tokenizer and chat template); only when no model can be loaded are they estimated
from characters (``approx_tokens``: 1 token per 3 characters, which over-counts English
and code for Llama/Qwen tokenizers, so the budget errs on the safe side).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

SUMMARY_PROMPT = (
    "You keep a running summary of a conversation between a user and an assistant. Rewrite the summary so it "
    "also covers the new turns below. Keep names, numbers, decisions, preferences and open questions; drop "
    "pleasantries. Write at most {words} words, plain prose, no preamble.\n\n"
    "Summary so far:\n{summary}\n\nNew turns:\n{turns}\n\nUpdated summary:")

Summarize = Callable[[str, list[dict[str, str]]], Awaitable[str]]


SUMMARY_HEADER = "Earlier in this conversation (summary):\n"


def approx_tokens(text: str) -> int:
    """A safe over-estimate of the tokens in ``text`` (see the module docstring)."""
    return len(text) // 3 + 4  # +4: the chat template's per-message framing


class Tokens:
    """Token counts for trimming: exact through a ``Chat`` handle's ``count_tokens`` (the
    model's tokenizer and chat template), else the ``approx_tokens`` estimate.

    ``framing`` is what the chat template adds around one message (role markers, end of
    turn), measured once per model by ``measure_framing``.
    """

    def __init__(self, chat: Any | None = None, framing: int = 4) -> None:
        self.chat = chat
        self.framing = framing

    @property
    def exact(self) -> bool:
        return self.chat is not None

    async def text(self, text: str) -> int:
        """Tokens of ``text`` as plain text (no framing)."""
        if self.chat is None:
            return approx_tokens(text) - 4
        return await self.chat.count_tokens(text)

    async def message(self, text: str) -> int:
        """Tokens ``text`` takes as one message of a chat."""
        return await self.text(text) + self.framing

    async def messages(self, messages: Sequence[dict[str, Any]]) -> int:
        """Tokens of a whole prompt: through the chat template when exact."""
        if self.chat is None:
            return sum(approx_tokens(str(m.get("content") or "")) for m in messages)
        return await self.chat.count_tokens(list(messages))


async def measure_framing(chat: Any) -> int:
    """Tokens the chat template adds per message: one exchange more, less its text."""
    system = {"role": "system", "content": "You help."}
    base = await chat.count_tokens([system, {"role": "user", "content": "Hello there."}])
    more = await chat.count_tokens([system, {"role": "user", "content": "Hello there."},
                                    {"role": "assistant", "content": "Hi, how can I help?"},
                                    {"role": "user", "content": "Hello there."}])
    text = await chat.count_tokens("Hi, how can I help?") + await chat.count_tokens("Hello there.")
    return max(0, -(-(more - base - text) // 2))  # rounded up: erring long keeps the prompt inside the window


@dataclass
class Conversation:
    """One thread: the turns not yet folded, and the summary of those that were."""

    id: str
    turns: list[dict[str, str]] = field(default_factory=list)  # {"role": "user"|"assistant", "content": ...}
    summary: str = ""
    folded: int = 0  # turns folded into the summary so far
    documents: list[str] = field(default_factory=list)  # the documents last attached: follow-ups see them
    updated: float = field(default_factory=time.time)
    lock: anyio.Lock = field(default_factory=anyio.Lock)  # one turn at a time per conversation

    def add(self, user: str, answer: str) -> None:
        self.turns += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        self.updated = time.time()

    def fold(self, count: int, summary: str) -> None:
        """Drop the oldest ``count`` turns, now covered by ``summary``."""
        del self.turns[:count]
        self.folded += count
        self.summary = summary


class ConversationStore:
    """Conversations by id, least recently used dropped past ``max_conversations``."""

    def __init__(self, max_conversations: int = 256) -> None:
        self.max = max_conversations
        self._items: OrderedDict[str, Conversation] = OrderedDict()

    def get(self, cid: str) -> Conversation:
        conv = self._items.get(cid)
        if conv is None:
            conv = self._items[cid] = Conversation(cid)
            while len(self._items) > self.max:
                self._items.popitem(last=False)
        self._items.move_to_end(cid)
        return conv

    def peek(self, cid: str) -> Conversation | None:
        return self._items.get(cid)

    def drop(self, cid: str) -> bool:
        return self._items.pop(cid, None) is not None

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Fitted:
    """What the coordinator is given: the summary (may be empty) and the recent turns."""

    summary: str
    turns: list[dict[str, str]]
    overflow: list[dict[str, str]]  # the oldest turns that did not fit (to fold)


def fit(turns: list[dict[str, str]], budget: int, count: Callable[[str], int] = approx_tokens) -> Fitted:
    """The newest turns whose tokens fit ``budget``; a user turn is never kept without its answer."""
    return fit_costs(turns, budget, [count(t["content"]) for t in turns])


async def fit_counted(turns: list[dict[str, str]], budget: int, tokens: Tokens) -> Fitted:
    """``fit`` with ``tokens``' counts, counting from the newest turn back only until the
    budget is spent (the older turns are folded whatever their size)."""
    costs = [budget + 1] * len(turns)  # not counted: past the budget anyway
    used = 0
    for i in range(len(turns) - 1, -1, -1):
        costs[i] = await tokens.message(turns[i]["content"])
        used += costs[i]
        if used > budget:
            break
    return fit_costs(turns, budget, costs)


def fit_costs(turns: list[dict[str, str]], budget: int, costs: Sequence[int]) -> Fitted:
    """``fit`` given each turn's cost in tokens."""
    kept: list[dict[str, str]] = []
    used = 0
    for i in range(len(turns) - 1, -1, -1):
        cost = costs[i]
        if used + cost > budget:
            cut = i + 1
            # Keep whole exchanges: a leading assistant turn without its question goes too.
            if kept and kept[0]["role"] == "assistant":
                kept.pop(0)
                cut += 1
            return Fitted("", kept, turns[:cut])
        kept.insert(0, turns[i])
        used += cost
    return Fitted("", kept, [])


def render_turns(turns: list[dict[str, str]], limit: int = 4000) -> str:
    """Turns as "User: ... / Assistant: ..." lines for the summariser, each capped."""
    lines = []
    for t in turns:
        content = t["content"] if len(t["content"]) <= limit else t["content"][:limit] + " [...]"
        lines.append(f"{'User' if t['role'] == 'user' else 'Assistant'}: {content}")
    return "\n".join(lines)


def fallback_summary(summary: str, turns: list[dict[str, str]], max_chars: int) -> str:
    """Without a coordinator: the summary plus the folded turns' opening words, newest kept."""
    bits = [summary] if summary else []
    bits += [f"{'User' if t['role'] == 'user' else 'Assistant'}: {t['content'][:200]}" for t in turns]
    text = " | ".join(bits)
    return text if len(text) <= max_chars else "..." + text[-max_chars:]


def history_key(turns: list[dict[str, str]]) -> str:
    """A stable key for a client-held history prefix (to reuse its summary next request)."""
    return hashlib.sha256(json.dumps(turns, sort_keys=True).encode()).hexdigest()


def clean_history(messages: list[Any]) -> list[dict[str, str]]:
    """User and assistant text turns from OpenAI-style messages (system and tool turns dropped,
    content parts joined)."""
    out = []
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else getattr(m, "role", None)
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", None)
        if role not in ("user", "assistant"):
            continue
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if isinstance(content, str) and content.strip():
            out.append({"role": role, "content": content})
    return out
