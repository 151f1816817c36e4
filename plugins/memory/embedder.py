"""Where memory gets its sentence embeddings.

``[plugin.memory] embedder``:

- ``"auto"`` (default): the pool's ``embed`` model (the packaged all-MiniLM-L6-v2 that
  ``plugins/embed`` contributes), else the hashing fallback below with a warning. Models
  load only through the pool, so memory never loads one of its own.
- ``"pool"``: only the pool's model; an error when no model has the ``embed`` role.
- ``"hash"``: the hashing fallback. It exists for machines where no embedding model is
  installed: it matches shared words and spellings, not meanings. Never the default
  when MiniLM is available.
- ``"none"``: no vectors at all; recall is text search (FTS5) only.

Every embedder returns float32 rows of unit length, so similarity is a dot product.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from core.capabilities import Embed
from core.logging import get_logger

log = get_logger("loom.memory")


class Embedder:
    name = "base"
    dim = 0

    async def embed(self, texts: list[str]) -> Any:  # np.ndarray (n, dim)
        raise NotImplementedError


class PoolEmbedder(Embedder):
    """The pool's ``embed`` role: loaded on demand, shared with the router."""

    def __init__(self, app: Any, model: str, dim: int = 384) -> None:
        self.app = app
        self.model = model
        self.name = f"pool:{model}"
        self.dim = dim

    async def embed(self, texts: list[str]) -> Any:
        import numpy as np

        async with self.app.pool.use(self.model, Embed) as embedder:
            out = await embedder.embed_array(list(texts))
        out = np.asarray(out, np.float32)
        self.dim = out.shape[1]
        return out


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder(Embedder):
    """Fallback when no embedding model is installed: signed feature hashing of words and
    character trigrams. Deterministic and dependency-free; lexical, not semantic."""

    name = "hash"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def embed_sync(self, texts: list[str]) -> Any:
        import numpy as np

        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            feats = words + [f"#{w[j:j + 3]}" for w in words for j in range(max(len(w) - 2, 1))]
            for f in feats:
                h = zlib.crc32(f.encode())
                out[i, h % self.dim] += 1.0 if h & 0x80000000 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    async def embed(self, texts: list[str]) -> Any:
        return self.embed_sync(list(texts))


def resolve(app: Any, choice: str) -> Embedder | None:
    """Pick the embedder for ``choice`` (see the module docstring); None means text only."""
    if choice == "none":
        return None
    if choice == "hash":
        return HashingEmbedder()
    if choice in ("auto", "pool") and app is not None:
        model = _pool_model(app)
        if model is not None:
            return PoolEmbedder(app, model)
        if choice == "pool":
            raise RuntimeError("[plugin.memory] embedder = \"pool\" but no model has role \"embed\": "
                               "add one to loom.toml or enable the embed plugin")
    log.warning("no model serves the embed role; memory uses the hashing fallback (lexical similarity "
                "only): enable the embed plugin (pip install 'loomd[embed]') or configure a model with "
                'role = "embed"')
    return HashingEmbedder()


def _pool_model(app: Any) -> str | None:
    try:
        return app.pool.model_for("embed")
    except ImportError:
        return None  # the pool is not part of this build
    except Exception as exc:  # ModelUnavailable: nothing serves "embed"
        log.debug("no pool model for role embed", error=str(exc))
        return None
