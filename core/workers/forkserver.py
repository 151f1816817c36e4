"""A fork server: worker processes start in milliseconds instead of re-importing everything.

Starting ``python -m core.workers.main`` costs an interpreter start plus every import the
backend needs (llama_cpp and numpy: hundreds of milliseconds on a busy machine), paid on
every load and every restart after a crash. The fork server is one process started with
the daemon's environment that imports those modules once and forks a worker per load;
the child is already warm.

It learns what to import: a worker reports the top-level modules its load pulled in
(``Loaded.modules``) and the daemon asks the server to ``preload`` them, so the second
start of a backend is warm without backends declaring anything. The server itself never
starts a thread (forking a threaded process is unsafe), never loads a model, and exits
when the daemon's end of its socket closes.

Protocol: a ``SOCK_SEQPACKET`` Unix socket pair, one msgpack dict per message; a spawn
request carries two file descriptors (the worker's socket, its stdout/stderr pipe) as
``SCM_RIGHTS`` ancillary data. Exit statuses of the children (only the server can wait for
them) come back as ``exited`` messages.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import msgspec

from ..logging import get_logger

log = get_logger("loom.workers")
_MSG = 65536


class ForkedProcess:
    """A worker forked by the server: the subset of ``subprocess.Popen`` the invoker uses."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        rc = self.server.wait_exit(self.pid, timeout)
        if rc is None:
            raise subprocess.TimeoutExpired(["loom-worker", str(self.pid)], timeout or 0)
        self.returncode = rc
        return rc

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class ForkServer:
    """The daemon's side: start the server, ask it for workers, learn how they ended."""

    def __init__(self, env: dict[str, str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "core.workers.main", "--forkserver", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
        theirs.close()
        self.sock = ours
        self._lock = threading.Lock()  # one spawn request at a time: replies come in order
        self._cv = threading.Condition()
        self._exits: dict[int, int] = {}
        self._spawned: list[int] = []
        self._preloaded: set[str] = set()
        self.closed = False
        threading.Thread(target=self._read, name="loom-forkserver", daemon=True).start()

    @property
    def alive(self) -> bool:
        return not self.closed and self.proc.poll() is None

    def spawn(self, worker_fd: int, out_fd: int, timeout: float = 30.0) -> ForkedProcess:
        with self._lock:
            socket.send_fds(self.sock, [msgspec.msgpack.encode({"op": "spawn"})], [worker_fd, out_fd])
            with self._cv:
                if not self._cv.wait_for(lambda: self._spawned or self.closed, timeout):
                    raise OSError("the worker fork server did not answer")
                if not self._spawned:
                    raise OSError("the worker fork server has exited")
                return ForkedProcess(self, self._spawned.pop(0))

    def preload(self, modules: list[str]) -> None:
        new = sorted(set(modules) - self._preloaded)
        if new and self.alive:
            self._preloaded.update(new)
            try:
                self.sock.send(msgspec.msgpack.encode({"op": "preload", "modules": new}))
            except OSError:
                pass

    def exit_code(self, pid: int) -> int | None:
        with self._cv:
            return self._exits.get(pid)

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        with self._cv:
            self._cv.wait_for(lambda: pid in self._exits or self.closed, timeout)
            return self._exits.get(pid)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(_MSG)
            except OSError:
                data = b""
            if not data:
                break
            msg = msgspec.msgpack.decode(data)
            with self._cv:
                if msg["op"] == "spawned":
                    self._spawned.append(msg["pid"])
                elif msg["op"] == "exited":
                    self._exits[msg["pid"]] = msg["rc"]
                self._cv.notify_all()
        with self._cv:
            self.closed = True
            self._cv.notify_all()

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --- the server process ----------------------------------------------------------------


def serve(fd: int) -> int:
    """The fork server's loop (``python -m core.workers.main --forkserver FD``)."""
    import importlib

    ctl = socket.socket(fileno=fd)
    children: set[int] = set()
    # Woken by a child's exit (SIGCHLD through a wakeup pipe) rather than by polling: a poll
    # every few milliseconds costs CPU the workers' decoding threads need (measured ~0.2 ms
    # per token at 20 ms).
    chld_r, chld_w = os.pipe()
    os.set_blocking(chld_r, False)
    os.set_blocking(chld_w, False)
    signal.set_wakeup_fd(chld_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so the wakeup fd is written
    while True:
        ready, _, _ = select.select([ctl, chld_r], [], [])
        if chld_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(chld_r, 512):
                    pass
        for pid in list(children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                children.discard(pid)
                ctl.send(msgspec.msgpack.encode({"op": "exited", "pid": pid, "rc": os.waitstatus_to_exitcode(status)}))
        if ctl not in ready:
            continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(ctl, _MSG, 2)
        except OSError:
            data, fds = b"", []
        if not data:
            return 0  # the daemon has gone; the workers notice on their own sockets
        msg = msgspec.msgpack.decode(data)
        if msg["op"] == "preload":
            for name in msg["modules"]:
                try:
                    importlib.import_module(name)
                except Exception as exc:  # a module that cannot be preloaded is simply imported later
                    print(f"loom fork server: cannot preload {name}: {exc!r}", file=sys.stderr)
        elif msg["op"] == "spawn" and len(fds) == 2:
            worker_fd, out_fd = fds
            pid = os.fork()
            if pid == 0:  # the worker
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(chld_r)
                os.close(chld_w)
                ctl.close()
                os.dup2(out_fd, 1)
                os.dup2(out_fd, 2)
                os.close(out_fd)
                from .main import run_worker

                code = 1
                try:
                    code = run_worker(worker_fd)
                finally:
                    try:
                        sys.stderr.flush()
                    finally:
                        os._exit(code)
            os.close(worker_fd)
            os.close(out_fd)
            children.add(pid)
            ctl.send(msgspec.msgpack.encode({"op": "spawned", "pid": pid}))
        else:
            for f in fds:
                os.close(f)


def worker_env() -> dict[str, Any]:
    env = dict(os.environ)
    # The worker imports the same backend class, from wherever this process found it.
    env["PYTHONPATH"] = os.pathsep.join(x for x in sys.path if x and os.path.isdir(x))
    env["PYTHONUNBUFFERED"] = "1"
    return env
