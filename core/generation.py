"""Helpers shared by the tools that generate media (imagegen, video, and third-party plugins).

Seeds (random when omitted, always reported), size and step limits that say which setting
to raise, output files under the data dir written atomically, and the model for a role or
a ToolError that shows what to add to loom.toml.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from .tools import ToolError

MAX_SEED = 2**32 - 1


def new_seed(seed: int | None) -> int:
    if seed is None:
        return secrets.randbelow(MAX_SEED + 1)
    if not 0 <= seed <= MAX_SEED:
        raise ToolError(f"seed must be between 0 and {MAX_SEED}, got {seed}")
    return seed


def check_size(width: int, height: int, step: int, limits: Any, what: str = "image",
               section: str = "plugin.imagegen") -> None:
    """Refuse sizes the model cannot take or the operator's limits forbid, saying how to fix it.

    ``limits`` has ``max_width``, ``max_height`` and ``max_pixels`` (the plugin's settings)."""
    if width < step or height < step:
        raise ToolError(f"{what} size {width}x{height} is too small: at least {step}x{step}")
    if width % step or height % step:
        raise ToolError(f"{what} width and height must be multiples of {step} for this model, got {width}x{height} "
                        f"(e.g. {width // step * step or step}x{height // step * step or step})")
    if width > limits.max_width or height > limits.max_height:
        raise ToolError(f"{what} size {width}x{height} is over the limit of {limits.max_width}x{limits.max_height}; "
                        f"raise max_width/max_height under [{section}] in loom.toml to allow it")
    if width * height > limits.max_pixels:
        raise ToolError(f"{what} size {width}x{height} is {width * height:,} pixels, over the limit of "
                        f"{limits.max_pixels:,}; raise max_pixels under [{section}] in loom.toml")


def check_steps(steps: int, limits: Any, section: str = "plugin.imagegen") -> None:
    if steps < 1:
        raise ToolError(f"steps must be at least 1, got {steps}")
    if steps > limits.max_steps:
        raise ToolError(f"{steps} steps is over the limit of {limits.max_steps}; raise max_steps under "
                        f"[{section}] in loom.toml to allow more")


def outputs_dir(app: Any) -> Path:
    out = Path(app.config.data_dir) / "outputs"
    out.mkdir(parents=True, exist_ok=True)
    return out


def output_path(app: Any, prefix: str, seed: int, suffix: str) -> Path:
    """A new file name under ``<data_dir>/outputs``: prefix, time, seed and a random tag."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return outputs_dir(app) / f"{prefix}-{stamp}-{seed}-{secrets.token_hex(3)}{suffix}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to ``<path>.part`` then rename: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def model_or_hint(app: Any, role: str, explicit: str | None, hint: str) -> str:
    """The model to use: the one named, or the pool's model for ``role``, or a ModelUnavailable
    whose message (``hint``) says what to put in loom.toml."""
    from .pool import ModelUnavailable

    pool = app.pool
    if explicit:
        pool.config_for(explicit)  # ModelUnavailable naming the known models
        return explicit
    try:
        return pool.model_for(role)
    except ModelUnavailable:
        raise ModelUnavailable(hint) from None
