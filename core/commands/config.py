"""Check the configuration, or show the effective one and where each value came from.

  loom config check     read loom.toml (and LOOM_* overrides) the way the daemon does,
                        plugins' own [plugin.*] tables included; exit 2 naming the file,
                        section and key of the first problem
  loom config show      every setting in effect, each with its source: the file, an
                        environment variable, or the built-in default
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from typing import Any

HELP = "check the configuration or show the effective one: loom config check|show"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("action", nargs="?", default="show", choices=("check", "show"))
    p.add_argument("--json", action="store_true", help="show as JSON: {key: {value, source}}")


def _flatten(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(value, dict) and value:
        out: dict[tuple[str, ...], Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, (*prefix, str(k))))
        return out
    return {prefix: value}


def sources(args: argparse.Namespace) -> tuple[Any, dict[tuple[str, ...], tuple[Any, str]]]:
    """The loaded config and ``{key path: (value, source)}`` for every setting."""
    import msgspec

    from core.config import env_overrides, find_config_file, load_config

    cfg = load_config(getattr(args, "config", None))
    file = find_config_file(getattr(args, "config", None))
    from_file = _flatten(tomllib.loads(file.read_text(encoding="utf-8"))) if file else {}
    env = env_overrides()
    env_names = {path: "env LOOM_" + "__".join(p.upper() for p in path) for path in _flatten(env)}
    effective = msgspec.to_builtins(cfg)
    effective.pop("source", None)
    out: dict[tuple[str, ...], tuple[Any, str]] = {}
    for path, value in _flatten(effective).items():
        if path in env_names:
            source = env_names[path]
        elif path in from_file:
            source = str(file)
        elif path[0] == "models" and len(path) > 2:
            source = f"default for [models.{path[1]}]"
        else:
            source = "default"
        out[path] = (value, source)
    return cfg, out


def _toml(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def run(args: argparse.Namespace) -> int:
    from core.config import ConfigError, find_config_file

    if args.action == "check":
        try:
            file = find_config_file(getattr(args, "config", None))
            from . import make_app

            make_app(args)  # plugins read their [plugin.*] tables as they register
        except ConfigError as exc:
            print(f"loom: configuration error: {exc}", file=sys.stderr)
            return 2
        env = sorted(k for k in os.environ if k.startswith("LOOM_") and "__" in k)
        print(f"ok: {file or 'no loom.toml found; built-in defaults'}"
              + (f" (with {', '.join(env)})" if env else ""))
        return 0
    cfg, table = sources(args)
    from core.pull import endpoint_of, models_dir

    derived = {("paths", "data_dir"): cfg.data_dir, ("paths", "cache_dir"): cfg.cache_dir,
               ("pull", "endpoint"): endpoint_of(cfg), ("pull", "models_dir"): models_dir(cfg)}
    if args.json:
        json.dump({".".join(p): {"value": v, "source": s} for p, (v, s) in table.items()}, sys.stdout, indent=2,
                  default=str)
        sys.stdout.write("\n")
        return 0
    print(f"# effective configuration; file: {cfg.source or 'none (built-in defaults)'}")
    section: tuple[str, ...] | None = None
    rows = sorted(table.items(), key=lambda kv: (kv[0][0] in ("models", "plugin"), kv[0]))
    for path, (value, source) in rows:
        head, key = (path[:2], path[2:]) if path[0] in ("models", "plugin") and len(path) > 2 else (path[:1], path[1:])
        if head != section:
            print(f"\n[{'.'.join(head)}]")
            section = head
        shown = _toml(value) if value is not None or path not in derived else f"(unset: {derived[path]})"
        line = f"{'.'.join(key) or '(empty)'} = {shown}"
        print(f"{line:<48} # {source}")
    return 0
