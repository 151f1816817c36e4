"""Durable memory: episodic (conversations), semantic (facts about the user) and working
memory in SQLite (WAL, ``synchronous=FULL``) in the data dir, recalled by embedding
similarity and full-text search, fading by a forgetting curve (archived, never deleted).

Tools: ``memory.remember``, ``memory.recall``, ``memory.forget``, ``memory.restore``,
``memory.sessions``. Stage ``memory`` (order 10): recall before the answer, store after.

``[plugin.memory]`` (see ``settings.MemorySettings``)::

    enabled = true        # false: no tools, no stage
    stage = true          # false: tools only
    embedder = "auto"     # the pool's "embed" model, else lexical hashing; "none": text search only
    recall_k = 5

One process owns a data dir (``core.datadir``): the service takes the lock when it
opens the database (at start in a daemon, which already holds it; at first use in a
one-shot command); another process gets an error naming the pid that holds it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from core.hookspecs import hookimpl
from core.results import Text, ToolResult
from core.tools import ToolContext, ToolError, object_schema

from .settings import MemorySettings

STAGE_ORDER = 10  # first before the answer (context for every later stage), last after it

Kind = Literal["semantic", "episodic", "working"]
Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
# SQLite integers are signed 64-bit: a bigger id is a validation error, not an OverflowError.
MemoryId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
MAX_QUERY = 2000  # characters of a recall/forget query: recall cost grows with it, and it is echoed


class MemoryHandle:
    """Per-app holder: settings now, the service (numpy, SQLite, threads) when first needed."""

    def __init__(self, app: Any, settings: MemorySettings) -> None:
        self.app = app
        self.settings = settings
        self.service: Any = None
        self._lock: Any = None

    async def get(self) -> Any:
        if self.service is not None:
            return self.service
        import anyio

        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self.service is None:
                import importlib

                # numpy and SQLite load in a worker thread: the event loop keeps serving.
                service = await anyio.to_thread.run_sync(importlib.import_module, "plugins.memory.service")
                svc = service.MemoryService(self.app.config.data_dir, self.settings, app=self.app)
                try:
                    await svc.start()
                except Exception as exc:
                    from .repair import MemoryCorrupt

                    if isinstance(exc, MemoryCorrupt):
                        self._report_fault(str(exc))
                    raise
                self.service = svc
        return self.service

    def _report_fault(self, message: str) -> None:
        """Show the fault in plugin status and make /readyz say the daemon is degraded."""
        info = self.app.host.plugins.get("memory")
        if info is not None and f"startup: {message}" not in info.errors:
            info.errors.append(f"startup: {message}")
        report = getattr(self.app, "report_fault", None)
        if report is not None:
            report("memory", message)

    def check(self) -> dict[str, Any]:
        """``loom memory check``: SQLite's integrity check on the database."""
        from .repair import HINT, check

        path = self.db_path
        problem = check(path)
        if problem is None:
            return {"database": str(path), "status": "ok", "message": f"{path} is sound"}
        return {"database": str(path), "status": "corrupt", "problem": problem[:300],
                "message": f"{path} is corrupt ({problem[:300]}); {HINT}"}

    @property
    def db_path(self) -> Any:
        from pathlib import Path

        path = Path(self.settings.db)
        return path if path.is_absolute() else self.app.config.data_dir / path

    def repair(self) -> dict[str, Any]:
        """Rebuild a corrupt database from what can be read (``loom memory repair``; the
        caller holds the data dir lock, so no daemon is using it)."""
        from .repair import repair

        return repair(self.db_path)

    async def close(self) -> None:
        if self._lock is None:
            return
        async with self._lock:  # an open still under way finishes first, then closes
            if self.service is not None:
                svc, self.service = self.service, None
                await svc.close()


def _handle(app: Any) -> MemoryHandle:
    handle = app.services.get("memory") if app is not None else None
    if handle is None:
        raise ToolError("memory is not configured in this app (is the memory plugin enabled?)")
    return handle


async def _service(ctx: ToolContext) -> Any:
    from core.datadir import DataDirLocked

    try:
        return await _handle(ctx.app).get()
    except DataDirLocked as exc:
        raise ToolError(str(exc)) from None
    except ToolError:
        raise
    except Exception as exc:
        raise ToolError(f"memory could not start: {exc}") from None


