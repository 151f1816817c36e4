"""The ``loom`` command line. Each subcommand lives in ``core.commands.<name>`` and
imports what it needs only when it runs, so ``loom --help`` stays fast.

Every command takes ``-v`` (info logs; ``-vv`` debug) and ``-q`` (no logs, no progress,
no notes). Work commands log warnings and errors only, readable on a terminal; the
daemons (``serve``, ``mcp``) log as ``[logging]`` in loom.toml says. Output cut short
by a closed pipe (``loom models | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__

# Order is the order shown in --help.
COMMANDS = ("serve", "mcp", "ask", "chat", "route", "tools", "call", "models", "pull", "rm", "config", "plugins",
            "memory", "doctor")
DAEMONS = ("serve", "mcp")


def _verbosity(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("-v", "--verbose", action="count", default=default if suppress else 0,
                        help="more logs: -v info, -vv debug")
    parser.add_argument("-q", "--quiet", action="store_true", default=default if suppress else False,
                        help="no logs, progress or notes on stderr (errors still print)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loom",
        description="Loom: a local multimodal agent runtime. One daemon, many specialist models, "
        "every capability an MCP tool.",
    )
    parser.add_argument("--version", action="version", version=f"loom {__version__}")
    parser.add_argument("--config", metavar="FILE", help="path to loom.toml (default: $LOOM_CONFIG, "
                        "./loom.toml, $XDG_CONFIG_HOME/loom/loom.toml)")
    _verbosity(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"core.commands.{name}":
                continue  # not built yet in this version
            raise
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        _verbosity(p, suppress=True)  # `loom ask -q ...` as well as `loom -q ask ...`
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def configure_cli_logging(args: argparse.Namespace) -> None:
    """Warnings and errors only for a work command, unless -v; nothing with -q."""
    from .logging import configure

    if args.quiet:
        level = "critical"
    else:
        level = {0: "warning", 1: "info"}.get(args.verbose, "debug")
    configure(level, "console")


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
    if args.command not in DAEMONS:
        configure_cli_logging(args)
    from .client import DaemonError
    from .config import ConfigError

    try:
        status = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except ConfigError as exc:
        print(f"loom: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _pipe_closed()
    except Exception as exc:  # inside a task group: a closed pipe, or a daemon gone mid-command
        from .client import _leaves

        leaves = _leaves(exc)
        if any(isinstance(leaf, BrokenPipeError) for leaf in leaves):
            return _pipe_closed()
        daemon_errors = [leaf for leaf in leaves if isinstance(leaf, DaemonError)]
        if not daemon_errors:
            raise
        print(f"loom: {daemon_errors[0]}", file=sys.stderr)
        return 1


def _pipe_closed() -> int:
    """The reader went away (`loom models | head`): stop writing, quietly. stdout now points
    at /dev/null so the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by the pipe


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
