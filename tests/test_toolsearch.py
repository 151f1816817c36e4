"""tools.search indexes each tool's example requests beside its description: a tool is found
by a request phrased like one of its examples even when it shares no word with the
description, with the embedder (MiniLM) and with words alone."""

from __future__ import annotations

import msgspec
import pytest

from core.hookspecs import hookimpl


class _NoArgs(msgspec.Struct, forbid_unknown_fields=True):
    pass


async def _ledger(args: _NoArgs) -> str:
    """Append a line to the household ledger file."""
    return "ok"


async def _thermostat(args: _NoArgs) -> str:
    """Set the thermostat target."""
    return "ok"


class _Home:
    """Two tools; only the ledger declares examples (how users ask for it)."""

    @hookimpl
    def loom_register_tools(self, register):
        register(_ledger, name="home.ledger", examples=["I spent 12 euros on groceries today",
                                                         "note down the money I paid for the plumber"])
        register(_thermostat, name="home.thermostat")


@pytest.mark.anyio
async def test_examples_find_a_tool_the_description_does_not(make_app):
    from plugins.toolsearch import rank_lexical, tool_examples

    app = make_app("toolsearch", "embed", extra={"home": _Home()})
    async with app:
        assert tool_examples(app.tools.get("home.ledger"))[0] == "I spent 12 euros on groceries today"
        task = "I paid 40 euros for groceries"  # no word of the ledger's name or description
        res = await app.call("tools.search", {"task": task, "limit": 2})
        assert res.structured["method"] == "embedding"
        assert res.structured["tools"][0]["name"] == "home.ledger"
        tools = [app.tools.get("home.ledger"), app.tools.get("home.thermostat")]
        assert rank_lexical(task, tools)[0][0] == 0  # the description alone shares no word with it
        best = rank_lexical(task, tools, with_examples=True)[0]
        assert best[1].name == "home.ledger" and best[0] > 0


@pytest.mark.anyio
async def test_builtin_tools_come_with_packaged_examples(make_app):
    from plugins.toolsearch import packaged_examples, tool_examples

    app = make_app("toolsearch", "voice")
    missing = [t.name for t in app.tools.list() if t.name != "tools.search" and not tool_examples(t)]
    assert not missing
    assert all(len(v) >= 2 for v in packaged_examples().values())
