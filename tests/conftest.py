"""Shared fixtures. Tests run on asyncio through anyio's built-in pytest plugin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROUTER_CACHE = "LOOM_PLUGIN__ASSISTANT__ROUTER_CACHE"


_router_cache: str | None = None
MODEL_CACHE = "LOOM_PATHS__MODEL_CACHE"
_model_cache: str | None = None


def pytest_configure(config):
    # One router model cache for every app and `loom` subprocess of the run: models are keyed
    # by a hash of corpus, tool examples and code, so sharing is safe, and the router trains
    # once per distinct set of examples instead of once per process.
    global _router_cache, _model_cache
    if ROUTER_CACHE not in os.environ:
        _router_cache = os.environ[ROUTER_CACHE] = tempfile.mkdtemp(prefix="loom-test-router-")
    # Converted model weights (the packaged coder's Q8_0 copy) likewise: keyed by source
    # file and type, so one conversion serves the whole run.
    if MODEL_CACHE not in os.environ:
        _model_cache = os.environ[MODEL_CACHE] = tempfile.mkdtemp(prefix="loom-test-models-")


def pytest_unconfigure(config):
    for made in (_router_cache, _model_cache):
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


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
                                    model_cache=cfg.paths.model_cache or os.environ[MODEL_CACHE],
                                    allowed_roots=cfg.paths.allowed_roots or [str(data_dir.parent)])
        environ = {"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": ",".join(builtins) or "none", **env}
        return Loom.create(cfg, environ=environ, plugins=extra)

    return build


@pytest.fixture(scope="session")
def x_display(tmp_path_factory):
    """One Xvfb screen (800x600) for the whole test session.

    pyautogui opens its X connection once per process, so every module that drives the
    pointer must share one display: a second Xvfb in the same run left pyautogui half on
    each (clicks tripping the fail-safe or hanging). Modules start their own windows on it
    (``x_window``) and close them when they finish.
    """
    if shutil.which("Xvfb") is None or shutil.which("xdotool") is None:
        pytest.skip("needs Xvfb and xdotool (apt-get install -y xvfb xdotool)")
    tmp = tmp_path_factory.mktemp("xvfb")
    xauth = tmp / "xauth"
    xauth.write_text("")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    number = b""
    while not number.endswith(b"\n"):  # Xvfb writes the display number it picked, then a newline
        chunk = os.read(read, 16)
        if not chunk:
            break
        number += chunk
    os.close(read)
    if not number.strip():
        proc.kill()
        pytest.fail("Xvfb started but never reported its display number")
    display = f":{number.decode().strip()}"
    env = {**os.environ, "DISPLAY": display, "XAUTHORITY": str(xauth), "XDG_SESSION_TYPE": "x11"}
    yield SimpleNamespace(display=display, xauthority=str(xauth), env=env)
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope="module")
def x_window(x_display):
    """Start Python programs (a Tk window, say) on the shared display; they end with the module.

    ``x_window(source, *args, ready=lambda: bool)`` runs ``python -c source *args`` and waits
    up to 20 s for ``ready()``.
    """
    started: list[subprocess.Popen] = []

    def start(source: str, *args: str, ready: Callable[[], bool]) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", source, *args], env=x_display.env)
        started.append(proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not ready():
            if proc.poll() is not None:
                pytest.fail(f"the test window exited with status {proc.returncode} before it showed")
            time.sleep(0.1)
        return proc

    yield start
    for proc in started:  # gone before the next module looks at the screen
        proc.terminate()
    for proc in started:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
