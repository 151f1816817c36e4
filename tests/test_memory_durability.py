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

# One process imports Loom once, then forks a fresh writer per run (most of a run used to be
# starting Python and importing the kernel, not the writes). Each writer builds its own app,
# opens the database and streams memory.remember calls on the shared stdout, one
# "id text" line after each call returns: an acknowledgement. While a writer runs, the
# forking process only waits for it; once it is reaped it says so.
ZYGOTE = """
import os, sys
sys.path.insert(0, {root!r})
import anyio
import plugins.memory, plugins.memory.service  # imported before forking: each writer starts warm
from core.app import Loom
from core.config import LoomConfig, PathsConfig

async def main(tag):
    cfg = LoomConfig(paths=PathsConfig(data_dir={data!r}))
    cfg.plugin["memory"] = {{"embedder": "none", "sweep_interval": 0}}
    app = Loom.create(cfg, environ={{"LOOM_PLUGINS": "memory", "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1"}},
                      configure_logs=False)
    async with app:
        i = 0
        while True:
            text = f"{{tag}}-{{i}} remembered"
            res = await app.call("memory.remember", {{"text": text, "kind": "episodic", "importance": 0.9}})
            os.write(1, f"{{res.structured['id']}} {{text}}\\n".encode())  # one write: a whole line or none
            i += 1

for tag in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            os.write(1, f"pid {{os.getpid()}}\\n".encode())
            anyio.run(main, tag.strip())
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    os.write(1, b"reaped\\n")
"""


def test_sigkill_mid_stream_loses_no_acknowledged_memory(data_dir: Path, tmp_path: Path) -> None:
    rng = random.Random(6)
    code = ZYGOTE.format(root=str(ROOT), data=str(data_dir))
    errors = tmp_path / "writers.err"  # a file, not a pipe: fifty writers' warnings cannot fill it and block
    with errors.open("w") as err:
        zygote = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=err, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acknowledged: dict[int, str] = {}

    def died(run: int) -> str:
        zygote.kill()
        return f"run {run}: the writer died early: {errors.read_text()[-2000:]}"

    try:
        for run in range(50):
            zygote.stdin.write(f"run{run}\n")
            zygote.stdin.flush()
            first = zygote.stdout.readline()
            assert first.startswith("pid "), died(run)
            want, got, line = rng.randint(1, 40), 0, ""
            try:
                while got < want:
                    line = zygote.stdout.readline()
                    if not line or line == "reaped\n":
                        raise AssertionError(died(run))
                    mid, text = line.rstrip("\n").split(" ", 1)
                    acknowledged[int(mid)] = text
                    got += 1
            finally:
                if line != "reaped\n":
                    os.kill(int(first.split()[1]), signal.SIGKILL)  # mid-stream: it is writing the next one now
            while (line := zygote.stdout.readline()) not in ("reaped\n", ""):
                mid, text = line.rstrip("\n").split(" ", 1)  # written before the kill: acknowledged too
                acknowledged[int(mid)] = text
            with sqlite3.connect(data_dir / "memory.db") as db:
                assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"run {run}"
                stored = dict(db.execute("SELECT id, text FROM memories").fetchall())
            missing = {i: t for i, t in acknowledged.items() if stored.get(i) != t}
            assert not missing, f"run {run}: acknowledged but lost: {list(missing.items())[:5]}"
    finally:
        zygote.stdin.close()
        zygote.wait(30)
        zygote.stdout.close()
    assert len(acknowledged) > 50
