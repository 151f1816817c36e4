"""Remove a model: its ``[models.NAME]`` block, and the files ``loom pull`` downloaded for it.

Files outside the pulled-models folder (a model you configured by path) are left alone.
The running daemon unloads it and re-reads the configuration."""

from __future__ import annotations

import argparse
import sys

from . import daemon_call, say

HELP = "remove a model (and the files `loom pull` downloaded for it): loom rm NAME"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the model's name in loom.toml")


def run(args: argparse.Namespace) -> int:
    from core.client import DaemonError, running_daemon
    from core.config import find_config_file, load_config, remove_model
    from core.pull import remove_files

    config = load_config(getattr(args, "config", None))
    model = config.models.get(args.name)
    if model is None:
        known = ", ".join(sorted(config.models)) or "none"
        print(f"loom: no model named {args.name!r} in {config.source or 'the configuration'} (configured: {known})",
              file=sys.stderr)
        return 1
    daemon = running_daemon(config.data_dir)
    if daemon is not None:
        try:
            daemon_call(config, daemon, "models.unload", {"name": args.name})
        except DaemonError as exc:
            say(args, f"the daemon could not unload it ({exc})")
    removed = remove_files(config, model)
    source = find_config_file(getattr(args, "config", None))
    if source is None or not remove_model(source, args.name):
        print(f"loom: [models.{args.name}] is not in a file this command can edit (set by the environment?)",
              file=sys.stderr)
        return 1
    for path in removed:
        print(f"removed {path}")
    print(f"removed [models.{args.name}] from {source}")
    if daemon is not None:
        try:
            daemon_call(config, daemon, "admin.reload_config", {})
        except DaemonError as exc:
            say(args, f"could not tell the daemon ({exc}); restart it")
    return 0
