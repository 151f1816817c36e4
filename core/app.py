"""The application object: config, bus, tool registry, plugins, pool, tied together.

``Loom`` is what every surface holds. Build it, then use it as an async context manager
to run it::

    app = Loom.create()              # loads config and plugins, registers everything
    async with app:                  # starts the bus, the pool and the plugins
        result = await app.call("coder.generate", {"task": "fizzbuzz"})
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from . import __version__
from .bus import EventBus
from .config import LoomConfig, load_config
from .consent import ask_consent, default_decision
from .events import PluginFailed
from .logging import configure as configure_logging
from .logging import get_logger
from .plugins import PluginHost
from .tools import Decision, ToolCall, ToolContext, ToolRegistry

log = get_logger("loom.app")


@dataclass
class Resource:
    uri: str
    func: Callable[..., Any]
    plugin: str
    name: str
    description: str
    mime_type: str = "application/json"

    async def read(self, app: Loom) -> Any:
        value = self.func(app)
        return await value if inspect.isawaitable(value) else value


@dataclass
class Prompt:
    name: str
    func: Callable[..., Any]
    plugin: str
    description: str

    def arguments(self) -> list[dict[str, Any]]:
        out = []
        for p in inspect.signature(self.func).parameters.values():
            out.append({"name": p.name, "required": p.default is inspect.Parameter.empty})
        return out


@dataclass
class Stage:
    name: str
    obj: Any
    plugin: str
    order: int


class Loom:
    def __init__(self, config: LoomConfig | None = None, *, environ: dict[str, str] | None = None) -> None:
        self.config = config or load_config(environ=environ)
        self.started_at = time.time()
        self.bus = EventBus()
        self.tools = ToolRegistry(self.bus)
        self.tools.authorize = self._authorize
        self.backends: dict[str, Callable[[], Any]] = {}
        self.resources: dict[str, Resource] = {}
        self.prompts: dict[str, Prompt] = {}
        self.stages: list[Stage] = []
        self.host = PluginHost(self, environ)
        self.services: dict[str, Any] = {}  # shared objects plugins publish (e.g. "router")
        self._pool: Any = None
        self._running = False
        # Faults that stop a plugin from serving (a corrupt database): in status, and
        # /readyz answers 503 while any is present.
        self.faults: dict[str, str] = {}

    @classmethod
    def create(
        cls,
        config: LoomConfig | None = None,
        *,
        environ: dict[str, str] | None = None,
        plugins: dict[str, Any] | None = None,
        configure_logs: bool = True,
    ) -> Loom:
        """Load config, discover and register plugins; ``plugins`` adds objects (for tests)."""
        app = cls(config, environ=environ)
        if configure_logs:
            configure_logging(app.config.logging.level, app.config.logging.format)
        app.host.discover(plugins)
        app.host.configure_all()
        app.host.register_all()
        return app

    version = __version__

    # -- the pool is created on first use so `loom tools` never touches memory probes --

    @property
    def pool(self) -> Any:
        if self._pool is None:
            from .pool import ModelPool

            self._pool = ModelPool(self)
        return self._pool

    # -- registration callbacks handed to plugins --------------------------------------

    def registrar(self, hook_name: str, plugin: str) -> Callable[..., Any]:
        if hook_name == "loom_register_tools":
            return lambda func, **kw: self.tools.add(func, plugin=plugin, **kw)
        if hook_name == "loom_register_backends":
            return lambda name, factory: self._add_backend(plugin, name, factory)
        if hook_name == "loom_register_subscribers":
            return lambda event_type, handler, **kw: self.bus.subscribe(event_type, handler, plugin=plugin, **kw)
        if hook_name == "loom_register_stages":
            return lambda stage, *, name=None, order=100: self._add_stage(plugin, stage, name, order)
        if hook_name == "loom_register_resources":
            return lambda uri, func, **kw: self._add_resource(plugin, uri, func, **kw)
        if hook_name == "loom_register_prompts":
            return lambda func, **kw: self._add_prompt(plugin, func, **kw)
        raise KeyError(hook_name)

    def _add_backend(self, plugin: str, name: str, factory: Callable[[], Any]) -> None:
        if name in self.backends:
            raise ValueError(f"backend {name!r} from plugin {plugin!r} is already registered")
        factory.__loom_plugin__ = plugin  # type: ignore[attr-defined]
        self.backends[name] = factory

    def _add_stage(self, plugin: str, stage: Any, name: str | None, order: int) -> None:
        self.stages.append(Stage(name or getattr(stage, "name", plugin), stage, plugin, order))
        self.stages.sort(key=lambda s: s.order)

    def _add_resource(
        self,
        plugin: str,
        uri: str,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        mime_type: str = "application/json",
    ) -> None:
        if uri in self.resources:
            raise ValueError(f"resource {uri!r} from {plugin!r} is already registered by "
                             f"{self.resources[uri].plugin!r}")
        self.resources[uri] = Resource(uri, func, plugin, name or uri, description or inspect.getdoc(func) or "",
                                       mime_type)

    def _add_prompt(self, plugin: str, func: Callable[..., Any], *, name: str | None = None,
                    description: str | None = None) -> None:
        full = name or f"{plugin}.{func.__name__}"
        if full in self.prompts:
            raise ValueError(f"prompt {full!r} is already registered")
        self.prompts[full] = Prompt(full, func, plugin, description or inspect.getdoc(func) or "")

    def unregister_plugin(self, plugin: str) -> None:
        """Remove everything a plugin registered (disable at run time, failed register)."""
        self.tools.remove_plugin(plugin)
        self.bus.unsubscribe_plugin(plugin)
        for name, factory in list(self.backends.items()):
            if getattr(factory, "__loom_plugin__", None) == plugin:
                del self.backends[name]
        self.stages = [s for s in self.stages if s.plugin != plugin]
        self.resources = {k: v for k, v in self.resources.items() if v.plugin != plugin}
        self.prompts = {k: v for k, v in self.prompts.items() if v.plugin != plugin}

    def reload_config(self) -> dict[str, Any]:
        """Re-read the config file and apply plugin enable/disable lists; returns what changed."""
        new = load_config(self.config.source) if self.config.source else load_config()
        self.config = new
        enabled, disabled = [], []
        for name, info in self.host.plugins.items():
            if self.guards_authorization(name):
                continue  # the policy changes only with a restart (see docs/security.md)
            want = self.host._allowed(name) or name == "admin"
            if want and not info.enabled and info.loaded:
                self.host.enable(name)
                enabled.append(name)
            elif not want and info.enabled:
                self.host.disable(name)
                disabled.append(name)
        return {"source": new.source, "enabled": enabled, "disabled": disabled}

    def guards_authorization(self, plugin: str) -> bool:
        """Whether ``plugin`` takes part in authorization (implements ``loom_authorize``).

        Such a plugin is never enabled, disabled or reconfigured at run time, by any tool:
        a client that could switch the policy off could grant itself every permission.
        """
        info = self.host.plugins.get(plugin)
        return info is not None and "loom_authorize" in (info.hooks or [])

    def plugin_route(self, request: Any) -> Any:
        """The first plan a plugin's ``loom_route`` returns for ``request``, or None."""
        return self.host.pm.hook.loom_route(request=request, app=self)

    # -- authorization -----------------------------------------------------------------

    async def _authorize(self, call: ToolCall) -> Decision:
        """Fail closed: no answer is the kernel's default (destructive tools ask), a broken
        answer is a refusal, and "ask" is resolved here by asking the client's user."""
        try:
            answer = self.host.pm.hook.loom_authorize(call=call, app=self)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            mcp = sys.modules.get("core.surfaces.mcp")
            if mcp is not None and isinstance(exc, mcp.McpResponse):
                raise  # a consent round trip on the 2026 protocol, not a failure
            log.error("authorization hook failed", tool=call.tool.name, error=repr(exc))
            return Decision("deny", f"{call.tool.name} was not run: the policy failed to decide ({exc})")
        if answer is None:
            answer = default_decision(call)
        if not isinstance(answer, Decision):
            log.error("authorization hook returned a non-Decision", answer=repr(answer)[:200])
            return Decision("deny", f"{call.tool.name} was not run: the policy gave no valid decision")
        if answer.action == "ask":
            return await ask_consent(call, answer.reason or "the policy asks first")
        if answer.action not in ("allow", "deny"):
            return Decision("deny", f"{call.tool.name} was not run: unknown policy action {answer.action!r}")
        return answer

    # -- calling -------------------------------------------------------------------------

    async def call(self, name: str, arguments: Any = None, *, ctx: ToolContext | None = None, **ctx_fields: Any):
        """Call a tool through the registry (validation, policy, events included)."""
        ctx = ctx or ToolContext(**ctx_fields)
        ctx.app = self
        ctx.bus = self.bus
        return await self.tools.call(name, arguments, ctx)

    def spawn(self, func: Callable[..., Any], *args: Any, name: str | None = None) -> None:
        """Run ``func(*args)`` as a background service task until the app stops.

        For work a plugin starts at ``loom_startup`` without holding up the start (opening a
        database, warming a model). The task must handle its own errors: one that escapes
        is logged and reported as ``PluginFailed``, and the app runs on.
        """
        tg = self.bus._tg
        if tg is None:
            raise RuntimeError("the app is not running: spawn from loom_startup or later")

        async def guarded() -> None:
            try:
                await func(*args)
            except Exception as exc:
                log.error("background task failed", task=name or getattr(func, "__qualname__", "?"),
                          error=repr(exc))
                await self.bus.publish(PluginFailed(plugin=name or "?", stage="background", error=repr(exc)))

        tg.start_soon(guarded, name=name)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Loom:
        await self.bus.__aenter__()
        self._running = True
        for impl in self.host.pm.hook.loom_startup.get_hookimpls():
            await self._run_lifecycle(impl, "startup")
        if self._pool is not None or self.config.models:
            await self.pool.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        with anyio.CancelScope(shield=True):
            for impl in reversed(self.host.pm.hook.loom_shutdown.get_hookimpls()):
                await self._run_lifecycle(impl, "shutdown")
            if self._pool is not None:
                await self._pool.close()
        self._running = False
        # Outside the shield: the bus's task group scope must be exited from its own level.
        await self.bus.__aexit__(*exc_info)

    async def _run_lifecycle(self, impl: Any, stage: str) -> None:
        if not self.host.plugins.get(impl.plugin_name, None) or not self.host.plugins[impl.plugin_name].enabled:
            return
        try:
            result = impl.function(*[{"app": self}[a] for a in impl.argnames])
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.error("plugin lifecycle hook failed", plugin=impl.plugin_name, stage=stage, error=repr(exc))
            self.host.plugins[impl.plugin_name].errors.append(f"{stage}: {exc!r}")
            await self.bus.publish(PluginFailed(plugin=impl.plugin_name, stage=stage, error=repr(exc)))

    def report_fault(self, plugin: str, message: str) -> None:
        """Record that ``plugin`` cannot serve (until restarted) and why, with what to do."""
        if self.faults.get(plugin) != message:
            log.error("plugin fault", plugin=plugin, error=message)
        self.faults[plugin] = message

    def status(self) -> dict[str, Any]:
        return {
            "name": "loom",
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "plugins": self.host.describe(),
            "tools": len(self.tools),
            "faults": dict(self.faults),
            "bus": {"published": self.bus.published, "subscribers": len(self.bus.subscriptions)},
        }
