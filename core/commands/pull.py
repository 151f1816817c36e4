"""Download a GGUF model from the Hugging Face Hub and configure it.

  loom pull Qwen/Qwen3-VL-2B-Instruct-GGUF:Q4_K_M     the Q4_K_M file and the repo's mmproj
  loom pull bartowski/SmolLM2-360M-Instruct-GGUF       the repo's only (or its Q4_K_M) file
  loom pull OWNER/REPO:'*Q8_0*.gguf' --name big --role coder

Shows a progress bar on a terminal, resumes an interrupted download, checks the free
disk space first and each file's SHA-256 after, writes ``[models.NAME]`` into loom.toml
and tells the running daemon. The endpoint: ``--endpoint``, ``[pull] endpoint``,
``$HF_ENDPOINT``, else https://huggingface.co. ``loom rm NAME`` removes it again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from . import say

HELP = "download a GGUF model from the Hugging Face Hub: loom pull OWNER/REPO[:QUANT]"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("spec", metavar="OWNER/REPO[:QUANT]", help="the Hub repo, and the quantization or a file glob")
    add_pull_options(p)


def add_pull_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="the model's name in loom.toml (default: from the repo and quantization)")
    p.add_argument("--role", help="the role it serves (default: vlm with an mmproj, coder for a coder model)")
    p.add_argument("--endpoint", help="the Hub's address (default: [pull] endpoint, $HF_ENDPOINT, huggingface.co)")
    p.add_argument("--context-size", type=int, help="context length in tokens for [models.NAME]")


class BarPrinter:
    """One progress bar per file on a terminal (bytes, rate); nothing when piped or -q."""

    def __init__(self, quiet: bool) -> None:
        from core.terminal import Status

        self.status = Status("", quiet=quiet)
        self.started = time.monotonic()
        self.current: str | None = None

    def __call__(self, f: Any, done: int, total: int | None) -> None:
        from core.units import format_bytes

        if f.name != self.current:
            self.current, self.started = f.name, time.monotonic()
            self.status.label = f.local_name
        rate = done / max(time.monotonic() - self.started, 1e-3)
        size = f"{format_bytes(done)}/{format_bytes(total)}" if total else format_bytes(done)
        self.status.update(done, total, f"{size} {format_bytes(rate)}/s")


def pull(args: argparse.Namespace, spec: str) -> int:
    from core.config import ConfigError, default_config_path, find_config_file, load_config
    from core.pull import PullError, check_space, configure, download, plan_pull
    from core.units import format_bytes

    config = load_config(getattr(args, "config", None))
    try:
        plan = plan_pull(config, spec, endpoint=args.endpoint)
        names = ", ".join(f.name for f in plan.files())
        say(args, f"pulling {plan.repo}: {names} ({format_bytes(plan.total())}) into {plan.dest}")
        check_space(plan)
        bar = BarPrinter(args.quiet)
        paths = {}
        for f in plan.files():
            paths[f.name] = download(plan, f, on_progress=bar)
            bar.status.note(f"{f.local_name}: {format_bytes(f.size or 0)}, verified")
    except ImportError as exc:
        print(f"loom: `loom pull` needs huggingface_hub and httpx ({exc.name} is missing): "
              "pip install 'loomd[cli]'", file=sys.stderr)
        return 1
    except PullError as exc:
        print(f"loom: {exc}", file=sys.stderr)
        return 1
    try:
        target = find_config_file(getattr(args, "config", None)) or default_config_path()
    except ConfigError:
        target = Path(args.config)
    name, role = configure(plan, paths, target, name=args.name, role=args.role, context_size=args.context_size)
    print(f"{name}: pulled {plan.repo}{':' + plan.tag if plan.tag else ''}; [models.{name}] written to {target}"
          + (f" (role {role})" if role else f" (no role: add --role coordinator to answer with it, or "
                                             f"use it by name: loom chat --model {name})"))
    tell_daemon(args, config)
    return 0


def tell_daemon(args: argparse.Namespace, config: Any) -> None:
    """The running daemon re-reads loom.toml, so the change applies without a restart."""
    from core.client import DaemonError, running_daemon

    from . import daemon_call

    daemon = running_daemon(config.data_dir)
    if daemon is None:
        return
    try:
        daemon_call(config, daemon, "admin.reload_config", {})
        say(args, f"the running daemon (pid {daemon['pid']}) re-read its configuration")
    except DaemonError as exc:
        say(args, f"could not tell the daemon ({exc}); restart it or run `loom call admin.reload_config`")


def run(args: argparse.Namespace) -> int:
    return pull(args, args.spec)
