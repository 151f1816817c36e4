"""Resource subscriptions: notice when a subscribed resource really changed.

Loom's resources are functions of the daemon's state (``loom://models`` of the pool,
``loom://status`` of the plugins, a memory of the database), so there is no per-resource
change hook to call. Instead: whatever changes that state publishes an event on the bus,
and after each burst of events (``DEBOUNCE_S``) the watcher re-reads every subscribed
resource and compares a digest of its contents with the last one sent. Only a real
change is announced, once per burst, whatever the number of events behind it.

``owners`` of a subscription are opaque (a handshake-era connection, a 2026 listen
stream); the surface decides how to tell each of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from core.logging import get_logger

log = get_logger("loom.mcp")

DEBOUNCE_S = 0.2


class ResourceWatcher:
    """Subscribed URIs, their owners and last digests; ``run`` announces real changes."""

    def __init__(self, read: Callable[[str], Awaitable[bytes]],
                 notify: Callable[[str, set[Any]], Awaitable[None]],
                 *, on_first: Callable[[], None] = lambda: None, on_empty: Callable[[], None] = lambda: None) -> None:
        """``on_first``/``on_empty``: the first subscription starts, the last one ends (the
        surface listens to the bus only while someone is subscribed)."""
        self._read = read
        self._notify = notify
        self._on_first = on_first
        self._on_empty = on_empty
        self.owners: dict[str, set[Any]] = {}
        self._digests: dict[str, str | None] = {}
        self._wake = anyio.Event()

    def __bool__(self) -> bool:
        return bool(self.owners)

    async def _digest(self, uri: str) -> str | None:
        try:
            return hashlib.sha256(await self._read(uri)).hexdigest()
        except Exception as exc:  # gone or failing: that too is a state worth announcing once
            return f"error: {exc}"

    async def add(self, uri: str, owner: Any) -> None:
        first = uri not in self.owners
        if not self.owners:
            self._on_first()
        self.owners.setdefault(uri, set()).add(owner)
        if first:
            self._digests[uri] = await self._digest(uri)  # the baseline the first update differs from

    def remove(self, uri: str, owner: Any) -> None:
        owners = self.owners.get(uri)
        if owners is None:
            return
        owners.discard(owner)
        if not owners:
            del self.owners[uri]
            self._digests.pop(uri, None)
            if not self.owners:
                self._on_empty()

    def remove_owner(self, owner: Any) -> None:
        for uri in [u for u, o in self.owners.items() if owner in o]:
            self.remove(uri, owner)

    def kick(self) -> None:
        """Something happened (an event on the bus): check the subscriptions soon."""
        if self.owners:
            self._wake.set()

    async def check(self) -> list[str]:
        """Re-read every subscribed resource; announce and return the ones that changed."""
        changed = []
        for uri in list(self.owners):
            digest = await self._digest(uri)
            if uri in self._digests and digest != self._digests[uri]:
                self._digests[uri] = digest
                changed.append(uri)
                try:
                    await self._notify(uri, set(self.owners.get(uri, ())))
                except Exception as exc:
                    log.warning("resource update not delivered", uri=uri, error=repr(exc))
        return changed

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await anyio.sleep(DEBOUNCE_S)  # one check per burst of events
            self._wake = anyio.Event()
            await self.check()
