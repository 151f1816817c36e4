"""browser.open of a local page, cold (browser start included) and warm, vs a raw Playwright script.

Prints the figures and the warm ratio (target <= 1.2; exits 1 on a miss). Both sides use
Debian's Chromium with the same flags and the same text extraction; Loom's side adds its guard
proxy, the session context and the tool registry (validation, events, policy hook). The sides
alternate which goes first in each round (each round starts a fresh browser on both sides).

    .venv/bin/python bench/browser.py [--runs 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PAGE = b"""<html><head><title>Bench page</title></head><body><main><h1>Bench</h1>
""" + b"".join(b"<p>Paragraph %d with a <a href='/x%d'>link</a>.</p>" % (i, i) for i in range(50)) + b"""
<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table></main></body></html>"""


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


async def raw(url: str, runs: int) -> tuple[float, list[float]]:
    from playwright.async_api import async_playwright

    from plugins.browser.manager import FLAGS
    from plugins.browser.readable import TO_MARKDOWN

    t0 = time.perf_counter()
    pw = await async_playwright().start()
    browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)
    context = await browser.new_context()
    page = await context.new_page()

    async def once() -> None:
        await page.goto(url, wait_until="load")
        await page.title()
        await page.evaluate(TO_MARKDOWN)

    await once()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(runs):
        t = time.perf_counter()
        await once()
        warm.append(time.perf_counter() - t)
    await browser.close()
    await pw.stop()
    return cold, warm


async def loom(url: str, runs: int) -> tuple[float, list[float]]:
    from core.app import Loom
    from core.config import LoomConfig, PathsConfig

    data = tempfile.mkdtemp(prefix="loom-bench-")
    cfg = LoomConfig(plugin={"browser": {"allow_loopback": True}}, paths=PathsConfig(data_dir=data))
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "browser,policy"},
                      configure_logs=False)
    async with app:
        t0 = time.perf_counter()
        await app.call("browser.open", {"url": url})
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(runs):
            t = time.perf_counter()
            await app.call("browser.open", {"url": url})
            warm.append(time.perf_counter() - t)
    return cold, warm


TARGET_WARM_RATIO = 1.2


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20, help="warm opens per side per round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/page"
    results: dict[str, tuple[list[float], list[float]]] = {"raw": ([], []), "loom": ([], [])}
    for rnd in range(args.rounds):
        # Alternate the order so neither side always runs on a warmer page cache / quieter box.
        order = [("raw", raw), ("loom", loom)]
        for name, fn in (order if rnd % 2 == 0 else order[::-1]):
            cold, warm = asyncio.run(fn(url, args.runs))
            results[name][0].append(cold)
            results[name][1].extend(warm)
    server.shutdown()
    rc, lc = statistics.median(results["raw"][0]), statistics.median(results["loom"][0])
    rw, lw = statistics.median(results["raw"][1]), statistics.median(results["loom"][1])
    ratio = lw / rw
    print(f"raw playwright (baseline): cold median {rc * 1000:.0f} ms, warm median {rw * 1000:.1f} ms")
    print(f"loom browser.open: cold median {lc * 1000:.0f} ms, warm median {lw * 1000:.1f} ms")
    print(f"cold ratio {lc / rc:.2f}; warm ratio {ratio:.2f} (target <= {TARGET_WARM_RATIO})")
    if ratio > TARGET_WARM_RATIO:
        print(f"MISSED: warm ratio {ratio:.2f} > {TARGET_WARM_RATIO}")
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
