"""``tools.search``: find the few tools relevant to a described task.

For clients with small contexts (the ``discover`` profile lists only this tool): the
client describes what it wants to do and gets back the best matching tools with their
input schemas, ready to call. Tools are ranked by cosine similarity of sentence
embeddings from the pool's ``embed`` model (the packaged all-MiniLM-L6-v2) plus
``LEXICAL_WEIGHT`` times a word-overlap score (scaled to 0..1): MiniLM alone confuses
neighbours such as "speak" and "transcribe", which shared words separate. When no
embedding model is installed, by word overlap only, and the answer says so.

``LEXICAL_WEIGHT`` was chosen between 0 and 0.3 on a development set of 16 tasks; the
held-out set (tests/toolsearch_heldout.jsonl, SHA-256 in docs/mcp.md) was never used to
choose it. ``bench/toolsearch.py`` prints both figures.

Tool vectors are computed once per tool description (per embedding model) and kept: a
plugin enabled later has only its new tools embedded at the next search.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Annotated, Any, Literal

import anyio
import msgspec

from core.capabilities import Embed
from core.hookspecs import hookimpl
from core.profiles import SEARCH_TOOL, searchable_tools
from core.tools import Tool, ToolContext, ToolError

SERVICE = "toolsearch"
EMBED_ROLE = "embed"
LEXICAL_WEIGHT = 0.3


class SearchArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    task: Annotated[str, msgspec.Meta(min_length=1, max_length=2000,
                                      description="What you want to do, in a sentence "
                                                  "(e.g. 'read the text in a screenshot').")]
    limit: Annotated[int, msgspec.Meta(ge=1, le=20, description="How many tools to return.")] = 5


class FoundTool(msgspec.Struct, kw_only=True):
    name: str
    description: str
    score: float
    input_schema: dict[str, Any]


class SearchResult(msgspec.Struct, kw_only=True):
    task: str
    method: Literal["embedding", "lexical"]
    tools: list[FoundTool]
    note: str | None = None


def _doc_text(tool: Tool) -> str:
    """What is embedded for a tool: its name in words and the first paragraph of its description."""
    words = tool.name.replace(".", " ").replace("_", " ")
    first = tool.description.strip().split("\n\n", 1)[0]
    return f"{words}: {first}"


def _key(tool: Tool) -> str:
    return hashlib.sha1(_doc_text(tool).encode()).hexdigest()


class ToolIndex:
    """Tool vectors by description hash, per embedding model; computed on first search."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._vectors: dict[tuple[str, str], Any] = {}
        self._lock = anyio.Lock()

    async def _embed(self, model: str, texts: list[str]) -> Any:
        async with self.app.pool.use(model, Embed) as embedder:
            return await embedder.embed_array(texts)

    async def signals(self, model: str, task: str, tools: list[Tool]) -> tuple[list[float], list[float]]:
        """Per tool: the cosine similarity to ``task`` and the word-overlap score scaled to 0..1."""
        import numpy as np

        async with self._lock:  # one search embeds the missing tools; the others wait for them
            missing = [t for t in tools if (model, _key(t)) not in self._vectors]
            if missing:
                vecs = await self._embed(model, [_doc_text(t) for t in missing])
                for t, v in zip(missing, vecs, strict=True):
                    self._vectors[(model, _key(t))] = v
        query = (await self._embed(model, [task]))[0]
        matrix = np.stack([self._vectors[(model, _key(t))] for t in tools])
        cosine = matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query) + 1e-12)
        lexical = {t.name: s for s, t in rank_lexical(task, tools)}
        top = max(lexical.values()) or 1.0
        return [float(c) for c in cosine.tolist()], [lexical[t.name] / top for t in tools]

    async def rank_embedding(self, model: str, task: str, tools: list[Tool],
                             weight: float = LEXICAL_WEIGHT) -> list[tuple[float, Tool]]:
        cosine, lexical = await self.signals(model, task, tools)
        mixed = [c + weight * w for c, w in zip(cosine, lexical, strict=True)]
        return sorted(zip(mixed, tools, strict=True), key=lambda st: -st[0])


_WORD = re.compile(r"[a-z0-9]+")


def rank_lexical(task: str, tools: list[Tool]) -> list[tuple[float, Tool]]:
    """Word overlap weighted by rarity (a tiny BM25 without length normalisation)."""
    docs = [set(_WORD.findall(_doc_text(t).lower())) for t in tools]
    n = len(docs)
    query = set(_WORD.findall(task.lower()))
    out = []
    for doc, tool in zip(docs, tools, strict=True):
        score = sum(math.log(1 + n / (1 + sum(w in d for d in docs))) for w in query & doc)
        out.append((score, tool))
    return sorted(out, key=lambda st: -st[0])


async def search(args: SearchArgs, ctx: ToolContext) -> SearchResult:
    """Find the tools that fit a task: describe it in a sentence, get the best matches with
    their input schemas, then call them by name.

    Ranks every tool this connection may call (its tool profile) by meaning, using the
    embedding model. Start here when you only see this tool."""
    app = ctx.app
    tools = searchable_tools(app, ctx.extra.get("profile"))
    if not tools:
        raise ToolError("no tools to search: enable some plugins (see admin.plugins)")
    index: ToolIndex = app.services[SERVICE]
    note = None
    try:
        model = app.pool.model_for(EMBED_ROLE)
        ranked = await index.rank_embedding(model, args.task, tools)
        method: Literal["embedding", "lexical"] = "embedding"
    except ToolError as exc:  # no embed model, or it cannot load (a CapabilityError too): words still work
        ranked = rank_lexical(args.task, tools)
        method = "lexical"
        note = (f"the embedding model is not available ({exc}), so tools were matched by shared words; "
                "pip install 'loomd[embed]' for matching by meaning")
    mcp = app.services.get("mcp")
    found = [FoundTool(name=mcp.mcp_name(t.name) if mcp is not None else t.name,
                       description=t.description, score=round(float(score), 4), input_schema=t.input_schema)
             for score, t in ranked[:args.limit]]
    return SearchResult(task=args.task, method=method, tools=found, note=note)


@hookimpl
def loom_configure(config: Any, app: Any) -> None:
    app.services[SERVICE] = ToolIndex(app)


@hookimpl
def loom_register_tools(register: Any) -> None:
    register(search, name=SEARCH_TOOL, read_only=True, idempotent=True, title="Find tools for a task")
