"""The permission policy: deny/ask/allow rules, consent through elicitation, the audit log."""

from __future__ import annotations

import hashlib
import json
import types as pytypes

import msgspec
import pytest

from core.config import ConfigError, LoomConfig
from core.hookspecs import hookimpl
from core.tools import ToolContext, ToolDenied

pytestmark = pytest.mark.anyio


class Note(msgspec.Struct, forbid_unknown_fields=True):
    text: str = ""


def _make_tools():
    ran: list[str] = []

    async def look(args: Note) -> str:
        """Read something."""
        ran.append("look")
        return "looked"

    async def wipe(args: Note) -> str:
        """Delete everything."""
        ran.append("wipe")
        return "wiped"

    async def tweak(args: Note) -> str:
        """Change a setting."""
        ran.append("tweak")
        return "tweaked"

    async def boom(args: Note) -> str:
        """Always fails."""
        raise RuntimeError("broken on purpose")

    @hookimpl
    def loom_register_tools(register):
        register(look, read_only=True)
        register(wipe, destructive=True)
        register(tweak)
        register(boom, read_only=True)

    return pytypes.SimpleNamespace(loom_register_tools=loom_register_tools), ran


@pytest.fixture
def build(make_app):
    def make(**policy):
        plugin, ran = _make_tools()
        app = make_app("policy", extra={"demo": plugin}, config=LoomConfig(plugin={"policy": policy}))
        return app, ran

    return make




def audit(app, *, started: bool = False) -> list[dict]:
    """The audit log's outcome lines (``started=True``: also the lines written before a call)."""
    path = app.services["policy"].audit_path
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return rows if started else [r for r in rows if r["status"] != "started"]


async def test_defaults_allow_read_only_and_ask_for_destructive(build):
    app, ran = build()
    async with app:
        assert (await app.call("demo.look", {})).text() == "looked"
        assert (await app.call("demo.tweak", {})).text() == "tweaked"
        with pytest.raises(ToolDenied, match="needs the user's consent.*cannot be asked"):
            await app.call("demo.wipe", {"text": "all"})
    assert ran == ["look", "tweak"]  # the destructive tool did nothing


async def test_deny_beats_ask_beats_allow(build):
    app, ran = build(deny=["demo.w*"], ask=["demo.*"], allow=["demo.*", "demo.wipe"])
    async with app:
        with pytest.raises(ToolDenied, match="denied by the policy.*rule deny 'demo.w\\*'"):
            await app.call("demo.wipe", {})
        with pytest.raises(ToolDenied, match="consent"):  # ask beats allow
            await app.call("demo.look", {})
    assert ran == []


async def test_surface_scoped_rules(build):
    app, ran = build(deny=["http:demo.tweak"])
    async with app:
        with pytest.raises(ToolDenied):
            await app.call("demo.tweak", {}, surface="http")
        assert (await app.call("demo.tweak", {}, surface="cli")).text() == "tweaked"
    assert ran == ["tweak"]


async def test_ask_runs_only_when_the_user_accepts(build):
    app, ran = build(ask=["demo.tweak"])
    questions: list[str] = []

    async def accept(message, schema):
        questions.append(message)
        assert schema["properties"]["allow"]["type"] == "boolean"
        return {"allow": True}

    async def decline(message, schema):
        return None

    async def say_no(message, schema):
        return {"allow": False}

    async with app:
        assert (await app.call("demo.tweak", {"text": "x"}, ctx=ToolContext(elicit=accept))).text() == "tweaked"
        with pytest.raises(ToolDenied, match="the user declined demo.tweak, so nothing was done"):
            await app.call("demo.tweak", {}, ctx=ToolContext(elicit=decline))
        with pytest.raises(ToolDenied, match="did not allow"):
            await app.call("demo.tweak", {}, ctx=ToolContext(elicit=say_no))
    assert ran == ["tweak"]
    assert "Allow demo.tweak?" in questions[0] and '"text": "x"' in questions[0]
    assert [e["decision"] for e in audit(app)] == ["ask:accepted", "ask:declined", "ask:refused"]


async def test_an_unanswered_question_times_out_as_a_refusal(build):
    import anyio

    app, ran = build(ask=["demo.look"], ask_timeout=0.2)

    async def never(message, schema):
        await anyio.sleep(30)

    async with app:
        with pytest.raises(ToolDenied, match="no answer came within 0.2 s"):
            await app.call("demo.look", {}, ctx=ToolContext(elicit=never))
    assert ran == []


async def test_every_call_lands_in_the_audit_log(build):
    app, _ = build(deny=["demo.wipe"])
    async with app:
        await app.call("demo.look", {"text": "héllo"}, surface="mcp", caller="claude")
        with pytest.raises(ToolDenied):
            await app.call("demo.wipe", {})
        with pytest.raises(RuntimeError):
            await app.call("demo.boom", {})
    rows = audit(app)
    assert [(r["tool"], r["decision"], r["status"]) for r in rows] == [
        ("demo.look", "allow", "ok"), ("demo.wipe", "deny", "denied"), ("demo.boom", "allow", "error")]
    first = rows[0]
    assert first["surface"] == "mcp" and first["caller"] == "claude" and first["time"].endswith("+00:00")
    canonical = json.dumps({"text": "héllo"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert first["args_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert "héllo" not in app.services["policy"].audit_path.read_text()  # only the digest is kept
    assert rows[2]["error"] == "broken on purpose"


async def test_disabling_the_policy_plugin_leaves_the_kernel_default(build):
    app, ran = build(deny=["demo.*"])
    async with app:
        app.host.disable("policy")  # the operator's own code (in-process) may do this
        assert (await app.call("demo.look", {})).text() == "looked"
        with pytest.raises(ToolDenied, match="needs the user's consent"):  # a client still cannot wipe
            await app.call("demo.wipe", {}, surface="mcp")
    assert ran == ["look"]


def test_a_bad_default_is_a_config_error(build):
    with pytest.raises(ConfigError, match="destructive_default must be one of"):
        build(destructive_default="maybe")
