"""Check what is installed for each plugin and print the command that fixes what is missing.

Plugins declare their needs in a module-level ``DOCTOR`` list of dicts:
``{"check": "module" | "binary" | "env" | "path", "name": ..., "fix": ..., "why": ...}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from . import make_app, print_json

HELP = "check what each plugin needs and how to install what is missing"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 when anything is missing")


def check(req: dict[str, Any]) -> bool:
    kind, name = req.get("check"), req.get("name", "")
    if kind == "module":
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False
    if kind == "binary":
        return shutil.which(name) is not None or Path(name).is_file()
    if kind == "env":
        return bool(os.environ.get(name))
    if kind == "path":
        return Path(name).expanduser().exists()
    return False


def run(args: argparse.Namespace) -> int:
    app = make_app(args)
    report: list[dict[str, Any]] = []
    data_dir = app.config.data_dir
    report.append({"plugin": "core", "check": "python", "name": sys.version.split()[0],
                   "ok": sys.version_info >= (3, 11), "fix": "install Python 3.11 or newer"})
    report.append({"plugin": "core", "check": "config", "name": app.config.source or "(defaults: no loom.toml)",
                   "ok": True, "fix": ""})
    writable = os.access(data_dir if data_dir.exists() else data_dir.parent.parent, os.W_OK)
    report.append({"plugin": "core", "check": "data dir", "name": str(data_dir), "ok": writable,
                   "fix": f"make {data_dir} writable or set [paths] data_dir"})
    for info in app.host.plugins.values():
        if info.errors:
            report.append({"plugin": info.name, "check": "load", "name": info.module, "ok": False,
                           "fix": "; ".join(info.errors)})
        for req in getattr(info.obj, "DOCTOR", None) or []:
            report.append({"plugin": info.name, **req, "ok": check(req)})
    if args.json:
        print_json(report)
    else:
        current = None
        for row in report:
            if row["plugin"] != current:
                current = row["plugin"]
                print(f"{current}:")
            mark = "ok     " if row["ok"] else "MISSING"
            why = f" ({row['why']})" if row.get("why") else ""
            print(f"  {mark} {row['check']}: {row['name']}{why}")
            if not row["ok"] and row.get("fix"):
                print(f"          fix: {row['fix']}")
        missing = sum(not r["ok"] for r in report)
        print(f"{missing} missing" if missing else "everything is in place")
    return 1 if args.strict and any(not r["ok"] for r in report) else 0
