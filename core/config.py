"""Configuration: one TOML file parsed into typed msgspec structs, with env overrides.

Where the file is looked for, first found wins: an explicit path, ``$LOOM_CONFIG``,
``./loom.toml``, ``$XDG_CONFIG_HOME/loom/loom.toml``. No file means defaults.

Environment overrides use ``LOOM_<SECTION>__<KEY>=<value>`` (double underscore between
levels), e.g. ``LOOM_SERVER__PORT=9000``; values are read as TOML values when they parse
as one (numbers, booleans, arrays) and as strings otherwise.

Everything is checked when the file is read: an unknown key (with the close spellings it
may have meant), a wrong type, a size that is not one ("lots"), a duration that is not
one, a role nobody serves that looks like a typo ("coderr"). The ``ConfigError`` names
the file, the ``[section]`` and the key. Durations may be written as Ollama does
("5m", "1h30m", "-1") or as seconds; sizes as "6GiB", "512MB" or bytes.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from .units import parse_bytes, parse_duration

T = TypeVar("T")


class ConfigError(Exception):
    pass


# Roles the built-in plugins ask the pool for. A third-party plugin may ask for its own;
# a role that is one typo away from one of these is almost certainly a typo.
KNOWN_ROLES = ("coordinator", "coder", "vlm", "embed", "imagegen", "video", "tts", "stt")


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
    # llama.cpp: convert the GGUF's weights to this type once ("q8_0" or "f16"), kept under
    # [paths] model_cache; for CPUs without batched kernels for the file's own type (Q4_1,
    # Q5_x, K-quants on x86): faster prompts and speculative decoding (docs/throughput.md).
    quantize: str | None = None

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


class PathsConfig(_Section):
    data_dir: str | None = None  # default: $XDG_DATA_HOME/loom
    cache_dir: str | None = None  # default: $XDG_CACHE_HOME/loom
    model_cache: str | None = None  # files derived from model weights (conversions); default: <cache_dir>/models
    allowed_roots: list[str] = []  # file arguments must be inside one; default: cwd and data_dir


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class PullConfig(_Section):
    """``loom pull``: where models come from and where they go."""

    endpoint: str | None = None  # default: $HF_ENDPOINT, else https://huggingface.co
    models_dir: str | None = None  # default: <data_dir>/models


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
    pull: PullConfig = msgspec.field(default_factory=PullConfig)
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

    @property
    def model_cache_dir(self) -> Path:
        return Path(self.paths.model_cache).expanduser() if self.paths.model_cache else self.cache_dir / "models"

    def allowed_roots(self) -> list[Path]:
        roots = self.paths.allowed_roots or [str(Path.cwd()), str(self.data_dir)]
        return [Path(r).expanduser().resolve() for r in roots]

    def plugin_settings(self, name: str, settings_type: type[T]) -> T:
        """The ``[plugin.<name>]`` table as the plugin's own Struct, with errors naming the file."""
        raw = self.plugin.get(name, {})
        where = self.source or "the configuration"
        if isinstance(raw, dict):
            _check_keys(raw, settings_type, f"plugin.{name}", where)
        try:
            return msgspec.convert(raw, settings_type)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{where}: {_explain(exc, f'plugin.{name}')}") from None


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
    validate_raw(raw, where)
    _check_profiles(raw.get("profiles"), where)
    try:
        cfg = msgspec.convert(raw, LoomConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {_explain(exc)}") from None
    cfg.source = str(file) if file else None
    return cfg


# --- validation at load -------------------------------------------------------------------

_DURATIONS = {"server": ("session_idle_timeout", "shutdown_grace"), "pool": ("queue_timeout", "default_keep_alive")}
_SIZES = {"server": ("max_body_bytes",), "pool": ("ram_budget", "ram_reserve", "gpu_budget", "gpu_reserve")}
_SECTIONS = {"server": ServerConfig, "plugins": PluginsConfig, "pool": PoolConfig, "paths": PathsConfig,
             "logging": LoggingConfig, "pull": PullConfig, "cluster": ClusterConfig}


def _fields(struct: type) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(struct)]


def _did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _check_keys(table: dict[str, Any], struct: type, section: str, where: str) -> None:
    known = _fields(struct)
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: [{section}] has no key {key!r}{_did_you_mean(key, known)} "
                              f"(known keys: {', '.join(known)})")


