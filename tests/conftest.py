"""Shared fixtures. Tests run on asyncio through anyio's built-in pytest plugin."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROUTER_CACHE = "LOOM_PLUGIN__ASSISTANT__ROUTER_CACHE"


_router_cache: str | None = None


def pytest_configure(config):
    # One router model cache for every app and `loom` subprocess of the run: models are keyed
    # by a hash of corpus, tool examples and code, so sharing is safe, and the router trains
    # once per distinct set of examples instead of once per process.
    global _router_cache
    if ROUTER_CACHE not in os.environ:
        _router_cache = os.environ[ROUTER_CACHE] = tempfile.mkdtemp(prefix="loom-test-router-")


def pytest_unconfigure(config):
    if _router_cache is not None:
        shutil.rmtree(_router_cache, ignore_errors=True)


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
        cfg.plugin.setdefault("assistant", {}).setdefault("router_cache", os.environ[ROUTER_CACHE])
        if cfg.paths.data_dir is None:
            cfg.paths = PathsConfig(data_dir=str(data_dir), cache_dir=str(data_dir / "cache"),
                                    allowed_roots=cfg.paths.allowed_roots or [str(data_dir.parent)])
        environ = {"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": ",".join(builtins) or "none", **env}
        return Loom.create(cfg, environ=environ, plugins=extra)

    return build
