"""browser.research: visit pages, collect the passages that match a question, answer with citations."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any
from urllib.parse import quote_plus, urlsplit

import msgspec

from core.capabilities import Chat
from core.logging import get_logger
from core.results import Text, ToolResult
from core.tools import ToolContext, ToolError

from .readable import EXTRACT, UNTRUSTED_NOTE
from .tools import SessionName, manager, page_markdown, session_key

log = get_logger("loom.browser.research")

_WORD = re.compile(r"[a-z0-9]+")
_STOP = set("""a an and are as at be by can do does for from has have how i in is it its of on or that the this to
was what when where which who why will with you your about into than then there these they""".split())


class ResearchArgs(msgspec.Struct, forbid_unknown_fields=True):
    question: Annotated[str, msgspec.Meta(min_length=3, description="What to find out")]
    urls: Annotated[list[str], msgspec.Meta(description="Pages to start from; default: the configured search URL")] = []
    max_pages: Annotated[int, msgspec.Meta(ge=1, le=20, description="Pages to visit at most")] | None = None
    follow_links: Annotated[bool, msgspec.Meta(description="Also visit the most relevant links found")] = True
    session: SessionName = None


def _stem(w: str) -> str:
    for suffix in ("ing", "est", "es", "ed", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def terms(text: str) -> list[str]:
    text = re.sub(r"\]\([^)]*\)", "]", text)  # a Markdown link counts by its text, not its URL
    return [_stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _STOP]


def passages(markdown: str, size: int = 600) -> list[str]:
    """Paragraph-sized chunks (headings kept with the text under them)."""
    out: list[str] = []
    heading = ""
    for block in re.split(r"\n\s*\n", markdown):
        block = block.strip()
        if not block:
            continue
        if block.startswith("#") and "\n" not in block:
            heading = block.lstrip("# ")
            continue
        text = f"{heading}: {block}" if heading else block
        while len(text) > size:
            cut = text.rfind(". ", 0, size)
            cut = cut + 1 if cut > size // 3 else size
            out.append(text[:cut].strip())
            text = text[cut:].strip()
        if text:
            out.append(text)
    return out


def score(question: list[str], text: str) -> float:
    words = terms(text)
    if not words:
        return 0.0
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    hits = [q for q in set(question) if q in counts]
    return len(hits) + 0.3 * sum(math.log1p(counts[q]) for q in hits) - 0.001 * len(words)


async def research(args: ResearchArgs, ctx: ToolContext) -> ToolResult:
    """Research a question: visit the start URLs (or search), collect matching passages, answer citing the URLs."""
    m = manager(ctx)
    limit = args.max_pages or m.settings.max_pages
    queue = list(dict.fromkeys(args.urls))
    if not queue:
        if not m.settings.search_url:
            raise ToolError("searching is turned off ([plugin.browser] search_url = \"\"): give start URLs, "
                            "or set search_url to a search page with {query} in it")
        queue = [m.settings.search_url.replace("{query}", quote_plus(args.question))]
        from_search = True
    else:
        from_search = False
    q = terms(args.question)
    s = await m.session(session_key(ctx, args.session or "research"))
    visited: list[dict[str, Any]] = []
    found: list[tuple[float, str, str]] = []  # (score, url, passage)
    seen: set[str] = set()
    errors: list[str] = []
    i = 0
    while queue and len(visited) < limit:
        url = queue.pop(0)
        if url.split("#")[0] in seen:
            continue
        seen.add(url.split("#")[0])
        i += 1
        await ctx.progress(len(visited), limit, f"visiting {url}")
        try:
            await m.goto(s, url)
        except ToolError as exc:
            errors.append(str(exc))
            continue
        title = await s.page.title()
        md, _ = await page_markdown(s.page, 100_000)
        is_search = from_search and i == 1
        if not is_search:
            visited.append({"url": s.page.url, "title": title})
            for p in passages(md):
                found.append((score(q, p), s.page.url, p))
        if args.follow_links or is_search:
            links = (await s.page.evaluate(EXTRACT, None))["links"]
            host = urlsplit(s.page.url).hostname
            ranked = sorted(
                (lk for lk in links if lk["url"].split("#")[0] not in seen and
                 (is_search or urlsplit(lk["url"]).hostname == host)),
                key=lambda lk: -score(q, lk["text"] + " " + lk["url"]))
            queue.extend(lk["url"] for lk in ranked[: limit] if is_search or score(q, lk["text"]) > 0)
    if not visited:
        raise ToolError("no page could be read: " + ("; ".join(errors) or "nothing to visit"))
    found.sort(key=lambda f: -f[0])
    best = [f for f in found if f[0] > 0][:6] or found[:3]
    sources: list[str] = []
    for _, url, _ in best:
        if url not in sources:
            sources.append(url)
    numbered = [(sources.index(url) + 1, url, p) for _, url, p in best]
    answer, model = await _answer(ctx, m, args.question, numbered)
    titles = {v["url"]: v["title"] for v in visited}
    lines = [answer.strip(), "", "Sources:"]
    lines += [f"[{n}] {url}" + (f" — {titles[url]}" if titles.get(url) else "") for n, url in enumerate(sources, 1)]
    structured = {
        "question": args.question, "answer": answer.strip(), "model": model,
        "sources": [{"n": n, "url": url, "title": titles.get(url, "")} for n, url in enumerate(sources, 1)],
        "passages": [{"n": n, "url": url, "text": p} for n, url, p in numbered],
        "visited": visited, "errors": errors, "untrusted": True,
    }
    await ctx.progress(limit, limit, "answered")
    return ToolResult(content=[Text("\n".join(lines))], structured=structured)


async def _answer(ctx: ToolContext, m: Any, question: str, numbered: list[tuple[int, str, str]]) -> tuple[str, Any]:
    """The coordinator model's answer from the passages; without a model, the passages themselves."""
    context = "\n\n".join(f"[{n}] ({url})\n{p}" for n, url, p in numbered)
    try:
        pool = ctx.app.pool
        name = m.settings.model or pool.model_for("coordinator")
    except (ImportError, ToolError, AttributeError) as exc:
        log.info("research without a model", reason=str(exc))
        best = "\n".join(f"- {p} [{n}]" for n, _, p in numbered[:3])
        return (f"No coordinator model is available ({exc}), so here are the most relevant passages:\n{best}", None)
    messages = [
        {"role": "system", "content": "You answer questions using only the numbered passages from web pages. "
                                      "Cite the passages you use like [1]. If they do not contain the answer, "
                                      "say so. " + UNTRUSTED_NOTE.replace("<untrusted-content> tags",
                                                                          "passages")},
        {"role": "user", "content": f"Passages:\n<untrusted-content>\n{context}\n</untrusted-content>\n\n"
                                    f"Question: {question}\nAnswer briefly, with citations."},
    ]
    async with pool.use(name, Chat) as chat:
        result = await chat.complete(messages, max_tokens=256, temperature=0.1, cancel=ctx.cancelled)
    text = result.text.strip() or "The model gave no answer."
    if not re.search(r"\[\d+\]", text):
        text += " [" + "][".join(str(n) for n in sorted({n for n, _, _ in numbered[:2]})) + "]"
    return text, name
