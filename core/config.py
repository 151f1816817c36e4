"""Configuration: one TOML file parsed into typed msgspec structs, with env overrides.

Where the file is looked for, first found wins: an explicit path, ``$LOOM_CONFIG``,
``./loom.toml``, ``$XDG_CONFIG_HOME/loom/loom.toml``. No file means defaults.

Environment overrides use ``LOOM_<SECTION>__<KEY>=<value>`` (double underscore between
levels), e.g. ``LOOM_SERVER__PORT=9000``; values are read as TOML values when they parse
as one (numbers, booleans, arrays) and as strings otherwise.

An unknown key or a wrong type is a ``ConfigError`` naming the key and the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from .units import parse_bytes

T = TypeVar("T")


class ConfigError(Exception):
    pass


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 8765
    mcp_path: str = "/mcp"
    auth: bool = True
    token_file: str | None = None  # default: <data_dir>/token
    allowed_hosts: list[str] = []  # besides loopback names; "*" allows any (not recommended)
    allowed_origins: list[str] = []
    max_body_bytes: int = 16 * 1024 * 1024
    session_idle_timeout: float = 1800.0
    max_sessions: int = 64
    max_sessions_per_client: int = 16  # beyond it a client's own idlest session is closed
    shutdown_grace: float = 30.0
    # Connection limits (see docs/operations.md, "Timeouts and connection limits").
    header_timeout: float = 10.0  # seconds to deliver a request head (slowloris, unused sockets)
    idle_timeout: float = 5.0  # seconds an idle keep-alive connection stays open
    max_connections: int = 512  # open connections; more are closed at once
    drain_timeout: float = 5.0  # seconds /readyz answers 503 before the listener closes
    # How MCP clients see tool names: "dotted" (vision.describe) or "underscore"
    # (vision_describe) for clients whose model APIs allow only [A-Za-z0-9_-] in names.
    mcp_tool_names: Literal["dotted", "underscore"] = "dotted"
    # Tools that answer a 2026-07-28 client declaring the MCP tasks extension with a task
    # handle to poll (2025-11-25 clients ask for a task themselves, for any tool).
    mcp_task_tools: list[str] = msgspec.field(
        default_factory=lambda: ["video.generate", "imagegen.*", "browser.research"])


class PluginsConfig(_Section):
    enabled: list[str] | None = None  # an allowlist; None loads everything found
    disabled: list[str] = []
    autoload: bool = True  # discover third-party plugins through the `loom` entry points


class ModelConfig(_Section):
    """One model the pool can load. ``file``/``files`` are paths (or ``pkg:`` names)."""

    backend: str
    file: str | None = None
    files: dict[str, str] = {}
    mmproj: str | None = None
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    keep_alive: float = 300.0  # seconds idle before unloading; 0 right after use; <0 never
    pin: bool = False  # never evicted, loaded at start
    priority: int = 0
    context_size: int = 4096
    memory: int | str | None = None  # override the estimate, e.g. "6GiB"
    role: str | None = None  # "coordinator", "coder", "embed", "imagegen", ...
    options: dict[str, Any] = {}
    # Where the model runs: "inline" (a thread of the daemon), "process" (a worker subprocess:
    # a crash cannot take the daemon down, unloading returns all its memory), "ray" (a Ray
    # actor, see docs/cluster.md) or "auto" (the backend's own choice, see docs/workers.md).
    placement: Literal["auto", "inline", "process", "ray"] = "auto"
    replicas: int = 1  # workers serving this model in parallel, each counted in the budget
    node: str | None = None  # ray placement: a node label (or node id) to pin the model to
    # Speculative decoding (llama.cpp): "auto", true/false; draft_model names a small GGUF
    # with the same tokenizer (a path, pkg:<package> or another [models.*] name).
    speculative: bool | str = "auto"
    draft_model: str | None = None

    def memory_override(self) -> int | None:
        return None if self.memory is None else parse_bytes(self.memory)


class PoolConfig(_Section):
    ram_budget: int | str | None = None  # default: detected available RAM minus the reserve
    ram_reserve: int | str = "2GiB"
    gpu_budget: int | str | None = None  # default: free CUDA memory minus the reserve
    gpu_reserve: int | str = "1GiB"
    queue_size: int = 32
    queue_timeout: float = 120.0
    default_keep_alive: float = 300.0
    # A model whose worker crashes is restarted by the next request, after a back-off that
    # doubles from crash_backoff seconds (the first restart is immediate); crash_limit
    # crashes within crash_window seconds mark it failed until `loom models load NAME`.
    crash_limit: int = 3
    crash_window: float = 300.0
    crash_backoff: float = 1.0
    # Start worker processes by forking a server that has the backends' modules imported
    # (milliseconds) instead of a fresh interpreter each time (hundreds of milliseconds).
    fork_server: bool = True


class ClusterConfig(_Section):
    """``[cluster]``: run ``placement = "ray"`` models on a Ray cluster (docs/cluster.md)."""

    engine: Literal["none", "ray"] = "none"
    address: str = "auto"  # "auto" (a cluster started with `ray start` here), "ray://host:10001", "local"
    namespace: str = "loom"
    # The custom Ray resource each node declares for the memory Loom may use there, in MiB
    # (`ray start --resources='{"loom_memory_mib": 24000}'`); a node without it is budgeted
    # from Ray's own `memory` resource.
    memory_resource: str = "loom_memory_mib"
    gpu_memory_resource: str = "loom_gpu_memory_mib"  # the same for GPU memory, per node
    connect_timeout: float = 30.0


class PathsConfig(_Section):
    data_dir: str | None = None  # default: $XDG_DATA_HOME/loom
    cache_dir: str | None = None  # default: $XDG_CACHE_HOME/loom
    allowed_roots: list[str] = []  # file arguments must be inside one; default: cwd and data_dir


class LoggingConfig(_Section):
    level: str = "info"
    format: str = "auto"  # "auto", "json", "console"


class ProfileConfig(_Section):
    """``[profiles.<name>]``: a named subset of the tools, for clients with small contexts.

    Served over MCP at ``<mcp_path>/<name>`` and selectable for the OpenAI/Anthropic tool
    lists (``core.profiles.profile_tools``). Patterns are ``fnmatch`` globs on tool names
    (``"voice.*"``, ``"coder.generate"``); ``exclude`` wins over ``tools``.
    """

    description: str = ""
    tools: list[str] = []  # the tools listed to the client
    exclude: list[str] = []
    # Tools the client may call without seeing them listed (found through tools.search);
    # default: only the listed ones.
    callable: list[str] | None = None


def _check_profiles(profiles: Any, where: str) -> None:
    """Each ``[profiles.<name>]`` on its own, so an error names the profile (msgspec writes
    dict keys as ``[...]``), and a name that cannot be a URL path segment is refused."""
    if not isinstance(profiles, dict):
        return
    for name, entry in profiles.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
            raise ConfigError(f"{where}: [profiles.{name}]: a profile name is part of a URL path "
                              "(/mcp/<name>): use letters, digits, '_' and '-'")
        try:
            msgspec.convert(entry, ProfileConfig)
        except msgspec.ValidationError as exc:
            msg = str(exc).replace("at `$", f"at `$.profiles.{name}")
            if "at `$" not in str(exc):
                msg = f"{msg} - at `$.profiles.{name}`"
            raise ConfigError(f"{where}: {msg}") from None


class LoomConfig(_Section):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    plugins: PluginsConfig = msgspec.field(default_factory=PluginsConfig)
    models: dict[str, ModelConfig] = {}
    pool: PoolConfig = msgspec.field(default_factory=PoolConfig)
    cluster: ClusterConfig = msgspec.field(default_factory=ClusterConfig)
    paths: PathsConfig = msgspec.field(default_factory=PathsConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    # Named tool profiles; built-in ones (all, media, coding, discover) unless redefined.
    profiles: dict[str, ProfileConfig] = {}
    # Per-plugin settings, `[plugin.<name>]`, typed by each plugin (see ``plugin_settings``).
    plugin: dict[str, dict[str, Any]] = {}
    source: str | None = None  # the file this came from, for error messages

    # -- derived paths ------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return _dir(self.paths.data_dir, "XDG_DATA_HOME", ".local/share")

    @property
    def cache_dir(self) -> Path:
        return _dir(self.paths.cache_dir, "XDG_CACHE_HOME", ".cache")

    def allowed_roots(self) -> list[Path]:
        roots = self.paths.allowed_roots or [str(Path.cwd()), str(self.data_dir)]
        return [Path(r).expanduser().resolve() for r in roots]

    def plugin_settings(self, name: str, settings_type: type[T]) -> T:
        """The ``[plugin.<name>]`` table as the plugin's own Struct, with errors naming the file."""
        raw = self.plugin.get(name, {})
        try:
            return msgspec.convert(raw, settings_type)
        except msgspec.ValidationError as exc:
            where = self.source or "the configuration"
            msg = str(exc).replace("`$", f"`$.plugin.{name}", 1).replace("at `$`", f"at `$.plugin.{name}`")
            raise ConfigError(f"{where}: {msg}") from None


