"""Long documents: cut into overlapping passages, the ones most relevant to a question
found with the pool's embedding model (MiniLM by default), or by word overlap when no
embedding model is available (said in the result).

Embedding every passage of a 300-page PDF would take minutes on a small CPU, so past
``pool`` passages the embedder re-ranks the ``pool`` best by word overlap (BM25)
rather than all of them; passage vectors are cached by content, so a second question
about the same document embeds only the question.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from core.logging import get_logger

from .readers import Document

log = get_logger("loom.document")

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Passage:
    doc: Document
    index: int  # order in the document
    label: str  # where it is: "p. 3", "section 'Results'"
    text: str
    score: float = 0.0


def passages(doc: Document, size: int, overlap: int) -> list[Passage]:
    """Segments cut to at most ``size`` characters, at line or sentence breaks where possible."""
    out: list[Passage] = []
    for seg in doc.segments:
        text = seg.text
        start = 0
        while start < len(text):
            end = min(len(text), start + size)
            if end < len(text):
                cut = max(text.rfind("\n", start + size // 2, end), text.rfind(". ", start + size // 2, end))
                if cut > start:
                    end = cut + 1
            piece = text[start:end].strip()
            if piece:
                out.append(Passage(doc, len(out), seg.label, piece))
            if end >= len(text):
                break
            start = max(end - overlap, start + 1)
    return out


_VECTORS: OrderedDict[str, Any] = OrderedDict()  # passage text digest -> unit vector
_MAX_VECTORS = 20_000


async def rank(app: Any, question: str, items: list[Passage], pool: int = 48) -> str:
    """Score ``items`` against ``question`` in place; returns how ("embeddings (minilm)" or "word overlap")."""
    if not items:
        return "nothing to rank"
    _lexical(question, items)
    model = _embed_model(app)
    if model is None:
        return "word overlap (no embedding model available)"
    candidates = items if len(items) <= pool else sorted(items, key=lambda p: -p.score)[:pool]
    try:
        sims = await _similarities(app, model, question, [p.text for p in candidates])
    except Exception as exc:  # word overlap stands: retrieval must not break reading
        log.warning("document retrieval fell back to word overlap", model=model, error=repr(exc))
        return f"word overlap (the embedding model failed: {exc})"
    floor = min(float(s) for s in sims) - 1.0  # passages not re-ranked stay below every candidate
    for p in items:
        p.score = floor
    for p, s in zip(candidates, sims, strict=True):
        p.score = float(s)
    how = f"embeddings ({model})"
    return how if len(candidates) == len(items) else f"{how} over the {pool} best of {len(items)} by word overlap"


async def _similarities(app: Any, model: str, question: str, texts: list[str]) -> Any:
    import numpy as np

    keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
    new = {k: t for t, k in zip(texts, keys, strict=True) if k not in _VECTORS}  # repeated passages once
    from core.capabilities import Embed

    async with app.pool.use(model, Embed, reason="document retrieval") as embedder:
        vecs = np.array(await embedder.embed_array([question, *new.values()]), np.float32)  # a writable copy
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    _VECTORS.update(zip(new, vecs[1:], strict=True))
    for k in keys:
        _VECTORS.move_to_end(k)
    out = np.stack([_VECTORS[k] for k in keys]) @ vecs[0]
    while len(_VECTORS) > _MAX_VECTORS:
        _VECTORS.popitem(last=False)
    return out


def _embed_model(app: Any) -> str | None:
    try:
        return app.pool.model_for("embed")
    except Exception:
        return None


def _lexical(question: str, items: list[Passage]) -> None:
    """BM25 over the passages."""
    docs = [Counter(w.lower() for w in _WORD.findall(p.text)) for p in items]
    n = len(docs)
    avg = sum(sum(d.values()) for d in docs) / max(n, 1)
    df = Counter(w for d in docs for w in d)
    q = {w.lower() for w in _WORD.findall(question) if len(w) > 2}
    for p, d in zip(items, docs, strict=True):
        length = sum(d.values())
        score = 0.0
        for w in q:
            if w in d:
                idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                tf = d[w]
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / max(avg, 1)))
        p.score = score


def select(items: list[Passage], budget: int, top_k: int) -> list[Passage]:
    """The best passages that fit ``budget`` characters (at most ``top_k``), in document order."""
    chosen: list[Passage] = []
    used = 0
    for p in sorted(items, key=lambda p: -p.score):
        if len(chosen) >= top_k:
            break
        if used + len(p.text) > budget:
            continue
        chosen.append(p)
        used += len(p.text)
    return sorted(chosen, key=lambda p: p.index)
