"""Memory through ``assistant.ask``: the router sends "remember ..." to ``memory.remember``,
a later question in another conversation finds it (saying when), and "forget ..." archives
it without keeping the forgotten words in episodic memory."""

from __future__ import annotations

import sqlite3

import pytest

from core import datadir
from core.config import LoomConfig


@pytest.mark.anyio
async def test_remember_recall_forget_through_the_assistant(make_app, data_dir):
    cfg = LoomConfig()
    cfg.plugin["memory"] = {"sweep_interval": 0}
    app = make_app("llamacpp", "embed", "assistant", "cognition", "memory", config=cfg)
    try:
        async with app:
            out = await app.call("assistant.ask", {"text": "Remember that my sister is called Ana",
                                                   "session_id": "monday"})
            assert out.structured["steps"][0] == "memory.remember"

            out = await app.call("assistant.ask", {"text": "What is my sister's name? Do you remember?",
                                                   "session_id": "tuesday"})
            assert out.structured["steps"][0] == "memory.recall"
            assert "My sister is called Ana" in out.structured["answer"]
            assert "just now" in out.structured["answer"]

            out = await app.call("assistant.ask", {"text": "Forget what I told you about my sister",
                                                   "session_id": "tuesday"})
            assert out.structured["steps"][0] == "memory.forget"
            res = await app.call("memory.recall", {"query": "sister's name"})
            left = [r["text"] for r in res.structured["results"] if "Ana" in r["text"]]
            assert not left, left
            sessions = await app.call("memory.sessions", {})
            assert {s["id"] for s in sessions.structured["sessions"]} == {"monday", "tuesday"}
        with sqlite3.connect(data_dir / "memory.db") as db:
            archived = db.execute("SELECT text FROM memories WHERE archived_at IS NOT NULL").fetchall()
            forget_requests = db.execute("SELECT count(*) FROM memories WHERE text LIKE 'Forget what%'").fetchone()
        assert ("My sister is called Ana",) in archived  # archived, not deleted
        assert forget_requests == (0,)
    finally:
        datadir.release(data_dir)