def _dir(explicit: str | None, xdg_var: str, fallback: str) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get(xdg_var) or str(Path.home() / fallback)
    return Path(base) / "loom"


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    candidates: list[Path] = []
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    if os.environ.get("LOOM_CONFIG"):
        path = Path(os.environ["LOOM_CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"LOOM_CONFIG points at {path}, which does not exist")
        return path
    candidates.append(Path.cwd() / "loom.toml")
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidates.append(Path(xdg) / "loom" / "loom.toml")
    return next((c for c in candidates if c.is_file()), None)


_ENV_KEY = re.compile(r"^LOOM_([A-Z0-9_]+?)__([A-Z0-9_]+(?:__[A-Z0-9_]+)*)$")


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``LOOM_SERVER__PORT=9000`` → ``{"server": {"port": 9000}}``."""
    out: dict[str, Any] = {}
    for key, value in (environ if environ is not None else os.environ).items():
        m = _ENV_KEY.match(key)
        if not m:
            continue
        path = [m.group(1).lower(), *(p.lower() for p in m.group(2).split("__"))]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _env_value(value)
    return out


def _env_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: dict[str, str] | None = None
) -> LoomConfig:
    """Find, parse, override and validate the configuration."""
    file = find_config_file(path)
    raw: dict[str, Any] = {}
    where = str(file) if file else "the configuration"
    if file is not None:
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from None
    overrides = env_overrides(environ)
    if overrides:
        where = f"{where} (with LOOM_* environment overrides)"
    _merge(raw, overrides)
    raw.pop("source", None)
    # msgspec writes dict keys as `[...]` in error paths; check each model on its own so
    # the message names it (`$.models.coder`).
    models = raw.get("models")
    if isinstance(models, dict):
        for name, entry in models.items():
            try:
                msgspec.convert(entry, ModelConfig)
            except msgspec.ValidationError as exc:
                msg = str(exc).replace("at `$", f"at `$.models.{name}")
                if "at `$" not in str(exc):
                    msg = f"{msg} - at `$.models.{name}`"
                raise ConfigError(f"{where}: {msg}") from None
    _check_profiles(raw.get("profiles"), where)
    try:
        cfg = msgspec.convert(raw, LoomConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    cfg.source = str(file) if file else None
    for name, model in cfg.models.items():
        if model.memory is not None:
            try:
                model.memory_override()
            except ValueError as exc:
                raise ConfigError(f"{where}: models.{name}.memory: {exc}") from None
    return cfg


def write_model(path: Path, name: str, model: ModelConfig) -> None:
    """Add or replace ``[models.<name>]`` in the TOML file at ``path`` (created if missing).

    The file is edited as text so the user's comments and layout elsewhere survive; the
    result is parsed back before it replaces the file, so a bad edit never lands.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConfigError(f"model name {name!r}: use letters, digits, '_' and '-'")
    entry = {k: v for k, v in msgspec.to_builtins(model).items() if v not in (None, {}, [])}
    defaults = msgspec.to_builtins(ModelConfig(backend=model.backend))
    entry = {k: v for k, v in entry.items() if k == "backend" or defaults.get(k) != v}
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    # Drop an existing [models.<name>] table (and its sub-tables) up to the next header.
    header = re.compile(rf"^\[models\.{re.escape(name)}(\.[^\]]+)?\]\s*$")
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.lstrip().startswith("["):
            skipping = bool(header.match(line.strip()))
        if not skipping:
            kept.append(line)
    body = "\n".join(kept).rstrip()
    table = "\n".join(f"{k} = {_toml_value(v)}" for k, v in entry.items())
    new_text = f"{body}\n\n[models.{name}]\n{table}\n".lstrip()
    try:
        tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:  # e.g. the file already defines models.<name> inline
        raise ConfigError(f"{path}: cannot add [models.{name}] automatically ({exc}); edit the file by hand") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    tmp.replace(path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{msgspec.json.encode(str(k)).decode()} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} to TOML")
