"""Structured logging: structlog to stderr only (stdout may carry JSON-RPC).

JSON lines when stderr is not a terminal, readable console output when it is. The
request's correlation id is bound per request with ``bind_request`` and appears on
every line logged while the request runs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _import_structlog() -> Any:
    """Import structlog without letting it import rich.

    ``structlog``'s package import pulls in ``structlog.dev``, which imports rich (when
    installed) for pretty tracebacks: about 40 ms of every start of ``loom serve``,
    ``loom mcp`` and ``loom tools``. Loom never renders tracebacks with rich: the
    ``format_exc_info`` processor turns them into plain text before any renderer runs.
    So rich is hidden while structlog loads, and importable again right after.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes ``import rich`` raise ImportError
    try:
        import structlog
    finally:
        if sys.modules.get("rich", False) is None:
            del sys.modules["rich"]
    return structlog


structlog = _import_structlog()

_configured = False


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Set up structlog once. ``fmt`` is ``json``, ``console`` or ``auto`` (by tty)."""
    global _configured
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that use the stdlib logger (uvicorn, mcp) go to stderr too.
    logging.basicConfig(stream=sys.stderr, level=max(numeric, logging.WARNING), force=True)
    _configured = True


def get_logger(name: str) -> Any:
    if not _configured:
        configure()
    return structlog.get_logger(name)


@contextmanager
def bind_request(correlation_id: str, **extra: Any) -> Iterator[None]:
    """Bind the correlation id (and more) to every log line inside the block."""
    tokens = structlog.contextvars.bind_contextvars(correlation_id=correlation_id, **extra)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
