"""One writer per data dir: an exclusive ``flock`` on ``<data_dir>/loom.lock``.

Daemons (``loom serve``, ``loom mcp``) call ``hold_or_exit(config.data_dir)`` before they
start; components that write durable state (memory) call ``hold()`` when they open it,
which is a no-op when the daemon already holds the lock.

Loom keeps durable state in its data dir (the memory database, tokens, produced
files). Two daemons writing the same SQLite files would each assume they own the
in-memory indexes built from them, so the first process to start takes an exclusive
lock for its whole lifetime and a second one stops with a clear error naming the pid
that holds it.

``flock`` locks belong to an open file description: the kernel drops them when the
process dies (even by SIGKILL), so a crashed daemon never leaves a stale lock. Inside
one process the lock is shared: a second ``hold()`` on the same dir returns the same
handle (several apps in one test process, the daemon and the memory plugin).
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "loom.lock"


class DataDirLocked(RuntimeError):
    """Another process holds the data dir; the message says which pid and what to do."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        who = f"pid {pid}" if pid else "unknown pid"
        super().__init__(
            f"another Loom daemon ({who}) is using {data_dir}; stop it or set a different data dir "
            f"([paths] data_dir in loom.toml, or LOOM_PATHS__DATA_DIR=...)"
        )


@dataclass
class DataDirLock:
    path: Path
    fd: int

    def release(self) -> None:
        release(self.path.parent)


_held: dict[Path, DataDirLock] = {}
_mutex = threading.Lock()


def hold(data_dir: str | os.PathLike[str]) -> DataDirLock:
    """Take (or reuse) this process's exclusive lock on ``data_dir``; raise ``DataDirLocked``."""
    root = Path(data_dir).expanduser().resolve()
    with _mutex:
        lock = _held.get(root)
        if lock is not None:
            return lock
        root.mkdir(parents=True, exist_ok=True)
        path = root / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirLocked(root, pid) from None
        except BaseException:
            os.close(fd)
            raise
        # The pid is only for the error message; the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        lock = DataDirLock(path, fd)
        _held[root] = lock
        return lock


def release(data_dir: str | os.PathLike[str]) -> None:
    """Drop the lock (tests; a daemon simply keeps it until it exits)."""
    root = Path(data_dir).expanduser().resolve()
    with _mutex:
        lock = _held.pop(root, None)
    if lock is not None:
        try:
            fcntl.flock(lock.fd, fcntl.LOCK_UN)
        finally:
            os.close(lock.fd)


def held(data_dir: str | os.PathLike[str]) -> bool:
    """Whether this process already holds the lock on ``data_dir``."""
    return Path(data_dir).expanduser().resolve() in _held


def holder(data_dir: str | os.PathLike[str]) -> int | None:
    """The pid written by the process holding the lock, or None when nobody holds it."""
    path = Path(data_dir).expanduser().resolve() / LOCK_NAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def hold_or_exit(data_dir: str | os.PathLike[str], code: int = 2) -> DataDirLock:
    """For commands: take the lock or print the error and exit with ``code``."""
    try:
        return hold(data_dir)
    except DataDirLocked as exc:
        print(f"loom: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(code) from None


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode().strip()
        return int(raw) if raw else None
    except (OSError, ValueError):
        return None