def _user_error(exc: Exception) -> ToolError:
    return ToolError(str(exc))


# --- tools -------------------------------------------------------------------------------


class RememberArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Annotated[str, msgspec.Meta(description="What to remember, in plain words.", min_length=1)]
    kind: Annotated[Kind, msgspec.Meta(
        description="semantic: a fact about the user; episodic: something that happened or was said; "
                    "working: a short-lived note for the current task (fades within hours).")] = "semantic"
    importance: Annotated[Unit, msgspec.Meta(description="0..1; important memories fade more slowly.")] = 0.5
    emotion: Annotated[Unit, msgspec.Meta(description="0..1 emotional intensity; emotional memories last.")] = 0.0
    session_id: Annotated[str | None, msgspec.Meta(description="Conversation this belongs to.")] = None
    metadata: dict[str, Any] | None = None


async def remember(args: RememberArgs, ctx: ToolContext) -> dict:
    """Store a memory durably (acknowledged only once it is on disk). Returns its id. A lead-in
    such as "remember that" is dropped: what is stored is the thing to remember."""
    from .facts import strip_request
    from .service import MemoryError_

    svc = await _service(ctx)
    try:
        mid = await svc.remember(strip_request(args.text), args.kind, importance=args.importance, emotion=args.emotion,
                                 session_id=args.session_id, metadata=args.metadata)
    except MemoryError_ as exc:
        raise _user_error(exc) from None
    return {"id": mid, "kind": args.kind, "stored": True}


class RecallArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    query: Annotated[str, msgspec.Meta(description="What to look for, in plain words.", min_length=1,
                                       max_length=MAX_QUERY)]
    k: Annotated[int, msgspec.Meta(ge=1, le=50, description="How many memories to return.")] = 5
    kinds: Annotated[list[Kind] | None, msgspec.Meta(description="Only these kinds.")] = None
    # Not named session_id: a plan binds the current session to session_id, and a question
    # asked today is about every conversation, not only today's.
    in_session: Annotated[str | None, msgspec.Meta(description="Only this conversation (a session id).")] = None
    include_archived: Annotated[bool, msgspec.Meta(description="Also search forgotten (archived) memories.")] = False


async def recall(args: RecallArgs, ctx: ToolContext) -> ToolResult:
    """Find memories by meaning and words, best first, each saying how long ago it was stored."""
    from .service import MemoryError_

    svc = await _service(ctx)
    try:
        found = await svc.recall(args.query, args.k, kinds=args.kinds, session_id=args.in_session,
                                 include_archived=args.include_archived)
    except MemoryError_ as exc:
        raise _user_error(exc) from None
    if found:
        lines = [f"[{r['id']}] {r['ago']} ({r['kind']}{', archived' if r['archived'] else ''}, "
                 f"score {r['score']:.2f}): {r['text']}" for r in found]
    else:
        lines = [f"No memory matches {args.query!r}."]
    return ToolResult(content=[Text("\n".join(lines))], structured={"query": args.query, "results": found})


class ForgetArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ids: Annotated[list[MemoryId], msgspec.Meta(description="Memory ids to forget.", max_length=1000)] = []
    query: Annotated[Annotated[str, msgspec.Meta(max_length=MAX_QUERY)] | None, msgspec.Meta(
        description="Forget the memories that best match this (strong matches only).")] = None
    sweep: Annotated[bool, msgspec.Meta(
        description="Apply the forgetting curve now: archive every memory that has faded.")] = False


async def forget(args: ForgetArgs, ctx: ToolContext) -> dict:
    """Forget memories: they are archived (kept, hidden from recall), never deleted; memory.restore
    brings them back."""
    from .service import MemoryError_

    if not args.ids and not args.query and not args.sweep:
        raise ToolError("say what to forget: ids, a query, or sweep=true")
    svc = await _service(ctx)
    archived: list[int] = []
    try:
        if args.ids:
            archived += await svc.forget(list(args.ids))
        if args.query:
            found = await svc.recall(args.query, 5, touch=False)
            strong = [r["id"] for r in found if r["score"] >= 0.5]
            archived += await svc.forget(strong)
        if args.sweep:
            archived += await svc.sweep()
    except MemoryError_ as exc:
        raise _user_error(exc) from None
    rows = svc.get(archived)
    return {"archived": [{"id": i, "text": rows[i]["text"]} for i in archived if i in rows],
            "count": len(archived), "note": "archived, not deleted: memory.restore brings them back"}