def validate_raw(raw: dict[str, Any], where: str) -> None:
    """Check the parsed TOML before it becomes typed config; converts durations and sizes
    written as strings ("5m", "6GiB") in place. Raises ``ConfigError`` naming the key."""
    top = [*_SECTIONS, "models", "plugin", "profiles"]
    for key, value in raw.items():
        if key not in top:
            raise ConfigError(f"{where}: unknown section [{key}]{_did_you_mean(key, top)} "
                              f"(sections: {', '.join(f'[{t}]' for t in top)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a [{key}] table, not {type(value).__name__}")
    for section, struct in _SECTIONS.items():
        table = raw.get(section)
        if table is None:
            continue
        _check_keys(table, struct, section, where)
        for key in _DURATIONS.get(section, ()):
            if key in table:
                table[key] = _convert(parse_duration, table[key], f"[{section}] {key}", where)
        for key in _SIZES.get(section, ()):
            if key in table and table[key] is not None:
                size = _convert(parse_bytes, table[key], f"[{section}] {key}", where)
                table[key] = size if key == "max_body_bytes" else table[key]
    for name, entry in (raw.get("models") or {}).items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: models.{name} must be a [models.{name}] table")
        section = f"models.{name}"
        _check_keys(entry, ModelConfig, section, where)
        if "backend" not in entry:
            raise ConfigError(f"{where}: [{section}] needs a backend, e.g. backend = \"llama_cpp\"")
        if "keep_alive" in entry:
            entry["keep_alive"] = _convert(parse_duration, entry["keep_alive"], f"[{section}] keep_alive", where)
        if entry.get("memory") is not None:
            _convert(parse_bytes, entry["memory"], f"[{section}] memory", where)
        try:
            msgspec.convert(entry, ModelConfig)
        except msgspec.ValidationError as exc:  # checked alone: msgspec names dict keys `[...]`
            raise ConfigError(f"{where}: {_explain(exc, section)}") from None
        role = entry.get("role")
        if isinstance(role, str) and role not in KNOWN_ROLES:
            hint = _did_you_mean(role, KNOWN_ROLES)
            if hint:  # an unknown role far from every built-in one may be a plugin's own
                raise ConfigError(f"{where}: [{section}] role = {role!r} is not a role{hint} "
                                  f"(roles: {', '.join(KNOWN_ROLES)})")
    for name, table in (raw.get("plugin") or {}).items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: plugin.{name} must be a [plugin.{name}] table")


def _convert(parse: Any, value: Any, what: str, where: str) -> Any:
    try:
        return parse(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {what} = {value!r}: {exc}") from None


_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)


def _explain(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """msgspec's "Expected `int`, got `str` - at `$.server.port`" as "[server] port: expected int, got str"."""
    m = _AT.match(str(exc))
    message, path = (m.group(1), m.group(2)) if m else (str(exc), None)
    parts = [p for p in re.split(r"\.|\[|\]", (prefix + (path or "")).strip(".")) if p]
    parts = [p.strip("'\"") for p in parts]
    message = message[:1].lower() + message[1:]
    if not parts:
        return message
    if parts[0] in ("models", "plugin") and len(parts) >= 2:
        section, keys = ".".join(parts[:2]), parts[2:]
    else:
        section, keys = parts[0], parts[1:]
    return f"[{section}] {'.'.join(keys)}: {message}" if keys else f"[{section}]: {message}"


def remove_model(path: Path, name: str) -> bool:
    """Remove ``[models.<name>]`` from the TOML file at ``path``; False when it was not there."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    new_text = _without_model(text, name)
    if new_text == text.rstrip() + "\n" or f"[models.{name}]" in new_text:
        return False
    tomllib.loads(new_text)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    tmp.replace(path)
    return True


def _without_model(text: str, name: str) -> str:
    """``text`` minus the ``[models.<name>]`` table and its sub-tables (up to the next header)."""
    header = re.compile(rf"^\[models\.{re.escape(name)}(\.[^\]]+)?\]\s*$")
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.lstrip().startswith("["):
            skipping = bool(header.match(line.strip()))
        if not skipping:
            kept.append(line)
    return "\n".join(kept).rstrip() + "\n"


def default_config_path() -> Path:
    """Where a new loom.toml goes when none exists: found from any directory."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "loom" / "loom.toml"


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
    body = _without_model(text, name).rstrip()
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
