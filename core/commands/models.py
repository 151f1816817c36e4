"""List, load, unload and add models.

  loom models                      configured models (and packaged defaults): roles, backend,
                                   device, estimated memory, state, keep-alive, pin
  loom models load NAME            load it: in the running daemon when there is one (it then
                                   stays for its keep-alive), else in this process, as a check
                                   that it loads, with the load time and the memory it took
  loom models unload NAME          unload it from the running daemon (or this process)
  loom models pull OWNER/REPO[:QUANT]
                                   download a GGUF model from the Hugging Face Hub and add it
                                   (the same as `loom pull`)
  loom models rm NAME              remove it (and the files `loom pull` fetched for it)
  loom models add NAME --backend B --file F [--mmproj M] [--role R] [--context-size N]
                   [--keep-alive S] [--pin]
                                   add or replace [models.NAME] in the config file in use
                                   (or ./loom.toml)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import make_app, print_json, say

HELP = "list, load, unload, add, pull or remove models (loom models [load|unload|add|pull|rm] NAME)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("action", nargs="?", default="list", choices=("list", "load", "unload", "add", "pull", "rm"))
    p.add_argument("--local", action="store_true",
                   help="act in this process even when a daemon is running (list/load/unload go to the "
                        "running daemon by default)")
    p.add_argument("name", nargs="?", help="model name ([models.NAME] in loom.toml)")
    p.add_argument("--json", action="store_true", help="print JSON")
    g = p.add_argument_group("add")
    g.add_argument("--backend", help="backend, e.g. llama_cpp")
    g.add_argument("--file", help="model file path, or pkg:<python-package>")
    g.add_argument("--mmproj", help="vision projector file (llama_cpp vision models)")
    g.add_argument("--role", help="role it serves: coordinator, coder, vlm, embed, imagegen, video, tts, stt")
    g.add_argument("--context-size", type=int, help="context length in tokens")
    g.add_argument("--keep-alive", help='idle time before unloading: seconds, "5m", "1h" (0: at once, -1: never)')
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--memory", help="override the memory estimate, e.g. 6GiB")
    g.add_argument("--pin", action="store_true", help="keep it loaded: loaded at start, never evicted")


def _fmt(n: Any) -> str:
    from core.units import format_bytes

    return "-" if n is None else format_bytes(n)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def _until(m: dict[str, Any]) -> str:
    """When it goes, as `ollama ps` says it: "4 minutes from now", "forever", "in use"."""
    if m["state"] == "unloaded":
        return "-" if m["keep_alive"] >= 0 else "forever once loaded"
    if m["pinned"]:
        return "forever (pinned)"
    if m.get("busy"):
        return "in use"
    remaining = m.get("keep_alive_remaining")
    return "forever" if remaining is None else f"{_duration(remaining)} from now"


def _size(m: dict[str, Any]) -> str:
    if m.get("measured"):
        return _fmt(m["measured"])
    if m.get("reserved"):
        return _fmt(m["reserved"])
    return "~" + _fmt(m["estimate"]) if m.get("estimate") is not None else "?"  # ~: an estimate


def _table(status: dict[str, Any]) -> None:
    rows = [("NAME", "ROLES", "STATE", "SIZE", "DEVICE", "WHERE", "UNTIL", "BACKEND")]
    for m in status["models"]:
        where = m.get("placement", "-") + (f"@{m['node']}" if m.get("node") else "")
        rows.append((m["name"] + ("*" if m["default"] else ""), ",".join(m["roles"]) or "-", m["state"], _size(m),
                     m.get("device", "-"), where, _until(m), m["backend"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for m in status["models"]:
        if m.get("estimate_error"):
            print(f"  {m['name']}: {m['estimate_error']}")
        if m.get("state") == "failed":
            print(f"  {m['name']}: failed: {m.get('error')}")
    for d in status["devices"]:
        print(f"{d['device']}: {_fmt(d['used'])} used of {_fmt(d['budget'])} ({d['budget_source']})")
    print("~ estimated before loading", end="")
    print("; * packaged default, serves its roles only when loom.toml configures no model for them"
          if any(m["default"] for m in status["models"]) else "")


def _done(action: str, result: dict[str, Any]) -> None:
    """One line for a person after load/unload, instead of the status object."""
    if action == "load":
        took = result.get("last_load_seconds")
        print(f"{result['name']}: {result['state']} on {result.get('device', '?')}, {_size(result)}"
              + (f", loaded in {took:.1f} s" if took else "") + f"; stays {_until(result)}")
    elif result.get("unloaded"):
        print(f"{result['model']}: unloaded, freed {_fmt(result.get('freed'))}")
    else:
        print(f"{result['model']}: not unloaded ({result.get('reason', 'unknown')})")


def _add(args: argparse.Namespace) -> int:
    import msgspec

    from core.config import KNOWN_ROLES, ConfigError, ModelConfig, find_config_file, write_model

    if not args.name or not args.backend or not args.file:
        print("loom: usage: loom models add NAME --backend BACKEND --file PATH [--role ROLE] ...", file=sys.stderr)
        return 2
    if not args.file.startswith("pkg:") and not Path(args.file).expanduser().is_file():
        print(f"loom: warning: {args.file} does not exist (yet)", file=sys.stderr)
    fields: dict[str, Any] = {"backend": args.backend, "file": args.file}
    for key in ("mmproj", "role", "context_size", "keep_alive", "device", "memory"):
        if getattr(args, key) is not None:
            fields[key] = getattr(args, key)
    if args.pin:
        fields["pin"] = True
    try:
        if "keep_alive" in fields:
            from core.units import parse_duration

            fields["keep_alive"] = parse_duration(fields["keep_alive"])
        model = msgspec.convert(fields, ModelConfig)
        model.memory_override()
        if model.role and model.role not in KNOWN_ROLES:
            from difflib import get_close_matches

            close = get_close_matches(model.role, KNOWN_ROLES, n=1)
            if close:
                raise ValueError(f"--role {model.role!r} is not a role; did you mean {close[0]!r}? "
                                 f"(roles: {', '.join(KNOWN_ROLES)})")
        if model.context_size <= 0:
            raise ValueError("--context-size must be positive")
    except (msgspec.ValidationError, ValueError) as exc:
        print(f"loom: {exc}", file=sys.stderr)
        return 2
    try:
        path = find_config_file(args.config) or Path.cwd() / "loom.toml"
    except ConfigError:
        path = Path(args.config)  # --config names a file that does not exist yet: create it
    write_model(path, args.name, model)
    print(f"wrote [models.{args.name}] to {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "add":
        return _add(args)
    if args.action in ("pull", "rm") and not args.name:
        print(f"loom: usage: loom models {args.action} {'OWNER/REPO[:QUANT]' if args.action == 'pull' else 'NAME'}",
              file=sys.stderr)
        return 2
    if args.action == "pull":
        from . import pull

        return pull.pull(argparse.Namespace(**{**vars(args), "name": None, "endpoint": None}), args.name)
    if args.action == "rm":
        from . import rm

        return rm.run(args)
    import anyio

    from core.tools import ToolError

    if args.action in ("load", "unload") and not args.name:
        print(f"loom: usage: loom models {args.action} NAME", file=sys.stderr)
        return 2
    from core.client import DaemonError, call_tool, running_daemon
    from core.config import load_config

    config = load_config(getattr(args, "config", None))
    daemon = None if args.local else running_daemon(config.data_dir)
    if daemon is not None:
        # A daemon owns the models: act on it, not on a short-lived copy in this process.
        tool, arguments = {"list": ("models.status", {}), "load": ("models.load", {"name": args.name}),
                           "unload": ("models.unload", {"name": args.name})}[args.action]
        if args.action != "list":
            say(args, f"{args.action}ing {args.name} in the daemon (pid {daemon['pid']})...")
        try:
            result = anyio.run(call_tool, config, daemon, tool, arguments)
        except DaemonError as exc:
            print(f"loom: {exc}", file=sys.stderr)
            return 1
        if args.json:
            print_json(result)
        elif args.action != "list":
            _done(args.action, result)
        else:
            print(f"(the running daemon, pid {daemon['pid']})")
            _table(result)
        return 0
    if not args.local:
        say(args, "no daemon is running (start one with `loom serve`); "
                  + ("showing this process's view" if args.action == "list" else
                     f"{args.action}ing in this process, as a check"))
    app = make_app(args)

    async def main() -> int:
        async with app:
            pool = app.pool
            try:
                if args.action == "list":
                    result: Any = pool.status()
                elif args.action == "load":
                    est = pool.estimate(args.name)
                    say(args, f"loading {args.name} on {est.device} (estimated {_fmt(est.total)})...")
                    result = await pool.load(args.name)
                else:
                    result = await pool.unload(args.name)
            except ToolError as exc:
                print(f"loom: {exc}", file=sys.stderr)
                return 1
        if args.json:
            print_json(result)
        elif args.action != "list":
            _done(args.action, result)
        else:
            _table(result)
        return 0

    return anyio.run(main)
