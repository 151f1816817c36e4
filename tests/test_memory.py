"""Memory: recall by meaning and words, the forgetting curve, archive-not-delete, time
awareness, the memory stage, bad input, and the one-writer data dir lock. Real SQLite,
real packaged MiniLM embeddings."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import datadir
from core.config import LoomConfig
from core.tools import ToolError
from plugins.memory.retention import RetentionSettings, ago, retention

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


@pytest.fixture
def memory_app(make_app, data_dir):
    def build(**settings):
        cfg = LoomConfig()
        cfg.plugin["memory"] = {"sweep_interval": 0, **settings}
        return make_app("memory", config=cfg)

    yield build
    datadir.release(data_dir)


async def _svc(app):
    return await app.services["memory"].get()


@pytest.mark.anyio
async def test_recall_by_meaning_and_words(memory_app):
    async with memory_app() as app:
        for text in ["My sister Ana lives in Lisbon", "The user prefers dark roast coffee",
                     "We discussed the quarterly budget report", "The user's dog is called Rex"]:
            out = await app.call("memory.remember", {"text": text})
            assert out.structured["stored"] is True
        # Paraphrase, no shared content word with the stored fact: found by embedding.
        res = await app.call("memory.recall", {"query": "which city is my sibling based in?", "k": 2})
        assert res.structured["results"][0]["text"] == "My sister Ana lives in Lisbon"
        # An exact rare word: found by text search too.
        res = await app.call("memory.recall", {"query": "Rex", "k": 1})
        assert "Rex" in res.structured["results"][0]["text"]
        assert "just now" in res.text()


def test_forgetting_curve_shape():
    s = RetentionSettings()
    base = retention(3 * DAY, "episodic", 0.5, 0.0, 0, s)
    assert retention(1 * DAY, "episodic", 0.5, 0.0, 0, s) > base > retention(9 * DAY, "episodic", 0.5, 0.0, 0, s)
    assert retention(3 * DAY, "episodic", 0.9, 0.0, 0, s) > base  # importance
    assert retention(3 * DAY, "episodic", 0.5, 0.9, 0, s) > base  # emotion
    assert retention(3 * DAY, "episodic", 0.5, 0.0, 5, s) > base  # repeated access
    assert retention(3 * DAY, "semantic", 0.5, 0.0, 0, s) > base > retention(3 * DAY, "working", 0.5, 0.0, 0, s)
    assert ago(time.time() - 3 * DAY - 60) == "3 days ago"
    assert ago(time.time() - 26 * 3600) == "yesterday"
    assert ago(time.time() - 5) == "just now"


@pytest.mark.anyio
async def test_recall_order_follows_the_forgetting_curve(memory_app):
    async with memory_app() as app:
        svc = await _svc(app)
        now = time.time()
        old = await svc.remember("We talked about the trip to Japan", at=now - 10 * DAY)
        fresh = await svc.remember("We talked about the trip to Japan again", at=now - 1 * DAY)
        old_emotional = await svc.remember("We talked about the trip to Japan, I was thrilled", at=now - 10 * DAY,
                                           emotion=1.0, importance=0.9)
        found = await svc.recall("the trip to Japan", k=3, touch=False)
        order = [r["id"] for r in found]
        assert order.index(fresh) < order.index(old)
        assert order.index(old_emotional) < order.index(old)  # emotion + importance slow forgetting
        by_id = {r["id"]: r for r in found}
        assert by_id[fresh]["retention"] > by_id[old_emotional]["retention"] > by_id[old]["retention"]
        assert by_id[old]["ago"] == "10 days ago"
        # Recalling a memory again and again makes it last (access boost).
        before = by_id[old]["retention"]
        for _ in range(4):
            await svc.touch([old])
        await svc.remember("flush", kind="working")  # writes are ordered: the touches are committed
        again = {r["id"]: r for r in await svc.recall("the trip to Japan", k=3, touch=False)}
        assert again[old]["retention"] > before


@pytest.mark.anyio
async def test_forget_archives_and_restore_brings_back(memory_app, data_dir):
    async with memory_app() as app:
        svc = await _svc(app)
        keep = (await app.call("memory.remember", {"text": "The user is allergic to peanuts"})).structured["id"]
        gone = (await app.call("memory.remember", {"text": "The user's old password hint was sunflower"})
                ).structured["id"]
        faded = await svc.remember("Small talk about the weather on a Tuesday", at=time.time() - 400 * DAY)
        out = await app.call("memory.forget", {"ids": [gone]})
        assert out.structured["count"] == 1 and "not deleted" in out.structured["note"]
        res = await app.call("memory.recall", {"query": "password hint sunflower"})
        assert gone not in [r["id"] for r in res.structured["results"]]
        res = await app.call("memory.recall", {"query": "password hint sunflower", "include_archived": True})
        assert res.structured["results"][0]["id"] == gone and res.structured["results"][0]["archived"]
        swept = await app.call("memory.forget", {"sweep": True})
        assert [a["id"] for a in swept.structured["archived"]] == [faded]
        # Archived rows are still on disk.
        with sqlite3.connect(data_dir / "memory.db") as db:
            rows = dict(db.execute("SELECT id, archived_at IS NOT NULL FROM memories").fetchall())
        assert rows == {keep: 0, gone: 1, faded: 1}
        await app.call("memory.restore", {"ids": [gone]})
        res = await app.call("memory.recall", {"query": "password hint sunflower"})
        assert res.structured["results"][0]["id"] == gone


@pytest.mark.anyio
async def test_time_aware_recall_and_session_continuity(memory_app):
    from plugins.assistant.turn import Turn
    from plugins.memory.settings import MemorySettings
    from plugins.memory.stage import MemoryStage

    async with memory_app() as app:
        svc = await _svc(app)
        stage = MemoryStage(MemorySettings())
        real_clock = svc.clock
        svc.clock = lambda: real_clock() - 3 * DAY  # the first conversation happened three days ago
        first = Turn(text="My sister is called Ana and she is moving to Lisbon next month", session_id="trip",
                     answer="How exciting for her!", app=app)
        await stage.before(first)
        await stage.after(first)
        assert first.metadata["memory"]["stored"]["semantic"]  # "The user's sister is called Ana."
        svc.clock = real_clock

        res = await app.call("memory.recall", {"query": "where is my sister moving?"})
        assert "3 days ago" in res.text()
        sessions = await app.call("memory.sessions", {})
        assert "last active 3 days ago" in sessions.text()

        later = Turn(text="What was my sister's name again?", session_id="today", app=app)
        await stage.before(later)
        context = "\n".join(later.context)
        assert "Your previous conversation with the user was 3 days ago" in context
        assert "Ana" in context and "3 days ago, in another conversation" in context
        back = Turn(text="Any news about Lisbon?", session_id="trip", app=app)
        await stage.before(back)
        assert any("This conversation continues from 3 days ago" in c for c in back.context)


@pytest.mark.anyio
async def test_bad_input_gets_clear_errors(memory_app):
    async with memory_app(max_text=100) as app:
        with pytest.raises(ToolError, match="100"):
            await app.call("memory.remember", {"text": "x" * 500})
        with pytest.raises(ToolError, match="empty"):
            await app.call("memory.remember", {"text": "   "})
        with pytest.raises(ToolError, match="kind"):
            await app.call("memory.remember", {"text": "hi", "kind": "dream"})
        with pytest.raises(ToolError, match="say what to forget"):
            await app.call("memory.forget", {})
        # Text that FTS5 would parse as syntax is just text.
        await app.call("memory.remember", {"text": 'he said "NEAR(x y) AND OR *"'})
        res = await app.call("memory.recall", {"query": 'NEAR( "AND OR * ^'})
        assert res.structured["results"]


@pytest.mark.anyio
async def test_text_only_memory_without_embedder(memory_app):
    async with memory_app(embedder="none") as app:
        await app.call("memory.remember", {"text": "The user's favourite colour is teal"})
        res = await app.call("memory.recall", {"query": "favourite colour"})
        assert res.structured["results"][0]["similarity"] is None
        assert "teal" in res.structured["results"][0]["text"]


HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from core import datadir
datadir.hold({d!r})
print("held", flush=True)
time.sleep(60)
"""


def test_second_process_gets_the_lock_error(memory_app, data_dir):
    import anyio

    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), d=str(data_dir))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        msg = f"another Loom daemon (pid {proc.pid}) is using {data_dir.resolve()}; stop it or set a different"
        with pytest.raises(datadir.DataDirLocked) as err:
            datadir.hold(data_dir)
        assert msg in str(err.value)
        assert datadir.holder(data_dir) == proc.pid
        # A daemon exits with the message.
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from core import datadir; "
                f"datadir.hold_or_exit({str(data_dir)!r})")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert run.returncode == 2 and msg in run.stderr

        # Memory in this process refuses to open the store, with the same message.
        async def use_memory() -> None:
            async with memory_app() as app:
                with pytest.raises(ToolError, match=r"another Loom daemon \(pid \d+\)"):
                    await app.call("memory.remember", {"text": "hello"})

        anyio.run(use_memory)
    finally:
        proc.kill()
        proc.wait()
    # The holder died: the lock went with it.
    assert datadir.holder(data_dir) is None
    datadir.hold(data_dir)
