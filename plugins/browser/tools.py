"""The browser tools. Each takes an optional ``session``; sessions never share cookies or pages."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec

from core.results import Image, Text, ToolResult
from core.tools import ToolContext, ToolError

from .readable import EXTRACT, TO_MARKDOWN, mark_untrusted

SessionName = Annotated[str | None, msgspec.Meta(
    description="Session name; each session is an isolated browser context (cookies, pages). Default: one per caller")]


def manager(ctx: ToolContext) -> Any:
    m = ctx.app.services.get("browser") if ctx.app is not None else None
    if m is None:
        raise ToolError("the browser plugin is not configured in this app")
    return m


def session_key(ctx: ToolContext, session: str | None) -> str:
    return f"{ctx.surface}:{ctx.caller}:{session or 'default'}"


async def page_markdown(page: Any, max_chars: int) -> tuple[str, bool]:
    text = await page.evaluate(TO_MARKDOWN) or ""
    return (text[:max_chars], True) if len(text) > max_chars else (text, False)


async def _page_result(m: Any, s: Any, status: int | None, max_chars: int | None = None) -> ToolResult:
    page = s.page
    title = await page.title()
    md, truncated = await page_markdown(page, max_chars or m.settings.max_chars)
    if truncated:
        md += "\n\n[… truncated]"
    info = {"url": page.url, "title": title, "status": status, "truncated": truncated, "untrusted": True}
    if s.downloads:
        info["downloads"] = list(s.downloads)
    return ToolResult(content=[Text(mark_untrusted(page.url, title, md))], structured=info)


class OpenArgs(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(description="http:// or https:// address")]
    session: SessionName = None
    max_chars: Annotated[int, msgspec.Meta(ge=100, description="Cap on the returned text")] | None = None


async def open_page(args: OpenArgs, ctx: ToolContext) -> ToolResult:
    """Open a web page and return its title and readable text as Markdown (marked as untrusted content)."""
    m = manager(ctx)
    s = await m.session(session_key(ctx, args.session))
    response = await m.goto(s, args.url)
    return await _page_result(m, s, response.status if response else None, args.max_chars)


class ClickArgs(msgspec.Struct, forbid_unknown_fields=True):
    selector: Annotated[str | None, msgspec.Meta(description="CSS selector of the element to click")] = None
    text: Annotated[str | None, msgspec.Meta(description="Or: the visible text of a link or button")] = None
    session: SessionName = None


async def _settle(m: Any, s: Any, before: str, started: float) -> int | None:
    """Wait for a navigation the action started; refuse what the guard refused. Returns its status."""
    page = s.page
    try:
        await page.wait_for_load_state("load")
    except Exception:
        pass
    response = s.last_response if s.last_response_at >= started else None
    if response is not None:
        await m.check_response(s, page.url, response)
    why = m.guard.last_refusal(since=started)
    if why and page.url != before:
        from .manager import _blank

        await _blank(page)
        raise ToolError(f"refused: {why}")
    return response.status if response is not None else None


async def click(args: ClickArgs, ctx: ToolContext) -> ToolResult:
    """Click an element of the current page (by CSS selector or visible text); returns the resulting page."""
    if not args.selector and not args.text:
        raise ToolError("give a selector or a text to click")
    m = manager(ctx)
    s = await m.session(session_key(ctx, args.session))
    locator = s.page.locator(args.selector) if args.selector else s.page.get_by_text(args.text, exact=False)
    before, started = s.page.url, time.time()
    try:
        await locator.first.click(timeout=5000)  # waits for a navigation it starts to commit
    except Exception as exc:
        raise ToolError(f"nothing to click for {args.selector or args.text!r} on {before}: "
                        f"{str(exc).splitlines()[0]}") from None
    status = await _settle(m, s, before, started)
    return await _page_result(m, s, status)


class FillArgs(msgspec.Struct, forbid_unknown_fields=True):
    selector: Annotated[str, msgspec.Meta(description="CSS selector (or name=...) of the input")]
    value: str
    submit: Annotated[bool, msgspec.Meta(description="Press Enter afterwards (submits the form)")] = False
    session: SessionName = None


async def fill(args: FillArgs, ctx: ToolContext) -> ToolResult:
    """Type a value into a form field of the current page; optionally submit the form."""
    m = manager(ctx)
    s = await m.session(session_key(ctx, args.session))
    selector = args.selector
    if selector.startswith("name="):
        selector = f'[name="{selector[5:]}"]'
    locator = s.page.locator(selector).first
    before, started = s.page.url, time.time()
    try:
        await locator.fill(args.value, timeout=5000)
        if args.submit:
            await locator.press("Enter")
    except Exception as exc:
        raise ToolError(f"cannot fill {args.selector!r} on {before}: {str(exc).splitlines()[0]}") from None
    status = await _settle(m, s, before, started)
    return await _page_result(m, s, status)


class ScreenshotArgs(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str | None, msgspec.Meta(description="Open this first; default: the current page")] = None
    full_page: bool = False
    session: SessionName = None


async def screenshot(args: ScreenshotArgs, ctx: ToolContext) -> ToolResult:
    """A PNG screenshot of the current page (or of a URL)."""
    m = manager(ctx)
    s = await m.session(session_key(ctx, args.session))
    if args.url:
        await m.goto(s, args.url)
    png = await s.page.screenshot(full_page=args.full_page, type="png")
    return ToolResult(content=[Text(f"Screenshot of {s.page.url}"), Image(png, "image/png")],
                      structured={"url": s.page.url, "bytes": len(png)})


class ExtractArgs(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str | None, msgspec.Meta(description="Open this first; default: the current page")] = None
    what: Literal["links", "tables", "all"] = "all"
    selector: Annotated[str | None, msgspec.Meta(description="Only inside this CSS selector")] = None
    session: SessionName = None


async def extract(args: ExtractArgs, ctx: ToolContext) -> dict[str, Any]:
    """The links (text, absolute URL) and tables (headers, rows) of the current page or a URL."""
    m = manager(ctx)
    s = await m.session(session_key(ctx, args.session))
    if args.url:
        await m.goto(s, args.url)
    data = await s.page.evaluate(EXTRACT, args.selector)
    if data.get("error") == "invalid":
        raise ToolError(f"{args.selector[:200]!r} is not a valid CSS selector (e.g. 'main', '#content', "
                        "'table.prices')")
    if data.get("error") == "none":
        raise ToolError(f"no element matches {args.selector[:200]!r} on {s.page.url}")
    out: dict[str, Any] = {"url": s.page.url, "untrusted": True}
    if args.what in ("links", "all"):
        out["links"] = data["links"]
    if args.what in ("tables", "all"):
        out["tables"] = data["tables"]
    return out


class CloseArgs(msgspec.Struct, forbid_unknown_fields=True):
    session: SessionName = None


async def close(args: CloseArgs, ctx: ToolContext) -> dict[str, Any]:
    """Close a browser session: its pages, cookies and storage are discarded."""
    closed = await manager(ctx).close_session(session_key(ctx, args.session))
    return {"closed": closed}
