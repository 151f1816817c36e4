"""The dashboard in real headless Chromium (Playwright, Debian's /usr/bin/chromium): sign in
with the token, load a model through the API, and watch it appear on the page live. A
screenshot is saved under test-output/."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.openai_helpers import ROOT, LoomDaemon

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = LoomDaemon(tmp_path_factory.mktemp("loom-dash"), "admin,models,llamacpp,embed").start()
    yield d
    assert d.stop() == 0


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def test_page_needs_the_token_and_sets_a_strict_httponly_cookie(daemon):
    r = httpx.get(daemon.base_url + "/", timeout=10)
    assert r.status_code == 401 and 'name="token"' in r.text  # the login form, no data
    assert httpx.get(daemon.base_url + "/?token=wrong", timeout=10).status_code == 401
    r = httpx.get(daemon.base_url + f"/?token={daemon.token}", timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/"  # the token leaves the address bar
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    jar = {"loom_token": daemon.token}
    assert httpx.get(daemon.base_url + "/api/status", cookies=jar, timeout=10).status_code == 200
    # the cookie never authorizes the API or MCP, nor anything but GET
    assert httpx.get(daemon.base_url + "/v1/models", cookies=jar, timeout=10).status_code == 401
    assert httpx.post(daemon.base_url + "/mcp", cookies=jar, json={}, timeout=10).status_code == 401
    assert httpx.get(daemon.base_url + "/", headers={"Host": "evil.example"}, timeout=10).status_code == 421


def test_a_model_loaded_through_the_api_appears_live(daemon, browser):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(daemon.base_url + "/")  # the login form
    page.fill("input[name=token]", daemon.token)
    page.click("button[type=submit]")
    page.wait_for_selector("#ready.ok")
    page.wait_for_selector('#live.ok')  # the /events stream is connected
    row = page.locator('#models tr[data-model="smollm2"]')
    assert row.get_attribute("data-state") == "unloaded"

    out = daemon.openai().chat.completions.create(model="smollm2", max_tokens=4, temperature=0,
                                                  messages=[{"role": "user", "content": "hello"}])
    assert out.choices[0].message.content
    page.wait_for_selector('#models tr[data-model="smollm2"][data-state="ready"]', timeout=15000)
    cell = page.locator('#models td.keepalive[data-model="smollm2"]')
    expect(cell).to_have_text(re.compile(r"left$"), timeout=15000)
    first = cell.inner_text()
    expect(cell).not_to_have_text(first, timeout=15000)  # the countdown moves on its own
    page.wait_for_selector('#events div[data-kind="ModelLoaded"]', timeout=15000)
    assert "smollm2" in page.locator('#events div[data-kind="ModelLoaded"]').first.inner_text()
    assert page.locator('#devices .device[data-device="cpu"]').count() == 1
    assert "reserved of" in page.locator("#devices .legend").first.inner_text()
    assert "generate on smollm2" in page.locator("#queue").inner_text()

    daemon.post("/v1/embeddings", json={"model": "minilm", "input": "hi"})
    # not a tool call, but a request all the same: it shows, with its model
    page.wait_for_selector('#requests tr[data-surface="http"]:has-text("POST /v1/embeddings (minilm)")',
                           timeout=15000)

    out_dir = ROOT / "test-output"
    out_dir.mkdir(exist_ok=True)
    shot = Path(out_dir / "dashboard.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not errors, errors
    page.close()
