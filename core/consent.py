"""Asking the person behind a client for consent, and the kernel's fail-closed default.

``ask_consent(call, why)`` turns an "ask" into allow or deny: it sends one form
elicitation (``ctx.elicit``) with a boolean ``allow`` field and allows the call only
when the answer is an explicit ``{"allow": true}``. Declining, cancelling, timing out,
an accept without ``allow`` (a client that accepts every form blindly), or a client
that cannot be asked at all are refusals: nothing runs.

``default_decision(tool)`` is what the kernel decides when no ``loom_authorize``
implementation answers (the policy plugin is not loaded, or disabled by the operator):
the same defaults the policy starts from, so losing the policy never loosens them:
read-only and ordinary tools run, destructive ones ask when a client calls them (and are
refused where nobody can be asked). Authorization never fails open to "allow everything".
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import msgspec

from .tools import Decision, ToolCall

DEFAULT_ASK_TIMEOUT = 300.0


def default_decision(call: ToolCall) -> Decision:
    """The kernel's answer when no policy answered: destructive tools ask, the rest run.

    In-process calls (``surface="python"``: the program embedding Loom) are the operator's
    own code and run; every client surface (MCP, HTTP, CLI through the daemon) asks.
    """
    if call.tool.annotations.destructive and call.ctx.surface != "python":
        return Decision("ask", "destructive tool, and no policy answered")
    return Decision("allow", "not destructive (no policy answered)")


def _record(call: ToolCall) -> dict[str, Any]:
    return call.ctx.extra.setdefault("policy", {})


async def ask_consent(call: ToolCall, why: str, *, timeout: float = DEFAULT_ASK_TIMEOUT) -> Decision:
    """Ask the caller's user whether ``call`` may run once; see the module docstring."""
    ctx, name = call.ctx, call.tool.name
    record = _record(call)
    record.setdefault("rule", why)
    if ctx.elicit is None:
        record["decision"] = "ask:unavailable"
        return Decision("deny", f"{name} needs the user's consent ({why}), but this {ctx.surface} client cannot "
                                "be asked (no MCP elicitation support), so nothing was done. Use a client that "
                                "supports elicitation, or an operator can allow it in [plugin.policy] allow")
    preview = json.dumps(msgspec.to_builtins(call.args), ensure_ascii=False, default=str)
    if len(preview) > 600:
        preview = preview[:600] + "…"
    first_line = call.tool.description.splitlines()[0] if call.tool.description else ""
    message = f"Allow {name}?\n{first_line}\nArguments: {preview}\nRequested by {ctx.caller} over {ctx.surface}."
    schema = {
        "type": "object",
        "properties": {"allow": {"type": "boolean", "title": "Allow", "description": f"Let {name} run once"}},
        "required": ["allow"],
    }
    try:
        with anyio.fail_after(timeout):
            answer = await ctx.elicit(message, schema)
    except TimeoutError:
        record["decision"] = "ask:timeout"
        return Decision("deny", f"{name} needs the user's consent and no answer came within {timeout:g} s, "
                                "so nothing was done")
    except Exception as exc:
        mcp = sys.modules.get("core.surfaces.mcp")
        if mcp is not None and isinstance(exc, mcp.McpResponse):
            raise  # the 2026 protocol round trip: the client re-sends the call with the answer
        record["decision"] = "ask:failed"
        return Decision("deny", f"{name} needs the user's consent, but asking failed ({exc}), so nothing was done")
    if answer is None:
        record["decision"] = "ask:declined"
        return Decision("deny", f"the user declined {name}, so nothing was done")
    # Only an explicit yes is consent: a client that accepts a form without filling it in
    # (or with anything but ``true``) has not said yes.
    if not (isinstance(answer, dict) and answer.get("allow") is True):
        record["decision"] = "ask:refused"
        return Decision("deny", f"the user did not allow {name} (consent needs allow=true), so nothing was done")
    record["decision"] = "ask:accepted"
    return Decision("allow", f"the user allowed {name}")
