"""Administration tools: list, enable and disable plugins at run time; reload the config."""

from __future__ import annotations

import msgspec

from core.completion import secret_files
from core.hookspecs import hookimpl
from core.payloads import REF_TEMPLATE, event_payload, event_to_wire
from core.tools import NoArgs, ToolContext, ToolError


class PluginName(msgspec.Struct, forbid_unknown_fields=True):
    name: str


def plugins(args: NoArgs, ctx: ToolContext) -> list[dict]:
    """List plugins with their state, version, hooks and load errors."""
    return ctx.app.host.describe()


def _refuse_policy(name: str, ctx: ToolContext, verb: str) -> None:
    if ctx.app.guards_authorization(name):
        raise ToolError(f"{name!r} decides what tools may run, so it cannot be {verb} at run time; an operator "
                        "changes it in loom.toml ([plugins] and [plugin.policy]) and restarts the daemon")


def enable_plugin(args: PluginName, ctx: ToolContext) -> dict:
    """Enable a loaded plugin: its tools, subscribers and resources are registered again."""
    _refuse_policy(args.name, ctx, "enabled")
    try:
        ctx.app.host.enable(args.name)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    return {"plugin": args.name, "enabled": True, "tools": len(ctx.app.tools)}


def disable_plugin(args: PluginName, ctx: ToolContext) -> dict:
    """Disable a plugin: its tools disappear from every surface until it is enabled again."""
    if args.name == "admin":
        raise ToolError("the admin plugin cannot disable itself")
    _refuse_policy(args.name, ctx, "disabled")
    try:
        ctx.app.host.disable(args.name)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    return {"plugin": args.name, "enabled": False, "tools": len(ctx.app.tools)}


def reload_config(args: NoArgs, ctx: ToolContext) -> dict:
    """Re-read loom.toml and apply its [plugins] enabled/disabled lists (the policy plugin
    and its settings change only with a restart)."""
    from core.config import ConfigError

    try:
        changes = ctx.app.reload_config()
    except ConfigError as exc:
        raise ToolError(str(exc)) from None
    return changes


@hookimpl
def loom_register_tools(register):
    register(plugins, read_only=True, idempotent=True)
    # Destructive: each changes what every client may do, so the policy asks (and audits).
    register(enable_plugin, idempotent=True, destructive=True)
    register(disable_plugin, idempotent=True, destructive=True)
    register(reload_config, idempotent=True, destructive=True)


@hookimpl
def loom_register_resources(register):
    register("loom://status", lambda app: app.status(), name="status",
             description="Version, uptime, plugins and bus counters.")
    register("loom://events", lambda app: [event_to_wire(e) for e in app.bus.recent],
             name="events", description="The most recent events on the bus, oldest first. Payloads over "
                                        "1 KiB (e.g. speech PCM) are references: read their $ref URI.")
    register(REF_TEMPLATE, _payload, name="event payload", mime_type="application/octet-stream",
             description="The bytes of one large field of a recent event (the $ref in loom://events).")


    register("loom://files/{+path}", read_file, name="file", mime_type="application/octet-stream",
             description="A file inside the allowed roots, by its absolute path without the leading '/' "
                         "(loom://files/home/me/.local/share/loom/outputs/cat.png): what imagegen, video and "
                         "voice produced. Complete the path with completion/complete.")


def read_file(app, path: str) -> bytes:
    """The bytes of a file inside the allowed roots (``[paths] allowed_roots``)."""
    from core.paths import confined_file

    real = confined_file("/" + path.lstrip("/"), app.config.allowed_roots(),
                         max_bytes=app.config.server.max_body_bytes, limit_setting="server.max_body_bytes")
    if real in secret_files(app.config):
        raise ToolError("the daemon's bearer token is not readable as a resource")
    return real.read_bytes()


def _payload(app, id: str, field: str) -> bytes:
    try:
        return event_payload(app.bus.recent, id, field)
    except LookupError as exc:
        raise ToolError(str(exc)) from None
