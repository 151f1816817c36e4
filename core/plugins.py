"""Finding, loading, registering, enabling and disabling plugins.

Built-in plugins (the ``plugins`` package) load exactly like third-party ones; the only
difference is where they are found. A plugin that fails to import or to register is
recorded with its name and the error, reported as a ``PluginFailed`` event, and the
rest load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from . import __version__, hookspecs
from .events import PluginFailed, PluginLoaded, PluginStateChanged
from .logging import get_logger

if TYPE_CHECKING:
    from .app import Loom

log = get_logger("loom.plugins")

ENTRY_POINT_GROUP = "loom"

# name -> module. Order is registration order.
BUILTIN_PLUGINS: dict[str, str] = {
    "admin": "plugins.admin",
    "models": "plugins.models",
    "llamacpp": "plugins.llamacpp",
    "vision": "plugins.vision",
    "coder": "plugins.coder",
    "embed": "plugins.embed",
    "imagegen": "plugins.imagegen",
    "video": "plugins.video",
    "voice": "plugins.voice",
    "browser": "plugins.browser",
    "system": "plugins.system",
    "document": "plugins.document",
    "memory": "plugins.memory",
    "cognition": "plugins.cognition",
    "assistant": "plugins.assistant",
    "policy": "plugins.policy",
    "toolsearch": "plugins.toolsearch",
}

REGISTRATION_HOOKS = (
    "loom_register_tools",
    "loom_register_backends",
    "loom_register_subscribers",
    "loom_register_stages",
    "loom_register_resources",
    "loom_register_prompts",
)


@dataclass
class PluginInfo:
    name: str
    module: str
    source: str  # "builtin", "entrypoint" or "object"
    version: str | None = None
    enabled: bool = True
    loaded: bool = False
    errors: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    obj: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "source": self.source,
            "version": self.version,
            "enabled": self.enabled,
            "loaded": self.loaded,
            "hooks": self.hooks,
            "errors": self.errors,
        }


def _env_list(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


class PluginHost:
    """Owns the pluggy manager and the record of every plugin found."""

    def __init__(self, app: Loom, environ: dict[str, str] | None = None) -> None:
        self.app = app
        self.environ = dict(os.environ if environ is None else environ)
        self.pm = pluggy.PluginManager("loom")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}

    # -- discovery ----------------------------------------------------------------------

    def _allowed(self, name: str) -> bool:
        cfg = self.app.config.plugins
        allow = _env_list(self.environ.get("LOOM_PLUGINS"))
        if allow is None:
            allow = cfg.enabled
        if allow is not None and name not in allow:
            return False
        return name not in cfg.disabled

    def _autoload(self) -> bool:
        flag = self.environ.get("LOOM_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower()
        return self.app.config.plugins.autoload and flag not in ("1", "true", "yes", "on")

    def discover(self, extra: dict[str, Any] | None = None) -> None:
        """Import built-ins, entry-point plugins and ``extra`` objects, allowed ones only."""
        for name, module in BUILTIN_PLUGINS.items():
            if self._allowed(name):
                self._load(PluginInfo(name=name, module=module, source="builtin", version=__version__))
        if self._autoload():
            for ep in _entry_points():
                if ep.name in self.plugins:
                    self._record_error(
                        PluginInfo(name=ep.name, module=ep.value, source="entrypoint"),
                        "import",
                        f"a plugin named {ep.name!r} is already loaded from {self.plugins[ep.name].module}",
                    )
                    continue
                if self._allowed(ep.name):
                    version = ep.dist.version if ep.dist is not None else None
                    self._load(PluginInfo(name=ep.name, module=ep.value, source="entrypoint", version=version),
                               loader=ep.load)
        for name, obj in (extra or {}).items():
            self._load(PluginInfo(name=name, module=repr(obj), source="object"), loader=lambda o=obj: o)

    def _load(self, info: PluginInfo, loader: Callable[[], Any] | None = None) -> None:
        self.plugins[info.name] = info
        try:
            obj = loader() if loader else importlib.import_module(info.module)
        except ModuleNotFoundError as exc:
            if info.source == "builtin" and exc.name == info.module:
                del self.plugins[info.name]  # a built-in not shipped in this build
                return
            self._record_error(info, "import", _short(exc))
            return
        except Exception as exc:
            self._record_error(info, "import", _short(exc))
            return
        try:
            self.pm.register(obj, name=info.name)
        except Exception as exc:
            self._record_error(info, "register", _short(exc))
            return
        info.obj = obj
        info.loaded = True
        info.hooks = sorted(impl.name for impl in self.pm.get_hookcallers(obj) or [])
        self.app.bus.publish_nowait(PluginLoaded(plugin=info.name, version=info.version, source=info.name))

    def _record_error(self, info: PluginInfo, stage: str, error: str) -> None:
        self.plugins.setdefault(info.name, info)
        info.errors.append(f"{stage}: {error}")
        log.error("plugin failed", plugin=info.name, stage=stage, error=error)
        self.app.bus.publish_nowait(PluginFailed(plugin=info.name, stage=stage, error=error))

    # -- registration -------------------------------------------------------------------

    def configure_all(self) -> None:
        self.pm.hook.loom_configure.call_historic(kwargs={"config": self.app.config, "app": self.app})

    def register_all(self) -> None:
        for info in list(self.plugins.values()):
            if info.loaded and info.enabled:
                self.register(info.name)

    def register(self, name: str) -> bool:
        """Run every registration hook of one plugin. On failure, undo what it registered."""
        info = self.plugins[name]
        for hook_name in REGISTRATION_HOOKS:
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin_name != name:
                    continue
                register = self.app.registrar(hook_name, name)
                try:
                    impl.function(*[{"register": register, "app": self.app}[a] for a in impl.argnames])
                except Exception as exc:
                    self._record_error(info, "register", f"{hook_name}: {_short(exc)}")
                    self.app.unregister_plugin(name)
                    return False
        return True

    # -- run-time enable / disable ------------------------------------------------------

    def disable(self, name: str) -> None:
        info = self._get(name)
        if not info.enabled:
            return
        info.enabled = False
        self.app.unregister_plugin(name)
        self.app.bus.publish_nowait(PluginStateChanged(plugin=name, enabled=False))

    def enable(self, name: str) -> None:
        info = self._get(name)
        if info.enabled and info.loaded:
            return
        if not info.loaded:
            raise ValueError(f"plugin {name!r} did not load: {'; '.join(info.errors) or 'unknown error'}")
        info.enabled = True
        if self.register(name):
            self.app.bus.publish_nowait(PluginStateChanged(plugin=name, enabled=True))
        else:
            info.enabled = False
            raise ValueError(f"plugin {name!r} failed to register: {info.errors[-1]}")

    def _get(self, name: str) -> PluginInfo:
        try:
            return self.plugins[name]
        except KeyError:
            known = ", ".join(sorted(self.plugins)) or "none"
            raise ValueError(f"no plugin named {name!r} (known: {known})") from None

    def describe(self) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.plugins.values()]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _short(exc: BaseException) -> str:
    """The error and where it was raised, in one line."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"
