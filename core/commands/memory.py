"""Maintain the memory database: ``loom memory check`` and ``loom memory repair``.

``check`` runs SQLite's integrity check on ``memory.db``; ``repair`` moves a damaged
database aside (kept as ``memory.db.corrupt-<time>``) and rebuilds it from every row
that can still be read. Both take the data dir lock, so stop the daemon first; the
memory plugin does the work (reached through its published service, not imported).
"""

from __future__ import annotations

import argparse
import sys

from . import make_app, print_json

HELP = "check or repair the memory database (stop the daemon first)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("check", "repair"), help="check: report damage; repair: rebuild what is "
                   "readable into a fresh database, keeping the damaged file")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from core import datadir

    app = make_app(args)
    handle = app.services.get("memory")
    if handle is None or not hasattr(handle, "repair"):
        print("loom: the memory plugin is not loaded (check [plugins] in loom.toml)", file=sys.stderr)
        return 2
    datadir.hold_or_exit(app.config.data_dir)  # a running daemon owns the database: stop it first
    report = handle.check() if args.action == "check" else handle.repair()
    if args.json:
        print_json(report)
    else:
        print(f"loom: {report['message']}")
        for table, n in (report.get("recovered") or {}).items():
            print(f"  recovered {n} rows of {table}")
        if report.get("unreadable"):
            print(f"  {report['unreadable']} rows could not be read")
    return 1 if report["status"] == "corrupt" else 0
