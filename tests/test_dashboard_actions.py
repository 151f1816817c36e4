"""The dashboard as an operator uses it, in real headless Chromium (Playwright): models
loaded, pinned, unpinned and unloaded with its buttons; every request whatever surface it
came from (the HTTP API, the CLI through the daemon) with a cancel button that stops a
running one; a chat panel that streams the assistant's answer; bars scaled to the largest
model with estimates marked. Screenshots are saved under test-output/ and their pixels
checked for the elements that matter."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.conformance_plugin.entrypoint import write_dist_info
from tests.gguf_factory import write_tiny_gguf
from tests.openai_helpers import ROOT, LoomDaemon

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ACCENT = (0x3A, 0x7B, 0xD5)  # the bars' colour
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("loom-dash-actions")
    write_dist_info(base / "ep", {"clitest": "tests.cli_plugin.tools", "standin": "tests.cli_plugin.standin"})
    tiny = write_tiny_gguf(base / "tiny.gguf")
    toml = f'[models.tiny]\nbackend = "llama_cpp"\nfile = "{tiny}"\ncontext_size = 128\nkeep_alive = "10m"\n'
    d = LoomDaemon(base, "admin,models,llamacpp,clitest,standin", toml=toml,
                   env={"PYTHONPATH": f"{base / 'ep'}{os.pathsep}{ROOT}", "LOOM_DISABLE_PLUGIN_AUTOLOAD": ""}).start()
    yield d
    assert d.stop() == 0


@pytest.fixture(scope="module")
def page(daemon):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        pg = browser.new_page(viewport={"width": 1400, "height": 1200})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(daemon.base_url + f"/?token={daemon.token}")
        pg.wait_for_selector("#ready.ok")
        yield pg
        assert not errors, errors
        browser.close()


def accent_pixels(png: bytes) -> int:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    colours = img.getcolors(maxcolors=img.width * img.height) or []
    return sum(n for n, px in colours if all(abs(a - b) < 12 for a, b in zip(px, ACCENT, strict=True)))


def shot(page, selector: str, name: str) -> bytes:
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    data = page.locator(selector).screenshot()
    (out / name).write_bytes(data)
    return data


def test_the_cookie_never_authorizes_an_action_without_the_dashboard_header(daemon):
    jar = {"loom_token": daemon.token}
    url = daemon.base_url + "/api/dashboard/models/tiny/load"
    assert httpx.post(url, cookies=jar, timeout=10).status_code == 401
    assert httpx.post(url, cookies=jar, headers={"X-Loom-Dashboard": "1", "Origin": "http://evil.example"},
                      timeout=10).status_code == 403
    assert httpx.post(daemon.base_url + "/v1/embeddings", cookies=jar, headers={"X-Loom-Dashboard": "1"},
                      json={}, timeout=10).status_code == 401, "only the dashboard's own actions"


def test_load_pin_unpin_unload_with_the_buttons(daemon, page):
    row = 'tr[data-model="tiny"]'
    assert page.locator(f"{row} .est").inner_text() == "estimate", "an unloaded model's size is an estimate"
    page.click(f'{row} button[data-action="load"]')
    page.wait_for_selector(f'{row}[data-state="ready"]', timeout=30000)
    page.click(f'{row} button[data-action="pin"]')
    page.wait_for_selector(f'{row}[data-pinned="1"]', timeout=15000)
    status = daemon.get("/api/status").json()
    tiny = next(m for m in status["pool"]["models"] if m["name"] == "tiny")
    assert tiny["pinned"] is True and tiny["until"] == "pinned"
    # the device panel zooms on what is loaded: tiny is the only resident model, so all of it
    # (widths read in one go: the page redraws its panels every few seconds)
    ratio = page.wait_for_function("""() => {
        const bar = document.querySelector('#devices .device[data-device="cpu"] .bar.loaded');
        const seg = bar && bar.querySelector('span');
        return seg && seg.getBoundingClientRect().width / bar.getBoundingClientRect().width; }""",
                                   timeout=15000).json_value()
    assert ratio >= 0.98
    models_png = shot(page, "#models", "dashboard-models.png")
    assert accent_pixels(models_png) > 200, "the memory bars are drawn"
    page.click(f'{row} button[data-action="unpin"]')
    page.wait_for_selector(f'{row}[data-pinned="0"]', timeout=15000)
    page.click(f'{row} button[data-action="unload"]')
    page.wait_for_selector(f'{row}[data-state="unloaded"]', timeout=15000)
    # bars are scaled to the largest model: the packaged coder (Q8_0, context 8192, ~480 MiB)
    # fills its bar, tiny does not
    widths = page.evaluate("""() => { const w = (s) => document.querySelector(s).getBoundingClientRect().width;
        return [w('tr[data-model="smollm2-coder"] .bar span'), w('tr[data-model="tiny"] .bar span'),
                w('tr[data-model="smollm2-coder"] .bar')]; }""")
    big, small, bar = widths
    assert big >= 0.98 * bar and 0 < small < big


def test_every_request_shows_and_a_running_one_can_be_cancelled(daemon, page):
    assert daemon.get("/v1/models").status_code == 200
    page.wait_for_selector('#requests tr[data-surface="http"] >> text=GET /v1/models', timeout=15000)
    env = {**daemon.env, "LOOM_DISABLE_PLUGIN_AUTOLOAD": ""}
    done = subprocess.run([sys.executable, "-m", "core.cli", "call", "clitest.lines", "n=2"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    page.wait_for_selector('#requests tr[data-surface="mcp"][data-state="ok"] >> text=clitest.lines', timeout=15000)

    waiting = subprocess.Popen([sys.executable, "-m", "core.cli", "call", "clitest.wait", "seconds=120"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running = '#requests tr[data-state="running"]:has-text("clitest.wait")'
    page.wait_for_selector(running, timeout=20000)
    shot(page, "#requests", "dashboard-requests.png")
    started = time.monotonic()
    page.click(f"{running} button[data-cancel]")
    page.wait_for_selector('#requests tr[data-state="cancelled"]:has-text("clitest.wait")', timeout=15000)
    _, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 1 and "cancelled" in err
    assert time.monotonic() - started < 20, "cancelled, not waited out"


def test_the_chat_panel_streams_the_answer(daemon, page):
    # Record every text the answer shows, to see it grow rather than arrive at once.
    page.evaluate("""() => { window.seen = [];
      new MutationObserver(() => { const a = document.querySelectorAll('#chat-log .assistant');
        if (a.length) window.seen.push(a[a.length - 1].textContent); })
      .observe(document.querySelector('#chat-log'), {subtree: true, childList: true, characterData: true}); }""")
    page.fill("#chat-input", "hello dashboard")
    page.press("#chat-input", "Enter")
    page.wait_for_selector('#chat-log .assistant[data-done="1"]', timeout=15000)
    assert page.locator("#chat-log .assistant").last.inner_text() == "You said: hello dashboard"
    seen = [t for t in page.evaluate("window.seen") if t]
    assert "You" in seen and "You said:" in seen, f"the answer streamed in pieces: {seen}"
    chat_png = shot(page, "#chat-log", "dashboard-chat.png")
    assert len(chat_png) > 2000
    page.screenshot(path=str(ROOT / "test-output" / "dashboard-full.png"), full_page=True)
