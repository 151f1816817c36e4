"""``tools.search``: find the few tools relevant to a described task.

For clients with small contexts (the ``discover`` profile lists only this tool): the
client describes what it wants to do and gets back the best matching tools with their
input schemas, ready to call.

What is indexed per tool: its name and the first paragraph of its description, and
example requests (the tool's own ``examples``, declared at registration, and for the
built-in tools ``examples.toml`` beside this module). A tool's score is the mean of two
cosine similarities of sentence embeddings from the pool's ``embed`` model (the packaged
all-MiniLM-L6-v2): task to description, and task to the tool's closest example; plus
``LEXICAL_WEIGHT`` times a word-overlap score with the description (rarity-weighted,
scaled to 0..1), because MiniLM alone confuses neighbours such as "speak" and
"transcribe", which shared words separate. When no embedding model is installed, by word
overlap only, and the answer says so. MiniLM is an English model: requests in other
languages match mostly by shared words (names, cognates), so they rank worse.

How examples count (not at all, max or mean), whether words read the examples too and
the weight were chosen on a development set of 46 tasks (tests/toolsearch_dev.jsonl),
with a leave-one-out check; the held-out set (tests/toolsearch_heldout.jsonl, SHA-256 in
docs/mcp.md) was never used to choose anything. ``bench/toolsearch.py`` prints both.

Vectors are computed once per text (per embedding model) and kept: a plugin enabled
later has only its new tools embedded at the next search.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import msgspec

from core.capabilities import Embed
from core.hookspecs import hookimpl
from core.profiles import SEARCH_TOOL, searchable_tools
from core.tools import Tool, ToolContext, ToolError

SERVICE = "toolsearch"
EMBED_ROLE = "embed"
# Chosen on the development set (bench/toolsearch.py prints every configuration): the mean
# of the description's and the best example's cosine, plus 0.2 x word overlap with the description.
EXAMPLE_MODE = "mean"
WORDS_OVER_EXAMPLES = False
LEXICAL_WEIGHT = 0.2


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


@functools.cache
def packaged_examples() -> dict[str, tuple[str, ...]]:
    """Example requests for the built-in tools (``examples.toml`` beside this module)."""
    with (Path(__file__).parent / "examples.toml").open("rb") as f:
        data = tomllib.load(f)
    return {name: tuple(v) for name, v in data.get("examples", {}).items()}


def tool_examples(tool: Tool) -> tuple[str, ...]:
    """The tool's own ``examples`` (declared at registration) and the packaged ones for it."""
    return tuple(dict.fromkeys((*tool.examples, *packaged_examples().get(tool.name, ()))))


def _key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class Signals(msgspec.Struct):
    """Per tool: cosine of the task to the description, best cosine to an example (the
    description's when it has none), and word overlap (0..1) with the description alone and
    with the description and examples."""

    description: list[float]
    example: list[float]
    words: list[float]
    words_examples: list[float]

    def scores(self, weight: float = LEXICAL_WEIGHT, mode: str = EXAMPLE_MODE,
               words_examples: bool = WORDS_OVER_EXAMPLES) -> list[float]:
        """``mode``: "description" (examples unused), "max" or "mean" of the description's and
        the best example's cosine; plus ``weight`` times the word overlap."""
        words = self.words_examples if words_examples else self.words
        if mode == "description":
            meaning = self.description
        elif mode == "max":
            meaning = [max(d, e) for d, e in zip(self.description, self.example, strict=True)]
        else:
            meaning = [(d + e) / 2 for d, e in zip(self.description, self.example, strict=True)]
        return [m + weight * w for m, w in zip(meaning, words, strict=True)]


class ToolIndex:
    """Vectors of tool descriptions and examples by text hash, per embedding model; computed
    on first search."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._vectors: dict[tuple[str, str], Any] = {}
        self._lock = anyio.Lock()

    async def _embed(self, model: str, texts: list[str]) -> Any:
        async with self.app.pool.use(model, Embed) as embedder:
            return await embedder.embed_array(texts)

    async def _unit(self, model: str, texts: list[str]) -> Any:
        import numpy as np

        vecs = np.asarray(await self._embed(model, texts), dtype=np.float32)
        return vecs / (np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12)

    async def signals(self, model: str, task: str, tools: list[Tool]) -> Signals:
        import numpy as np

        docs = [_doc_text(t) for t in tools]
        examples = [tool_examples(t) for t in tools]
        async with self._lock:  # one search embeds the missing texts; the others wait for them
            wanted = dict.fromkeys([*docs, *(e for ex in examples for e in ex)])
            missing = [t for t in wanted if (model, _key(t)) not in self._vectors]
            if missing:
                for text, v in zip(missing, await self._unit(model, missing), strict=True):
                    self._vectors[(model, _key(text))] = v
        query = (await self._unit(model, [task]))[0]

        def cos(text: str) -> float:
            return float(np.dot(self._vectors[(model, _key(text))], query))

        described = [cos(d) for d in docs]
        best = [max((cos(e) for e in ex), default=d) for ex, d in zip(examples, described, strict=True)]
        words = _scaled(rank_lexical(task, tools), tools)
        words_ex = _scaled(rank_lexical(task, tools, with_examples=True), tools)
        return Signals(described, best, words, words_ex)

    async def rank_embedding(self, model: str, task: str, tools: list[Tool]) -> list[tuple[float, Tool]]:
        scores = (await self.signals(model, task, tools)).scores()
        return sorted(zip(scores, tools, strict=True), key=lambda st: -st[0])


def _scaled(ranked: list[tuple[float, Tool]], tools: list[Tool]) -> list[float]:
    by_name = {t.name: s for s, t in ranked}
    top = max(by_name.values(), default=0.0) or 1.0
    return [by_name[t.name] / top for t in tools]


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    """Lower-case words, light suffix stripping so "videos"/"video" and "typing"/"type" meet."""
    out = set()
    for w in _WORD.findall(text.lower()):
        for suffix in ("ing", "es", "s", "ed"):
            if len(w) > len(suffix) + 3 and w.endswith(suffix):
                w = w[: -len(suffix)]
                break
        out.add(w)
    return out


def rank_lexical(task: str, tools: list[Tool], *, with_examples: bool = False) -> list[tuple[float, Tool]]:
    """Word overlap weighted by rarity (a tiny BM25 without length normalisation)."""
    docs = [_words(" ".join((_doc_text(t), *(tool_examples(t) if with_examples else ())))) for t in tools]
    n = len(docs)
    query = _words(task)
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
        ranked = rank_lexical(args.task, tools, with_examples=True)
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
