"""File arguments confined to the allowed roots (``[paths] allowed_roots``).

Every plugin that takes a path from a caller goes through here, so the rule is the same
on every surface: symlinks and ``..`` are resolved first, then the real path must lie
inside a root; the error says how to allow a folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .tools import ToolError

MAX_PATH = 4096  # Linux PATH_MAX
MAX_NAME = 255  # NAME_MAX: bytes in one path component


def confine(
    path: str,
    roots: Sequence[Path],
    *,
    strict: bool = False,
    what: str = "file",
    where: str = "the allowed roots",
    error: type[ToolError] = ToolError,
) -> Path:
    """The real path of ``path``, checked to lie inside one of ``roots``.

    A relative path is taken from the first root. ``strict`` also requires it to exist.
    ``where`` and ``error`` let a plugin word the message in its own terms.
    """
    if not path or "\x00" in path:
        raise error(f"give a {what} path")
    # Longer than the OS accepts (PATH_MAX, NAME_MAX): say so rather than let a later
    # stat() raise ENAMETOOLONG at the caller. The echo is cut short too.
    if len(path) > MAX_PATH or any(len(part.encode()) > MAX_NAME for part in path.split("/")):
        raise error(f"the {what} path {path[:80]!r}... is too long (at most {MAX_PATH} characters, "
                    f"{MAX_NAME} bytes per name)")
    if not roots:
        raise error("no allowed roots are configured: set [paths] allowed_roots in loom.toml")
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = roots[0] / p
    try:
        real = p.resolve(strict=strict)
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{what} {path!r} does not exist") from None
    except (OSError, RuntimeError) as exc:
        raise error(f"cannot open {what} {path!r}: {exc}") from None
    if not any(real == r or real.is_relative_to(r) for r in roots):
        shown = ", ".join(str(r) for r in roots)
        raise error(f"{path!r} is outside {where} ({shown}); move it there or add its folder to "
                    "[paths] allowed_roots in loom.toml")
    return real


def confined_file(
    path: str,
    roots: Sequence[Path],
    *,
    max_bytes: int,
    what: str = "file",
    limit_setting: str = "",
    error: type[ToolError] = ToolError,
) -> Path:
    """Like ``confine``, for an existing regular file of at most ``max_bytes``."""
    real = confine(path, roots, strict=True, what=what, error=error)
    if not real.is_file():
        raise error(f"{path!r} is not a regular file")
    size = real.stat().st_size
    if size > max_bytes:
        hint = f" ({limit_setting})" if limit_setting else ""
        raise error(f"{path!r} is {size:,} bytes, over the {max_bytes:,}-byte limit{hint}")
    return real
