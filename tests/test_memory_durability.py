"""Crash durability: a process streaming ``memory.remember`` calls is SIGKILLed mid-stream,
50 times over the same data dir. After every kill the database passes
``PRAGMA integrity_check`` and holds every memory whose id the process printed (a write
is acknowledged only after its WAL commit with ``synchronous=FULL``)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import sys
sys.path.insert(0, {root!r})
import anyio
from core.app import Loom
from core.config import LoomConfig, PathsConfig

async def main():
    cfg = LoomConfig(paths=PathsConfig(data_dir={data!r}))
    cfg.plugin["memory"] = {{"embedder": "none", "sweep_interval": 0}}
    app = Loom.create(cfg, environ={{"LOOM_PLUGINS": "memory", "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1"}},
                      configure_logs=False)
    async with app:
        i = 0
        while True:
            text = f"{{sys.argv[1]}}-{{i}} remembered"
            res = await app.call("memory.remember", {{"text": text, "kind": "episodic", "importance": 0.9}})
            print(res.structured["id"], text, flush=True)
            i += 1

anyio.run(main)
"""


def test_sigkill_mid_stream_loses_no_acknowledged_memory(data_dir: Path) -> None:
    rng = random.Random(6)
    code = CHILD.format(root=str(ROOT), data=str(data_dir))
    acknowledged: dict[int, str] = {}
    for run in range(50):
        proc = subprocess.Popen([sys.executable, "-c", code, f"run{run}"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        want = rng.randint(1, 40)
        got = 0
        try:
            while got < want:
                line = proc.stdout.readline()
                if not line:
                    raise AssertionError(f"run {run}: child died early: {proc.stderr.read()[-2000:]}")
                mid, text = line.rstrip("\n").split(" ", 1)
                acknowledged[int(mid)] = text
                got += 1
        finally:
            proc.send_signal(signal.SIGKILL)  # mid-stream: it is writing the next one right now
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        with sqlite3.connect(data_dir / "memory.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"run {run}"
            stored = dict(db.execute("SELECT id, text FROM memories").fetchall())
        missing = {i: t for i, t in acknowledged.items() if stored.get(i) != t}
        assert not missing, f"run {run}: acknowledged but lost: {list(missing.items())[:5]}"
    assert len(acknowledged) > 50
