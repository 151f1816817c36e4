"""Streaming a model's text when the client passed tools: prose goes out as it is written.

A model given tools answers in prose, or with a tool call written as text in the format
its chat template teaches (the formats the llama.cpp backend's ``parse_tool_calls``
reads): ``<tool_call>…``, ``[TOOL_CALLS]…``, ``<|python_tag|>…``, ``<function=…>``, or a
bare JSON object or list (fenced or not) as the whole answer. The backend parses the calls
once the answer is complete (``ChatResult.tool_calls``; ``ChatResult.text`` is the prose
left). Holding every delta back until then would answer a long plain reply in one chunk.

``ToolTextStream`` sits between the deltas and the client of a streamed API (OpenAI,
Ollama, Anthropic, ``model="loom"``): text is handed on as it comes, except from a call
marker on (a possible start of one, such as a trailing ``<tool``, waits for the next
delta to decide), and an answer that opens with ``{``, ``[`` or a code fence is held
whole. ``finish(result.text)`` is the prose the client has not seen yet.
"""

from __future__ import annotations

#: where a tool call written as text starts, in the formats chat templates teach
MARKERS = ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "<function=")
_FENCE = "```"


class ToolTextStream:
    """Filters one answer's text deltas; see the module docstring."""

    def __init__(self) -> None:
        self.sent = ""  # what has been handed on
        self._pending = ""  # text that may be the start of a call (waits for more)
        self._holding = False  # a call (or a JSON answer) began: nothing more goes out until the end

    def feed(self, delta: str) -> str:
        """The part of ``delta`` (with any text held from before) that can go to the client now."""
        if self._holding:
            return ""
        text = self._pending + delta
        self._pending = ""
        if not self.sent:
            head = text.lstrip()
            if not head or (len(head) < len(_FENCE) and _FENCE.startswith(head)):
                self._pending = text  # only whitespace (or a fence's first backticks) so far
                return ""
            if head[0] in "{[" or head.startswith(_FENCE):
                self._holding = True  # JSON as the whole answer: a call, or decided at the end
                return ""
        found = [i for i in (text.find(m) for m in MARKERS) if i >= 0]
        if found:
            self._holding = True
            return self._out(text[:min(found)])
        keep = _partial_marker(text)
        self._pending = text[len(text) - keep:] if keep else ""
        return self._out(text[:len(text) - keep])

    def finish(self, text: str) -> str:
        """The rest of the answer's final prose ``text`` (the calls taken out) not sent yet."""
        sent = self.sent.lstrip()  # the backend strips the prose it returns
        for prefix in (sent, sent.rstrip()):
            if text.startswith(prefix):
                return text[len(prefix):]
        return ""  # the prose was rewritten after it streamed: what the client has stands

    def _out(self, text: str) -> str:
        self.sent += text
        return text


def _partial_marker(text: str) -> int:
    """How many trailing characters of ``text`` could begin a marker (0: none)."""
    longest = max(len(m) for m in MARKERS) - 1
    for k in range(min(len(text), longest), 0, -1):
        tail = text[-k:]
        if any(m.startswith(tail) for m in MARKERS):
            return k
    return 0
