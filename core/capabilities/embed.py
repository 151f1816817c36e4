"""Embed: sentence embeddings for a batch of texts.

::

    async with app.pool.use(app.pool.model_for("embed"), Embed) as embedder:
        vectors = await embedder.embed(["a cat", "a dog"])        # list[list[float]]
        matrix = await embedder.embed_array(texts)                # numpy float32, rows normalised

Vectors travel as one float32 buffer (``EmbedResult.data``), so a worker process hands
back a batch without turning every number into an object on the way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from .base import Capability, CapabilityError, capability, operation


class EmbedRequest(msgspec.Struct, kw_only=True):
    texts: list[str]
    normalize: bool = True


class EmbedResult(msgspec.Struct, kw_only=True):
    data: bytes  # float32, little-endian, row-major: len(texts) x dim
    dim: int
    count: int
    prompt_tokens: int | None = None  # when the backend counted them

    @classmethod
    def from_rows(cls, rows: Any, prompt_tokens: int | None = None) -> EmbedResult:
        import numpy as np

        arr = np.ascontiguousarray(np.asarray(rows, dtype="<f4"))
        if arr.ndim != 2:
            arr = arr.reshape(len(arr), -1)
        return cls(data=arr.tobytes(), dim=int(arr.shape[1]), count=int(arr.shape[0]), prompt_tokens=prompt_tokens)

    def array(self) -> Any:
        import numpy as np

        return np.frombuffer(self.data, dtype="<f4").reshape(self.count, self.dim)

    def rows(self) -> list[list[float]]:
        return self.array().tolist()


EMBED = operation("embed.texts", EmbedRequest, EmbedResult)


@capability
class Embed(Capability):
    """Sentence embeddings."""

    kind = "embed"

    async def embed_result(self, texts: str | Sequence[str], *, normalize: bool = True) -> EmbedResult:
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch or not all(isinstance(t, str) for t in batch):
            raise CapabilityError("embed needs a string or a non-empty list of strings")
        return await self._call(EMBED, EmbedRequest(texts=batch, normalize=normalize))

    async def embed(self, texts: str | Sequence[str], *, normalize: bool = True) -> list[list[float]]:
        return (await self.embed_result(texts, normalize=normalize)).rows()

    async def embed_array(self, texts: str | Sequence[str], *, normalize: bool = True) -> Any:
        return (await self.embed_result(texts, normalize=normalize)).array()

    @property
    def dim(self) -> int | None:
        d = self.info.details.get("dim")
        return int(d) if d else None
