"""The ``loom`` command line. Each subcommand lives in ``core.commands.<name>`` and
imports what it needs only when it runs, so ``loom --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__

# Order is the order shown in --help.
COMMANDS = ("serve", "mcp", "ask", "route", "tools", "call", "models", "plugins", "memory", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loom",
        description="Loom: a local multimodal agent runtime. One daemon, many specialist models, "
        "every capability an MCP tool.",
    )
    parser.add_argument("--version", action="version", version=f"loom {__version__}")
    parser.add_argument("--config", metavar="FILE", help="path to loom.toml (default: $LOOM_CONFIG, "
                        "./loom.toml, $XDG_CONFIG_HOME/loom/loom.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"core.commands.{name}":
                continue  # not built yet in this version
            raise
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # numpy's small matrix work (MiniLM embeddings, memory recall) is fastest on one BLAS
    # thread; extra OpenBLAS threads spin waiting for cores that model threads hold (seen:
    # 6 ms -> 770 ms per sentence on a busy 2-core box). torch and llama.cpp keep their own
    # thread pools. Set before numpy is imported; an explicit setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    from .config import ConfigError

    try:
        return int(args._run(args) or 0)
    except ConfigError as exc:
        print(f"loom: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
