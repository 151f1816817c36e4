"""A corrupt memory database is detected and repaired (issue 20, item 9), and bad memory
arguments are clean tool errors (item 10): ids past SQLite's range, huge queries."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from core import datadir
from core.config import LoomConfig, PathsConfig
from core.tools import ToolArgumentError, ToolError
from tests.openai_helpers import ROOT

pytestmark = pytest.mark.anyio
N = 300


def _app(make_app, data_dir):
    cfg = LoomConfig(paths=PathsConfig(data_dir=str(data_dir), cache_dir=str(data_dir / "cache"),
                                       allowed_roots=[str(data_dir)]))
    cfg.plugin["memory"] = {"embedder": "none", "sweep_interval": 0}
    return make_app("memory", config=cfg)


async def _fill(make_app, data_dir) -> None:
    app = _app(make_app, data_dir)
    async with app:
        for i in range(N):
            await app.call("memory.remember", {"text": f"memory number {i:04d} " + "lorem ipsum " * 12,
                                               "kind": "episodic"})
    datadir.release(data_dir)


def _corrupt(db: Path) -> None:
    """Scribble over the b-tree page holding one stretch of memories (not the header)."""
    raw = bytearray(db.read_bytes())
    page = 4096
    at = raw.index(b"memory number 0150")
    start = at - at % page
    raw[start:start + 16] = b"\xde\xad\xbe\xef" * 4
    db.write_bytes(bytes(raw))


async def test_a_corrupt_database_is_reported_and_repaired(make_app, data_dir):
    await _fill(make_app, data_dir)
    db = data_dir / "memory.db"
    assert not (data_dir / "memory.db-wal").exists() or (data_dir / "memory.db-wal").stat().st_size == 0
    _corrupt(db)

    app = _app(make_app, data_dir)
    async with app:
        with pytest.raises(ToolError, match="corrupt.*loom memory repair"):
            await app.call("memory.recall", {"query": "memory number"})
        # plugin status and readiness say so, with what to do
        assert any("loom memory repair" in e for e in app.host.plugins["memory"].errors)
        assert "memory" in app.faults
        from core.surfaces.ops import DaemonOps

        ops = DaemonOps(app)
        ops.ready = True
        ready = await ops.readyz(None)
        assert ready.status_code == 503 and b"degraded" in ready.body and b"memory" in ready.body
    datadir.release(data_dir)

    (data_dir / "none.toml").write_text("[plugin.memory]\nembedder = \"none\"\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOOM_PATHS__DATA_DIR": str(data_dir), "LOOM_PLUGINS": "memory",
           "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_CONFIG": str(data_dir / "none.toml")}
    def loom(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core.cli", *argv], env=env, cwd=str(ROOT),
                              capture_output=True, text=True, timeout=120)

    check = await anyio.to_thread.run_sync(loom, "memory", "check")
    assert check.returncode == 1 and "corrupt" in check.stdout
    fixed = await anyio.to_thread.run_sync(loom, "memory", "repair")
    assert fixed.returncode == 0, fixed.stderr
    assert "rebuilt memory.db" in fixed.stdout and list(data_dir.glob("memory.db.corrupt-*"))

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
    conn.close()
    assert N - 40 <= kept < N  # the damaged page's rows are lost, the rest are back

    app = _app(make_app, data_dir)
    async with app:
        found = await app.call("memory.recall", {"query": "memory number 0299", "k": 1})
    assert "0299" in found.text() and not app.faults


async def test_ids_past_sqlite_range_and_huge_queries_are_clean_errors(make_app, data_dir):
    app = _app(make_app, data_dir)
    async with app:
        for tool in ("memory.forget", "memory.restore"):
            with pytest.raises(ToolArgumentError, match="Invalid arguments"):
                await app.call(tool, {"ids": [2**63]})
        with pytest.raises(ToolArgumentError) as err:
            await app.call("memory.recall", {"query": "x" * 8_000_000})
    assert len(str(err.value)) < 300  # the query is not echoed back


async def test_the_memory_database_is_private_without_a_daemon_umask(make_app, data_dir):
    app = _app(make_app, data_dir)
    async with app:
        await app.call("memory.remember", {"text": "my bank pin is not here"})
        for name in ("memory.db", "memory.db-wal", "memory.db-shm"):
            path = data_dir / name
            assert not path.exists() or path.stat().st_mode & 0o077 == 0, name
