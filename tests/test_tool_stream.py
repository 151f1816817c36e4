"""``core.surfaces.tool_stream``: with tools offered, prose streams as it is written and a tool
call written as text never reaches the client as content (the HTTP tests drive it end to end)."""

from __future__ import annotations

import pytest

from core.surfaces.tool_stream import ToolTextStream


def run(deltas: list[str], final: str) -> tuple[list[str], str]:
    """The pieces sent while streaming, and what ``finish`` adds for the final prose ``final``."""
    f = ToolTextStream()
    return [p for p in (f.feed(d) for d in deltas) if p], f.finish(final)


def test_prose_streams_delta_by_delta():
    deltas = ["The sea ", "is wide ", "and deep, ", "a < b ", "[1] is a note."]
    sent, rest = run(deltas, "".join(deltas).strip())
    assert len(sent) >= 4 and "".join(sent) + rest == "".join(deltas)


@pytest.mark.parametrize("marker", ["<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "<function="])
def test_a_call_after_prose_is_held_even_when_its_marker_is_split(marker):
    call = marker + '{"name": "get_weather", "arguments": {"city": "Rome"}}'
    deltas = ["Let me check. ", marker[:3], marker[3:] + call[len(marker):len(marker) + 9], call[len(marker) + 9:]]
    sent, rest = run(deltas, "Let me check.")  # the backend parsed the call out of the text
    assert "".join(sent) == "Let me check. " and rest == ""


@pytest.mark.parametrize("start", ['{"name": "get_weather", ', '  [{"name": "get_weather", ', "```json\n{"])
def test_an_answer_that_opens_with_json_is_held_whole(start):
    assert run([start[:1], start[1:], '"arguments": {}}'], "") == ([], "")


def test_held_text_that_was_not_a_call_comes_at_the_end():
    text = '<tool_call>{"name": "no_such_tool", "arguments": {}}</tool_call>'
    sent, rest = run(["Hmm: ", text[:8], text[8:]], "Hmm: " + text)
    assert sent == ["Hmm: "] and rest == text
    assert run(["`", "x` is a name"], "`x` is a name") == (["`x` is a name"], "")
    assert run(["\n", "  ", "Hi"], "Hi") == (["\n  Hi"], "")
