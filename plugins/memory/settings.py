"""``[plugin.memory]`` settings (kept free of heavy imports: ``loom tools`` reads them)."""

from __future__ import annotations

import msgspec

from .retention import RetentionSettings


class MemorySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    stage: bool = True  # recall before the answer, store after it
    embedder: str = "auto"  # "auto", "pool", "hash" (fallback), "none" (text search only)
    db: str = "memory.db"  # relative to the data dir
    recall_k: int = 5  # memories the stage puts in the turn's context
    min_score: float = 0.35  # weaker matches stay out of the context
    working_size: int = 8  # recent turns kept per session in working memory
    max_text: int = 20000  # longer texts are refused with a clear error
    index_batch: int = 32  # texts embedded per batch by the background indexer
    sweep_interval: float = 3600.0  # seconds between forgetting sweeps (0: only at start and on demand)
    recall_wait: float = 2.0  # seconds a recall waits for fresh writes to be embedded
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)

    def __post_init__(self) -> None:
        if self.embedder not in ("auto", "pool", "hash", "none"):
            raise ValueError(f"embedder must be auto, pool, hash or none, got {self.embedder!r}")
