"""Run the Loom daemon: MCP over streamable HTTP (default http://127.0.0.1:8765/mcp).

Prints where it listens and where the bearer token is; stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys

from . import make_app

HELP = "run the daemon: MCP over streamable HTTP"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to bind (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default: server.port, 8765; 0 picks a free one)")
    p.add_argument("--no-auth", action="store_true",
                   help="do not require the bearer token (only allowed on a loopback address)")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    from core.surfaces.http import build_http_app, is_loopback, token_path

    app = make_app(args)
    cfg = app.config.server
    host = args.host or cfg.host
    port = cfg.port if args.port is None else args.port
    auth = cfg.auth and not args.no_auth
    if not auth and not is_loopback(host):
        print(f"loom: refusing --no-auth on {host}: without the token only a loopback address is allowed",
              file=sys.stderr)
        return 2
    try:
        asgi = build_http_app(app, auth=auth, host=host)
    except ValueError as exc:
        print(f"loom: {exc}", file=sys.stderr)
        return 2
    try:
        # Bind before anything slow so clients can connect (and queue) at once.
        sock = _bind(host, port)
    except OSError as exc:
        print(f"loom: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"loom: MCP at http://{shown}:{bound}{cfg.mcp_path}", flush=True)
    if auth:
        print(f"loom: bearer token in {token_path(app.config)} (send 'Authorization: Bearer <token>')", flush=True)
    else:
        print("loom: authentication disabled (--no-auth, loopback only)", flush=True)

    import uvicorn

    config = uvicorn.Config(asgi, lifespan="on", log_level="warning", access_log=False,
                            timeout_graceful_shutdown=cfg.shutdown_grace, log_config=None)
    server = uvicorn.Server(config)
    # uvicorn turns SIGINT/SIGTERM into a graceful shutdown, then re-raises the signal
    # with the previous handler: make that a normal exit for SIGTERM.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        server.run(sockets=[sock])
    except SystemExit:
        pass
    print("loom: stopped", file=sys.stderr, flush=True)
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
