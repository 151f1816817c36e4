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

The data dir holds private things (memories, the audit log, the bearer token), so it is
kept at mode 0700 and the files Loom writes there at 0600 (``secure``); daemons also set
a 0077 umask so files created later (SQLite's WAL, produced media) are private too. A
data dir that cannot be created or written stops a daemon with a clear message and exit
status 2 (a configuration problem: a service manager should not restart it in a loop).
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "loom.lock"


PRIVATE_FILES = ("token", "audit.jsonl", "memory.db", "memory.db-wal", "memory.db-shm", LOCK_NAME)


class DataDirUnusable(RuntimeError):
    """The data dir cannot be created or written; the message says which and what to do."""

    def __init__(self, data_dir: Path, error: OSError) -> None:
        self.data_dir = data_dir
        reason = error.strerror or str(error)
        super().__init__(
            f"the data dir {data_dir} cannot be used ({reason}); make it writable by this user "
            f"(chown/chmod), or set a different one ([paths] data_dir in loom.toml, or LOOM_PATHS__DATA_DIR=...)"
        )


def secure(data_dir: str | os.PathLike[str]) -> list[str]:
    """Make ``data_dir`` 0700 and Loom's private files in it 0600; returns what was changed."""
    root = Path(data_dir).expanduser()
    changed = []
    for path, mode in [(root, 0o700), *((root / name, 0o600) for name in PRIVATE_FILES)]:
        try:
            st = path.stat()
        except OSError:
            continue
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(path, (st.st_mode & 0o700) | (mode & 0o700))
            changed.append(str(path))
    return changed


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
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            secure(root)
            path = root / LOCK_NAME
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DataDirUnusable(root, exc) from None
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
    """For daemons: take the lock (and check the dir is writable) or print why and exit
    with ``code``."""
    os.umask(0o077)  # a daemon's files (the database, its WAL, produced media) are private
    try:
        lock = hold(data_dir)
        probe = Path(data_dir).expanduser().resolve() / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")  # a lock on a read-only dir can succeed (the file exists)
        probe.unlink()
        return lock
    except DataDirLocked as exc:
        print(f"loom: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(code) from None
    except OSError as exc:
        print(f"loom: {DataDirUnusable(Path(data_dir).expanduser(), exc)}", file=sys.stderr, flush=True)
        raise SystemExit(code) from None
    except DataDirUnusable as exc:
        print(f"loom: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(code) from None


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode().strip()
        return int(raw) if raw else None
    except (OSError, ValueError):
        return None
