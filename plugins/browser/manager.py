"""One lazily started Chromium per app, a fresh context per session, closed when idle."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from core.logging import get_logger
from core.tools import ToolError

from .guard import AddressGuard, GuardProxy, Refused

log = get_logger("loom.browser")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class BrowserSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.browser]``."""

    executable: str = "/usr/bin/chromium"  # Debian's chromium; Playwright's own download is never used
    extra_args: list[str] = []
    allow_loopback: bool = False  # 127.0.0.0/8, ::1
    allow_private: bool = False  # 10/8, 172.16/12, 192.168/16, link-local, other non-public ranges
    allow_hosts: list[str] = []  # host names, addresses or CIDRs allowed even when not public
    download_dir: str | None = None  # default: <data_dir>/browser/downloads
    idle_timeout: float = 300.0  # close the browser after this many idle seconds
    session_idle_timeout: float = 600.0  # drop a session's context after this many idle seconds
    navigation_timeout: float = 20.0
    max_chars: int = 20000  # page text returned by browser.open
    # browser.research without start URLs searches here ({query} is the question); "" turns
    # searching off (research then needs start URLs). DuckDuckGo's HTML page needs no key.
    search_url: str = "https://html.duckduckgo.com/html/?q={query}"
    model: str | None = None  # the model browser.research answers with; default: the coordinator role
    max_pages: int = 6


@dataclass
class Session:
    context: Any
    page: Any
    last_used: float = field(default_factory=time.monotonic)
    downloads: list[str] = field(default_factory=list)
    last_response: Any = None  # the main frame's latest document response
    last_response_at: float = 0.0


class BrowserManager:
    def __init__(self, settings: BrowserSettings, data_dir: Path) -> None:
        self.settings = settings
        self.guard = AddressGuard(allow_loopback=settings.allow_loopback, allow_private=settings.allow_private,
                                  allow_hosts=settings.allow_hosts)
        self.downloads = Path(settings.download_dir or Path(data_dir) / "browser" / "downloads").expanduser()
        self.sessions: dict[str, Session] = {}
        self._pw: Any = None
        self._browser: Any = None
        self._proxy: GuardProxy | None = None
        self._lock = asyncio.Lock()
        self._last_used = time.monotonic()
        self._reaper: asyncio.Task[None] | None = None
        self.launches = 0

    @property
    def running(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    async def _start(self) -> Any:
        try:
            from playwright.async_api import async_playwright
        except ImportError:
            raise ToolError("the browser plugin needs Playwright: pip install 'loomd[browser]' "
                            "(then apt-get install -y chromium; never `playwright install`)") from None
        exe = Path(self.settings.executable)
        if not exe.is_file():  # noqa: ASYNC240 - one stat at launch
            raise ToolError(f"no Chromium at {exe}: apt-get install -y chromium, or set "
                            "[plugin.browser] executable to the browser's path")
        self._proxy = GuardProxy(self.guard)
        port = await self._proxy.start()
        self.downloads.mkdir(parents=True, exist_ok=True)
        self._pw = await async_playwright().start()
        try:
            self._browser = await self._pw.chromium.launch(
                executable_path=str(exe), headless=True, downloads_path=str(self.downloads),
                args=[*FLAGS, f"--proxy-server=http://127.0.0.1:{port}", "--proxy-bypass-list=<-loopback>",
                      *self.settings.extra_args],
            )
        except Exception as exc:
            await self._stop()
            raise ToolError(f"Chromium at {exe} did not start: {str(exc).splitlines()[0]}") from None
        self.launches += 1
        log.info("browser started", executable=str(exe), proxy_port=port)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
        return self._browser

    async def session(self, key: str) -> Session:
        """The session's page, starting the browser and a fresh context as needed."""
        async with self._lock:
            self._last_used = time.monotonic()
            if not self.running:
                self.sessions.clear()
                await self._stop()
                await self._start()
            s = self.sessions.get(key)
            if s is None or s.page.is_closed():
                context = await self._browser.new_context(accept_downloads=True, service_workers="block")
                context.set_default_navigation_timeout(self.settings.navigation_timeout * 1000)
                context.set_default_timeout(self.settings.navigation_timeout * 1000)
                page = await context.new_page()
                s = Session(context, page)
                page.on("download", lambda d, s=s: asyncio.ensure_future(self._save_download(s, d)))
                page.on("response", lambda r, s=s: _track(s, r))
                self.sessions[key] = s
            s.last_used = time.monotonic()
            return s

    async def _save_download(self, s: Session, download: Any) -> None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", download.suggested_filename or "download").lstrip(".") or "download"
        target = (self.downloads / name).resolve()
        if self.downloads.resolve() not in target.parents:
            return
        try:
            await download.save_as(str(target))
            s.downloads.append(str(target))
        except Exception as exc:
            log.warning("download failed", name=name, error=str(exc))

    async def close_session(self, key: str) -> bool:
        s = self.sessions.pop(key, None)
        if s is not None:
            with contextlib.suppress(Exception):
                await s.context.close()
        return s is not None

    async def _reap(self) -> None:
        """Close idle sessions, and the whole browser when nothing used it for idle_timeout."""
        try:
            while self._browser is not None:
                await asyncio.sleep(min(self.settings.idle_timeout, self.settings.session_idle_timeout, 30) / 2)
                now = time.monotonic()
                for key, s in list(self.sessions.items()):
                    if now - s.last_used > self.settings.session_idle_timeout:
                        await self.close_session(key)
                if now - self._last_used > self.settings.idle_timeout and not self._lock.locked():
                    log.info("browser idle: closing it")
                    await self._stop()
        except asyncio.CancelledError:
            pass

    async def _stop(self) -> None:
        for key in list(self.sessions):
            await self.close_session(key)
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.close()
            self._browser = None
        if self._pw is not None:
            with contextlib.suppress(Exception):
                await self._pw.stop()
            self._pw = None
        if self._proxy is not None:
            await self._proxy.close()
            self._proxy = None

    async def close(self) -> None:
        """Shut everything down (loom_shutdown)."""
        if self._reaper is not None and self._reaper is not asyncio.current_task():
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reaper
        self._reaper = None
        await self._stop()

    # -- navigation ---------------------------------------------------------------------

    async def goto(self, s: Session, url: str) -> Any:
        """Navigate after checking the URL; refusals (redirect hops included) become ToolErrors."""
        try:
            host, port = self.guard.check_url(url)
            await self.guard.resolve(host, port)
        except Refused as exc:
            raise ToolError(f"refused {url}: {exc}") from None
        started = time.time()
        try:
            response = await s.page.goto(url, wait_until="load")
        except Exception as exc:
            why = self.guard.last_refusal(since=started)
            await _blank(s.page)
            if why:
                raise ToolError(f"refused {url}: {why}") from None
            raise ToolError(f"could not open {url}: {str(exc).splitlines()[0]}") from None
        await self.check_response(s, url, response)
        return response

    async def check_response(self, s: Session, url: str, response: Any) -> None:
        refused = response.headers.get("x-loom-refused") if response is not None else None
        if refused:
            await _blank(s.page)
            raise ToolError(f"refused {url} (via {response.url}): {refused}")


def _track(s: Session, response: Any) -> None:
    try:
        if response.request.is_navigation_request() and response.frame == s.page.main_frame:
            s.last_response, s.last_response_at = response, time.time()
    except Exception:
        pass


async def _blank(page: Any) -> None:
    with contextlib.suppress(Exception):
        await page.goto("about:blank")
