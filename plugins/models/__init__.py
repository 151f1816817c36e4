"""See and steer the model pool: ``models.status``, ``models.load``, ``models.unload`` and
the ``loom://models`` resource (what is loaded, why, until when, and what it costs)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from core.hookspecs import hookimpl
from core.tools import NoArgs, ToolContext, ToolError


class ModelName(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(description="model name as in [models.<name>] (see models.status)",
                                      min_length=1, max_length=200)]


async def status(args: NoArgs, ctx: ToolContext) -> dict[str, Any]:
    """Configured and loaded models: memory estimated and measured, keep-alive left, pins, budgets."""
    return ctx.app.pool.status()


async def load(args: ModelName, ctx: ToolContext) -> dict[str, Any]:
    """Load a model now (evicting idle ones if needed); it then stays for its keep_alive."""
    return await ctx.app.pool.load(args.name)


async def unload(args: ModelName, ctx: ToolContext) -> dict[str, Any]:
    """Unload a model now; a busy model unloads as soon as its running requests finish."""
    return await ctx.app.pool.unload(args.name)


@hookimpl
def loom_register_tools(register: Any) -> None:
    register(status, read_only=True, idempotent=True)
    register(load, idempotent=True)
    register(unload, idempotent=True)


@hookimpl
def loom_register_resources(register: Any) -> None:
    register("loom://models", lambda app: app.pool.status(), name="models",
             description="Models the pool knows: loaded or not, memory, keep-alive remaining, pins, budgets.")
    register("loom://models/{name}", model_details, name="model",
             description="One model: its configuration, whether it is loaded, its memory and keep-alive.")


def model_details(app: Any, name: str) -> dict[str, Any]:
    """``loom://models/{name}``: the model's entry in the pool status plus its configuration."""
    pool = app.pool
    known = pool.models()
    if name not in known:
        raise ToolError(f"unknown model {name!r}; known: {', '.join(sorted(known)) or 'none'} (see loom://models)")
    return {**pool.model_status(name), "config": msgspec.to_builtins(known[name])}
