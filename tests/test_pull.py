"""`loom pull` and `loom rm` against a small fake Hugging Face Hub served on loopback: the
Hub's model API (file list with sizes and SHA-256) and its resolve URLs with HTTP Range."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.gguf_factory import write_tiny_gguf

ROOT = Path(__file__).resolve().parent.parent
REPO = "acme/Tiny-Chat-GGUF"


class FakeHub:
    """Files per repo; knobs to break a download part-way or to list a wrong checksum."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_after: int | None = None  # close the connection after this many bytes, once
        self.wrong_sha: set[str] = set()
        self.sizes: dict[str, int] = {}  # listed sizes that differ from the real ones
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep pytest's output clean
                pass

            def do_GET(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((path, self.headers.get("Range")))
                m = re.fullmatch(rf"/api/models/{REPO}(?:/revision/main)?", path)
                if m:
                    return self._json(hub.info())
                m = re.fullmatch(rf"/{REPO}/resolve/main/(.+)", path)
                if not m or m.group(1) not in hub.files:
                    self.send_response(404)
                    self.end_headers()
                    return None
                return self._file(hub.files[m.group(1)])

            def _json(self, obj):
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _file(self, data: bytes):
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(re.match(r"bytes=(\d+)-", rng).group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if hub.cut_after is not None:
                    self.wfile.write(body[:hub.cut_after])
                    self.wfile.flush()
                    hub.cut_after = None
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def info(self) -> dict:
        siblings = []
        for name, data in self.files.items():
            sha = hashlib.sha256(data).hexdigest()
            if name in self.wrong_sha:
                sha = hashlib.sha256(b"something else").hexdigest()
            size = self.sizes.get(name, len(data))
            siblings.append({"rfilename": name, "size": size,
                             "blobId": hashlib.sha1(data).hexdigest(),
                             "lfs": {"size": size, "sha256": sha, "pointerSize": 134}})
        siblings.append({"rfilename": "README.md", "size": 5, "blobId": "0" * 40})
        return {"id": REPO, "modelId": REPO, "sha": "a" * 40, "private": False, "siblings": siblings}


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("hub")
    gguf = write_tiny_gguf(d / "tiny.gguf").read_bytes()
    return {
        "Tiny-Chat-Q4_K_M.gguf": gguf + os.urandom(3 << 20),  # a real GGUF header, ~3 MiB in all
        "Tiny-Chat-Q8_0.gguf": os.urandom(1 << 16),
        "mmproj-Tiny-Chat-F16.gguf": os.urandom(1 << 15),
    }


@pytest.fixture
def hub(model_bytes):
    h = FakeHub(dict(model_bytes))
    yield h
    h.server.shutdown()


@pytest.fixture
def env(tmp_path, hub):
    e = {**os.environ, "PYTHONPATH": str(ROOT), "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1",
         "LOOM_PLUGINS": "admin,models,llamacpp",
         "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
         "HF_ENDPOINT": hub.url}
    for k in ("LOOM_CONFIG", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        e.pop(k, None)  # the fake Hub is on loopback: nothing leaves the machine
    return e


def loom(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "core.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_pull_fetches_verifies_and_configures_the_model_with_its_mmproj(env, hub, tmp_path, model_bytes):
    out = loom(env, "pull", f"{REPO}:Q4_K_M", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    dest = tmp_path / "data" / "loom" / "models" / REPO
    assert (dest / "Tiny-Chat-Q4_K_M.gguf").read_bytes() == model_bytes["Tiny-Chat-Q4_K_M.gguf"]
    assert (dest / "mmproj-Tiny-Chat-F16.gguf").exists()
    assert not (dest / "Tiny-Chat-Q8_0.gguf").exists(), "only the quantization asked for"
    assert not list(dest.glob("*.part"))
    toml = (tmp_path / "config" / "loom" / "loom.toml").read_text()
    assert "[models.tiny-chat-q4_k_m]" in toml and 'role = "vlm"' in toml and "mmproj" in toml
    assert "\r" not in out.stderr and "%" not in out.stderr, "no progress bar when stderr is not a terminal"
    listed = json.loads(loom(env, "models", "--json", "--local", cwd=tmp_path).stdout)
    entry = next(m for m in listed["models"] if m["name"] == "tiny-chat-q4_k_m")
    assert entry["estimate"] and entry["roles"] == ["vlm"]  # read from the pulled GGUF's metadata

    before = len(hub.requests)
    again = loom(env, "pull", f"{REPO}:Q4_K_M", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not [p for p, _ in hub.requests[before:] if "/resolve/" in p], "files already there are not fetched again"

    removed = loom(env, "rm", "tiny-chat-q4_k_m", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert not dest.exists() and "[models.tiny-chat-q4_k_m]" not in (tmp_path / "config/loom/loom.toml").read_text()


def test_a_broken_download_resumes_where_it_stopped(env, hub, tmp_path, model_bytes):
    hub.cut_after = 1 << 20
    first = loom(env, "pull", f"{REPO}:Q4_K_M", cwd=tmp_path)
    assert first.returncode == 1 and "run the same command again to resume" in first.stderr
    part = tmp_path / "data/loom/models" / REPO / "Tiny-Chat-Q4_K_M.gguf.part"
    assert part.stat().st_size == 1 << 20
    second = loom(env, "pull", f"{REPO}:Q4_K_M", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (f"/{REPO}/resolve/main/Tiny-Chat-Q4_K_M.gguf", f"bytes={1 << 20}-") in hub.requests
    final = part.with_name("Tiny-Chat-Q4_K_M.gguf")
    assert final.read_bytes() == model_bytes["Tiny-Chat-Q4_K_M.gguf"]


def test_a_checksum_mismatch_removes_the_file_and_says_so(env, hub, tmp_path):
    hub.wrong_sha.add("Tiny-Chat-Q8_0.gguf")
    out = loom(env, "pull", f"{REPO}:Q8_0", cwd=tmp_path)
    assert out.returncode == 1 and "checksum mismatch" in out.stderr
    dest = tmp_path / "data/loom/models" / REPO
    assert not list(dest.glob("Tiny-Chat-Q8_0*")), "a damaged file is never kept"
    assert not (tmp_path / "config/loom/loom.toml").exists(), "nothing configured for a failed pull"


def test_not_enough_disk_is_refused_before_downloading(env, hub, tmp_path):
    hub.sizes["Tiny-Chat-Q8_0.gguf"] = 1 << 50  # a petabyte: no disk here has that free
    out = loom(env, "pull", f"{REPO}:Q8_0", cwd=tmp_path)
    assert out.returncode == 1 and "not enough disk space" in out.stderr and "models_dir" in out.stderr
    assert not [p for p, _ in hub.requests if "/resolve/" in p], "nothing was downloaded"


def test_a_wrong_quantization_lists_the_ones_there(env, hub, tmp_path):
    out = loom(env, "pull", f"{REPO}:Q3_K_S", cwd=tmp_path)
    assert out.returncode == 1
    assert "Q4_K_M" in out.stderr and "Q8_0" in out.stderr and f"loom pull {REPO}:" in out.stderr
    assert "not a Hub model" in loom(env, "pull", "just-a-name", cwd=tmp_path).stderr


def test_progress_bar_on_a_terminal_has_the_real_total(env, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "core.cli", "pull", f"{REPO}:Q4_K_M"], env=env, cwd=str(tmp_path),
                          encoding="utf-8", timeout=60, dimensions=(24, 160))
    child.expect(r"100%\s+3\.\d MiB/3\.\d MiB")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_pull_tells_the_running_daemon(hub, tmp_path):
    from tests.openai_helpers import LoomDaemon

    # admin tools ask for consent; an operator allows this one (at a terminal, pull would ask y/N)
    daemon = LoomDaemon(tmp_path / "d", "admin,models,llamacpp,policy",
                        toml='[plugin.policy]\nallow = ["admin.reload_config"]\n').start()
    try:
        env = {**daemon.env, "HF_ENDPOINT": hub.url}
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            env.pop(k, None)
        out = loom(env, "pull", f"{REPO}:Q4_K_M", "--name", "tiny", "--role", "coder")
        assert out.returncode == 0, out.stderr
        assert f"the running daemon (pid {daemon.proc.pid}) re-read its configuration" in out.stderr
        listed = json.loads(loom(env, "models", "--json").stdout)  # the daemon's view
        tiny = next(m for m in listed["models"] if m["name"] == "tiny")
        assert tiny["roles"] == ["coder"] and tiny["default"] is False
        assert loom(env, "rm", "tiny").returncode == 0
        assert "tiny" not in {m["name"] for m in json.loads(loom(env, "models", "--json").stdout)["models"]}
    finally:
        assert daemon.stop() == 0


def test_the_daemons_ollama_pull_and_delete(hub, tmp_path):
    """Ollama clients pull through the daemon: the same download, progress as NDJSON."""
    import httpx

    from tests.openai_helpers import LoomDaemon

    daemon = LoomDaemon(tmp_path / "d", "admin,models,llamacpp",
                        env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": ""}).start()
    try:
        with httpx.stream("POST", daemon.base_url + "/api/pull", headers=daemon.headers, timeout=60,
                          json={"model": f"{REPO}:Q4_K_M"}) as r:
            lines = [json.loads(line) for line in r.iter_lines() if line]
        assert lines[0] == {"status": "pulling manifest"} and lines[-1]["status"] == "success", lines[-3:]
        last_progress = [ln for ln in lines if ln.get("total")][-1]
        assert last_progress["completed"] == last_progress["total"] and last_progress["digest"].startswith("sha256:")
        name = lines[-1]["model"]
        tags = daemon.get("/api/tags").json()["models"]
        assert any(m["name"].startswith(name) for m in tags)
        gone = httpx.request("DELETE", daemon.base_url + "/api/delete", headers=daemon.headers, timeout=30,
                             json={"model": name})
        assert gone.status_code == 200, gone.text
        assert not (tmp_path / "d" / "data" / "loom" / "models" / REPO).exists()
    finally:
        assert daemon.stop() == 0