class RestoreArgs(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[MemoryId], msgspec.Meta(max_length=1000)]


async def restore(args: RestoreArgs, ctx: ToolContext) -> dict:
    """Bring archived (forgotten) memories back into recall."""
    svc = await _service(ctx)
    done = await svc.restore(list(args.ids))
    return {"restored": done, "count": len(done)}


class SessionsArgs(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 20


async def sessions(args: SessionsArgs, ctx: ToolContext) -> ToolResult:
    """Past conversations, most recent first: when each started, when it was last active, its turns."""
    svc = await _service(ctx)
    rows = await svc.sessions(args.limit)
    lines = [f"{r['id']}: last active {r['last_ago']}, {r['turns']} turns, started {r['started_ago']}"
             f" — {r['title'] or ''}" for r in rows] or ["No conversations yet."]
    return ToolResult(content=[Text("\n".join(lines))], structured={"sessions": rows})


# --- hooks -------------------------------------------------------------------------------


# Registration hooks get only ``register``; the settings of the app being configured
# (``loom_configure`` runs just before them) decide what is registered.
_settings = MemorySettings()


# What `loom doctor` checks for this plugin, and how to fix what is missing.
DOCTOR = [
    {"check": "module", "name": "numpy", "why": "similarity search over stored memories",
     "fix": "pip install 'loomd[embed]'"},
]


@hookimpl
def loom_configure(config: Any, app: Any) -> None:
    global _settings
    _settings = config.plugin_settings("memory", MemorySettings)
    app.services["memory"] = MemoryHandle(app, _settings)


@hookimpl
def loom_register_tools(register: Any) -> None:
    if not _settings.enabled:
        return
    register(remember, idempotent=False)
    register(recall, read_only=True, output_schema=object_schema(query=str, results=list[dict]))
    register(forget, idempotent=True)
    register(restore, idempotent=True)
    register(sessions, read_only=True, idempotent=True, output_schema=object_schema(sessions=list[dict]))


@hookimpl
def loom_register_stages(register: Any) -> None:
    if _settings.enabled and _settings.stage:
        from .stage import MemoryStage

        register(MemoryStage(_settings), name="memory", order=STAGE_ORDER)


@hookimpl
async def loom_startup(app: Any) -> None:
    # A daemon holds the data dir lock from its start (core.datadir.hold_or_exit): open
    # memory now so the first request does not pay for it. One-shot commands (`loom call`)
    # open it on first use only, so they still work beside a running daemon unless they
    # touch memory (then they get the lock error naming the daemon's pid).
    from core import datadir

    handle = app.services.get("memory")
    if handle is not None and handle.settings.enabled and datadir.held(app.config.data_dir):
        app.spawn(handle.get, name="memory")  # in the background: the daemon answers meanwhile


@hookimpl
async def loom_shutdown(app: Any) -> None:
    handle = app.services.get("memory")
    if handle is not None:
        await handle.close()


def what_do_you_know(topic: str = "") -> str:
    """Ask what Loom remembers, about a topic or in general."""
    about = f" about {topic}" if topic else ""
    return (f"What do you remember{about}? Use memory.recall and say how long ago each thing was discussed; "
            "say plainly when you remember nothing.")


@hookimpl
def loom_register_prompts(register):
    register(what_do_you_know, name="memory.recall")


async def memory_by_id(app: Any, id: str) -> dict[str, Any]:
    """One stored memory (archived ones too) by its id, as memory.recall shows it."""
    try:
        mid = int(id)
    except ValueError:
        raise ToolError(f"memory ids are integers, got {id!r} (memory.recall shows them)") from None
    from core.datadir import DataDirLocked

    try:
        svc = await _handle(app).get()
    except DataDirLocked as exc:
        raise ToolError(str(exc)) from None
    row = svc.get([mid]).get(mid)
    if row is None:
        raise ToolError(f"no memory with id {mid}")
    return row


@hookimpl
def loom_register_resources(register: Any) -> None:
    if _settings.enabled:
        register("loom://memory/{id}", memory_by_id, name="memory",
                 description="One stored memory by id: text, kind, importance, when stored and last recalled.")
