"""List plugins: name, version, where they came from, their hooks and any load errors."""

from __future__ import annotations

import argparse

from . import make_app, print_json

HELP = "list plugins with their versions, hooks and load errors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    app = make_app(args)
    plugins = app.host.describe()
    failed = any(p["errors"] for p in plugins)
    if args.json:
        print_json(plugins)
        return 1 if failed else 0
    for p in plugins:
        state = "enabled" if p["enabled"] and p["loaded"] else ("FAILED" if p["errors"] else "disabled")
        print(f"{p['name']} {p['version'] or ''} ({p['source']}, {state})")
        if p["hooks"]:
            print(f"    hooks: {', '.join(p['hooks'])}")
        for err in p["errors"]:
            print(f"    error: {err}")
    return 1 if failed else 0
