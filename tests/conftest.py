"""Shared fixtures. Tests run on asyncio through anyio's built-in pytest plugin."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def make_app(data_dir: Path):
    """Build a ``Loom`` with only the named built-in plugins plus extra plugin objects.

    ``make_app("admin", extra={"t": module_or_object}, config=LoomConfig(...))``
    """
    from core.app import Loom
    from core.config import LoomConfig, PathsConfig

    def build(*builtins: str, extra: dict | None = None, config: LoomConfig | None = None, **env: str) -> Loom:
        cfg = config or LoomConfig()
        if cfg.paths.data_dir is None:
            cfg.paths = PathsConfig(data_dir=str(data_dir), cache_dir=str(data_dir / "cache"),
                                    allowed_roots=cfg.paths.allowed_roots or [str(data_dir.parent)])
        environ = {"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": ",".join(builtins) or "none", **env}
        return Loom.create(cfg, environ=environ, plugins=extra)

    return build
