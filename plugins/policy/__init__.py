"""The permission policy: every tool call from every surface passes through it.

Rules match tool names by pattern (``fnmatch``: ``system.*``, ``browser.click``), optionally
for one surface only (``mcp:system.*``). Order of precedence: deny, then ask, then allow.
A tool no rule names gets a default from its annotations: read-only tools are allowed,
destructive ones ask, the rest are allowed. "Ask" means consent from the person behind
the client (MCP elicitation through ``ctx.elicit``); without a way to ask, or when the
person declines, the tool does not run and the caller gets an error saying why.

Every call is appended to an audit log (JSON lines in the data dir, mode 0600): time,
surface, caller, tool, a SHA-256 digest of the arguments (canonical JSON), the decision
and the result status. A call that may change something gets a ``started`` line before it
runs, and does not run when that line cannot be written. The policy is the operator's:
no tool can disable or reconfigure it at run time (edit ``[plugin.policy]`` and restart).
Configure it in ``[plugin.policy]``; see docs/agents.md and docs/security.md.
"""

from __future__ import annotations

from core.hookspecs import hookimpl

from .engine import Policy, PolicySettings

__all__ = ["Policy", "PolicySettings"]


def _policy(app) -> Policy | None:
    policy = app.services.get("policy")
    info = app.host.plugins.get("policy")
    if policy is None or info is None or not info.enabled:
        return None
    return policy


@hookimpl
def loom_configure(config, app):
    settings = config.plugin_settings("policy", PolicySettings)
    policy = Policy(settings, config.data_dir)
    app.services["policy"] = policy

    def after(call, result, error):
        active = _policy(app)
        if active is not None:
            active.audit(call, result, error)

    app.tools.after_call.append(after)


@hookimpl
def loom_authorize(call, app):
    policy = _policy(app)
    if policy is None:
        return None  # the kernel's fail-closed default applies (destructive tools ask)
    return policy.authorize_and_record(call)


@hookimpl
def loom_register_resources(register):
    register("loom://policy", lambda app: app.services["policy"].describe(), name="policy",
             description="The permission policy's rules and where its audit log is written.")
