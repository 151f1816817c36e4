"""`loom models` acts on the running daemon: what a user sees is what the daemon holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gguf_factory import write_tiny_gguf

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def daemon(tmp_path):
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "loom.toml").write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[models.tiny]\nbackend = "llama_cpp"\nfile = "{model}"\nkeep_alive = -1\ncontext_size = 128\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOOM_CONFIG": str(tmp_path / "loom.toml"),
           "LOOM_PLUGINS": "admin,models,llamacpp", "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1",
           "LOOM_LOGGING__LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", "--port", "0"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    endpoint = tmp_path / "data" / "daemon.json"
    for _ in range(300):
        if endpoint.exists():
            break
        time.sleep(0.1)
    assert endpoint.exists(), "loom serve records where it listens"
    yield env, tmp_path, proc
    proc.terminate()
    proc.wait(timeout=30)
    assert not endpoint.exists(), "the record goes away with the daemon"


def loom(env, cwd, *args):
    return subprocess.run([sys.executable, "-m", "core.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_models_commands_reach_the_daemon(daemon):
    env, cwd, proc = daemon
    loaded = loom(env, cwd, "models", "load", "tiny")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("tiny: ready on cpu") and "stays forever" in loaded.stdout
    listed = loom(env, cwd, "models")
    assert f"pid {proc.pid}" in listed.stdout and "tiny" in listed.stdout
    status = json.loads(loom(env, cwd, "models", "--json").stdout)
    tiny = next(m for m in status["models"] if m["name"] == "tiny")
    assert tiny["state"] == "ready" and tiny["until"] == "kept (keep_alive < 0)"
    local = json.loads(loom(env, cwd, "models", "--json", "--local").stdout)
    assert next(m for m in local["models"] if m["name"] == "tiny")["state"] == "unloaded"
    unloaded = loom(env, cwd, "models", "unload", "tiny", "--json")
    assert json.loads(unloaded.stdout)["unloaded"] is True
    missing = loom(env, cwd, "models", "load", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr
