"""Subcommands of ``loom``: each module has HELP, ``add_arguments(parser)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def make_app(args: argparse.Namespace, **kw: Any) -> Any:
    """Build the application from ``--config`` (shared by every command)."""
    from core.app import Loom
    from core.config import load_config

    return Loom.create(load_config(getattr(args, "config", None)), **kw)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def add_request_arguments(p: argparse.ArgumentParser, *, text_help: str) -> None:
    """The request a user types and the files sent with it (``loom ask``, ``loom route``)."""
    p.add_argument("text", nargs="?", default="", help=text_help)
    p.add_argument("--attach", action="append", default=[], metavar="PATH",
                   help="a file sent with the request (image, video, audio, document); repeatable")
