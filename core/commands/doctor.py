"""Check what is installed for each plugin and print the command that fixes what is missing.

Plugins declare their needs in a module-level ``DOCTOR`` list of dicts:
``{"check": "module" | "binary" | "env" | "path", "name": ..., "fix": ..., "why": ...}``.

``loom doctor --security`` checks the security settings instead (docs/security.md): the
data dir's and private files' modes, the bind address and authentication, the Host and
Origin allowlists, the policy (loaded, its defaults, broad allow rules, the audit log),
connection limits and private-network URL fetching; it warns about each weak setting
and says how to fix it. With ``--strict`` any warning makes the exit status 1.
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
    p.add_argument("--strict", action="store_true", help="exit 1 when anything is missing (or, with --security, "
                   "when any setting is weak)")
    p.add_argument("--security", action="store_true",
                   help="check the security settings (modes, bind address, auth, policy) instead")


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


def _mode_row(path: Path, want: int, what: str) -> dict[str, Any] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    loose = st.st_mode & 0o077
    return {"check": what, "name": f"{path} (mode {st.st_mode & 0o777:o})", "ok": not loose,
            "fix": f"chmod {want:o} {path} (it is readable by other users; `loom serve` tightens it at start)"}


def security_report(app: Any) -> list[dict[str, Any]]:
    """One row per security check: check, name, ok, fix (see the module docstring)."""
    from core.surfaces.http import is_loopback

    cfg, server = app.config, app.config.server
    rows: list[dict[str, Any]] = []
    data_dir = cfg.data_dir
    for row in [_mode_row(data_dir, 0o700, "data dir mode"),
                *(_mode_row(data_dir / n, 0o600, "private file mode")
                  for n in ("token", "audit.jsonl", "memory.db"))]:
        if row is not None:
            rows.append(row)
    exposed = not is_loopback(server.host)
    rows.append({"check": "bind address", "name": server.host, "ok": not exposed,
                 "fix": "bind 127.0.0.1 and put a TLS-terminating reverse proxy in front for remote use "
                        "(docs/security.md, 'Running beyond loopback'); traffic to this address is plain HTTP"})
    rows.append({"check": "authentication", "name": "bearer token" if server.auth else "DISABLED",
                 "ok": server.auth, "fix": "set [server] auth = true (the default)"})
    if server.token_file:
        row = _mode_row(Path(server.token_file).expanduser(), 0o600, "token file mode")
        if row is not None:
            rows.append(row)
    rows.append({"check": "allowed hosts", "name": ", ".join(server.allowed_hosts) or "(loopback only)",
                 "ok": "*" not in server.allowed_hosts,
                 "fix": "list the exact names clients use in [server] allowed_hosts instead of '*' "
                        "('*' turns off the DNS-rebinding defence)"})
    rows.append({"check": "allowed origins", "name": ", ".join(server.allowed_origins) or "(loopback only)",
                 "ok": "*" not in server.allowed_origins,
                 "fix": "list the exact origins in [server] allowed_origins instead of '*' (any web page could "
                        "call the daemon from a browser that has the token)"})
    rows.append({"check": "connection limits",
                 "name": f"header {server.header_timeout:g} s, idle {server.idle_timeout:g} s, "
                         f"{server.max_connections} connections, {server.max_body_bytes:,}-byte bodies",
                 "ok": server.header_timeout <= 60 and server.max_connections <= 4096
                       and server.max_body_bytes <= 256 * 1024 * 1024,
                 "fix": "keep header_timeout <= 60 s, max_connections <= 4096 and max_body_bytes <= 256 MiB "
                        "(docs/operations.md)"})
    info = app.host.plugins.get("policy")
    policy = app.services.get("policy")
    active = info is not None and info.enabled and info.loaded and policy is not None
    rows.append({"check": "policy plugin", "name": "loaded" if active else "NOT LOADED", "ok": active,
                 "fix": "enable the policy plugin: without it only the kernel default applies (destructive tools "
                        "ask), with no rules and no audit log"})
    if active:
        st = policy.settings
        rows.append({"check": "policy defaults",
                     "name": f"destructive={st.destructive_default}, other={st.other_default}",
                     "ok": st.destructive_default != "allow",
                     "fix": "set [plugin.policy] destructive_default = \"ask\" (or \"deny\")"})
        broad = [p for p in st.allow if p.split(":", 1)[-1] in ("*", "*.*")
                 or p.split(":", 1)[-1].split(".")[0] in ("system", "admin")]
        rows.append({"check": "policy allow rules", "name": ", ".join(st.allow) or "(none)", "ok": not broad,
                     "fix": f"narrow these allow rules: {', '.join(broad)} (they skip consent for PC control, "
                            "plugin administration or everything)"})
        rows.append({"check": "audit log", "name": str(policy.audit_path) if st.audit else "DISABLED",
                     "ok": st.audit, "fix": "set [plugin.policy] audit = true"})
    vision = cfg.plugin.get("vision", {})
    rows.append({"check": "URL fetching", "name": "private networks allowed" if vision.get("allow_private_urls")
                 else "public addresses only", "ok": not vision.get("allow_private_urls"),
                 "fix": "set [plugin.vision] allow_private_urls = false unless models must read local-network "
                        "images (a prompt-injected URL can then reach internal services)"})
    if exposed:
        remote_risky = [n for n in ("system", "coder", "browser") if app.host.plugins.get(n) is not None
                        and app.host.plugins[n].enabled]
        rows.append({"check": "tools exposed beyond loopback", "name": ", ".join(remote_risky) or "(none)",
                     "ok": not remote_risky,
                     "fix": "disable PC control/workspace/browser plugins on an exposed daemon, or deny them for "
                            "remote surfaces in [plugin.policy] deny"})
    return rows


def _print_security(rows: list[dict[str, Any]]) -> int:
    for row in rows:
        mark = "ok  " if row["ok"] else "WARN"
        print(f"  {mark} {row['check']}: {row['name']}")
        if not row["ok"]:
            print(f"       fix: {row['fix']}")
    weak = sum(not r["ok"] for r in rows)
    print(f"{weak} weak setting(s)" if weak else "no weak settings found")
    return weak


def run(args: argparse.Namespace) -> int:
    app = make_app(args)
    if args.security:
        rows = security_report(app)
        if args.json:
            print_json(rows)
            weak = sum(not r["ok"] for r in rows)
        else:
            print("security:")
            weak = _print_security(rows)
        return 1 if args.strict and weak else 0
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
