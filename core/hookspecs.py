"""Loom's plugin hooks. This module is the reference: every hook documents itself.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names are
hooks below. Registration hooks receive a ``register`` callback, in the style of
simonw/llm: plugins never reach into kernel state, they hand things to ``register``.
All registration hooks run synchronously at startup, and again for one plugin when it
is enabled at run time. Per-request work (tool calls, events) never goes through
pluggy; it runs on the async runtime.

A third-party plugin is found through the ``loom`` entry-point group::

    [project.entry-points.loom]
    weather = "loom_weather"

Its tools are then named ``weather.<name>``.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("loom")
hookimpl = pluggy.HookimplMarker("loom")


@hookspec(historic=True)
def loom_configure(config: Any, app: Any) -> None:
    """Receive the configuration before anything is registered.

    Historic: a plugin enabled later is called with the current configuration too.

    Args:
        config: the ``LoomConfig``; read your own table with
            ``config.plugin_settings("<name>", YourSettingsStruct)``.
        app: the running ``Loom`` application (services: ``bus``, ``tools``, ``pool``).
    """


@hookspec
def loom_register_tools(register: Any) -> None:
    """Register tools.

    Args:
        register: ``register(func, *, name=None, description=None, read_only=False,
            destructive=False, idempotent=False, open_world=False, title=None,
            timeout=None, examples=())``. ``func`` takes one ``msgspec.Struct`` of arguments and
            optionally a ``ToolContext``; it may be async or sync (sync runs in a
            worker thread). The tool is named ``<plugin>.<name or func.__name__>``,
            described by its docstring; its input schema comes from the Struct.
            ``examples`` are requests in users' words that the tool answers (a dozen,
            in the languages you support, phrased differently); the assistant's router
            trains on them at start, so ``assistant.ask`` routes such requests to the
            tool with no change to the assistant.
    """


@hookspec
def loom_register_backends(register: Any) -> None:
    """Register model backends (model families the pool can load).

    Args:
        register: ``register(name, factory)``. ``factory()`` returns a
            ``core.backends.ModelBackend``; models in ``loom.toml`` name it with
            ``backend = "<name>"``.
    """


@hookspec
def loom_register_subscribers(register: Any) -> None:
    """Subscribe to events on the bus.

    Args:
        register: ``register(event_type, handler, *, name=None, maxsize=None,
            overflow="block", block_timeout=1.0, max_failures=5)``. ``handler(event)``
            may be sync or async and runs in its own task with its own bounded
            mailbox; ``overflow`` is ``block``, ``drop_newest`` or ``drop_oldest``.
            A handler that keeps raising is quarantined.
    """


@hookspec
def loom_register_stages(register: Any) -> None:
    """Register cognition stages that run around the coordinator's answer.

    Args:
        register: ``register(stage, *, name=None, order=100)``. ``stage`` has async
            ``before(turn)`` and/or ``after(turn)`` methods; stages run by ascending
            ``order`` before the answer and descending after it. Each can be turned off
            with ``[plugin.<name>] enabled = false``.
    """


@hookspec
def loom_register_resources(register: Any) -> None:
    """Register read-only resources (exposed as MCP resources).

    Args:
        register: ``register(uri, func, *, name=None, description=None,
            mime_type="application/json")``. ``func(app)`` (sync or async) returns
            ``str``, ``bytes`` or a JSON-able value.
    """


@hookspec
def loom_register_prompts(register: Any) -> None:
    """Register prompt templates (exposed as MCP prompts).

    Args:
        register: ``register(func, *, name=None, description=None)``. ``func`` takes
            keyword string arguments (its signature gives the prompt's arguments) and
            returns the prompt text, or a list of ``(role, text)`` pairs.
    """


@hookspec(firstresult=True)
def loom_route(request: Any, app: Any) -> Any:
    """Choose the plan for a request; the first non-None answer wins.

    Args:
        request: a ``RouteRequest`` (text, attachments, session id).
        app: the running ``Loom`` application.

    Returns:
        A ``Plan``, or None to let another plugin (finally the built-in router) decide.
    """


@hookspec(firstresult=True)
def loom_authorize(call: Any, app: Any) -> Any:
    """Decide whether a tool call may run; the first non-None answer wins.

    Called for every call from every surface (MCP, HTTP, CLI, plans) before the tool
    runs. Authorization fails closed: with no answer the kernel's default applies
    (``core.consent.default_decision``: destructive tools called by a client ask), an
    exception or a non-Decision is a refusal, and ``ask`` is resolved by asking the
    client's user (``core.consent.ask_consent``). A plugin implementing this hook cannot
    be enabled, disabled or reloaded at run time.

    Args:
        call: a ``ToolCall`` (``tool`` with its annotations, validated ``args``, and
            ``ctx`` with the surface, the caller and an ``elicit`` callback when the
            client can be asked).
        app: the running ``Loom`` application.

    Returns:
        A ``Decision`` (``allow``, ``deny`` or ``ask`` with a reason), an awaitable of
        one, or None.
    """


@hookspec
def loom_startup(app: Any) -> Any:
    """Called when the application starts, after registration. May return an awaitable.

    Args:
        app: the running ``Loom`` application.
    """


@hookspec
def loom_shutdown(app: Any) -> Any:
    """Called when the application stops, before the bus closes. May return an awaitable.

    Args:
        app: the running ``Loom`` application.
    """
