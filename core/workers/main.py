"""The worker process: one model, loaded by its own backend class, serving operations.

Started by the daemon (``core.workers.process``) as ``python -m core.workers.main FD``
where FD is its end of a Unix socket pair, or forked by the fork server
(``--forkserver``, see ``core.workers.forkserver``) with the modules it needs already
imported. The first frame is ``Load``: the worker imports
the backend class by path, builds it, loads the model and answers ``Loaded`` with the
model's ``ModelInfo`` and the memory the load took (this process's RSS before and after).
Then each ``Call`` runs ``backend.run(handle, op, request, emit, cancel)`` in a thread of
its own; ``emit`` sends an ``Emit`` frame at once (token streaming) and a ``Cancel`` frame
sets that call's cancel flag. ``Stop`` or the daemon going away unloads and exits.

Nothing here writes to stdout (the daemon may be speaking JSON-RPC on its own stdout); the
daemon points this process's stdout and stderr at a pipe it keeps the last lines of, so a
crash report can show them. ``faulthandler`` prints the Python stack on a segfault.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

import msgspec

from . import protocol as p


def _rss() -> int:
    from ..memprobe import process_rss

    return process_rss()


class Worker:
    def __init__(self, conn: p.Connection) -> None:
        self.conn = conn
        self.backend: Any = None
        self.handle: Any = None
        self.xfer_dir = ""
        self.calls: dict[int, threading.Event] = {}
        self.lock = threading.Lock()

    def load(self, frame: p.Load) -> None:
        from ..backends import ModelSpec
        from ..capabilities import ModelInfo  # noqa: F401 - registers the core operations

        self.xfer_dir = frame.xfer_dir
        factory = p.import_object(frame.backend)
        self.backend = factory()
        _import_capabilities()
        spec = msgspec.msgpack.decode(frame.spec, type=ModelSpec)
        had = {m.partition(".")[0] for m in sys.modules}
        before = _rss()
        t0 = time.perf_counter()
        self.handle = self.backend.load(spec, frame.device)
        info = describe(self.backend, self.handle, spec)
        seconds = time.perf_counter() - t0
        modules = sorted(m for m in {m.partition(".")[0] for m in sys.modules} - had if not m.startswith("_"))
        modules.insert(0, frame.backend.partition(":")[0])
        self.conn.send(p.Loaded(info=msgspec.Raw(msgspec.msgpack.encode(info)), rss_before=before,
                                rss_after=_rss(), seconds=seconds, modules=modules))

    def serve(self) -> None:
        while True:
            try:
                frame = self.conn.recv()
            except (EOFError, OSError):
                return  # the daemon went away: unload and exit
            if isinstance(frame, p.Call):
                cancel = threading.Event()
                with self.lock:
                    self.calls[frame.id] = cancel
                threading.Thread(target=self.run, args=(frame, cancel), name=f"loom-{frame.op}",
                                 daemon=True).start()
            elif isinstance(frame, p.Cancel):
                with self.lock:
                    cancel = self.calls.get(frame.id)
                if cancel is not None:
                    cancel.set()
            elif isinstance(frame, p.Stop):
                return

    def run(self, frame: p.Call, cancel: threading.Event) -> None:
        from ..capabilities import OPS, CapabilityError

        cid = frame.id
        try:
            spec = OPS.get(frame.op)
            if spec is None:
                raise CapabilityError(f"this worker does not know the operation {frame.op!r}")
            request = p.decode_payload(frame.request, frame.spilled, spec.request, self.xfer_dir)

            def emit(event: Any) -> None:
                spilled, data = p.encode_payload(event, self.xfer_dir)
                self.conn.send(p.Emit(id=cid, spilled=spilled, event=msgspec.Raw(data)))

            result = self.backend.run(self.handle, frame.op, request, emit, cancel)
            spilled, data = p.encode_payload(result, self.xfer_dir)
            self.conn.send(p.Done(id=cid, spilled=spilled, result=msgspec.Raw(data)))
        except BaseException as exc:
            try:
                self.conn.send(p.Failed(id=cid, error_type=p.error_type_name(exc), message=str(exc),
                                        traceback=traceback.format_exc(limit=8)))
            except OSError:
                pass
        finally:
            with self.lock:
                self.calls.pop(cid, None)

    def unload(self) -> None:
        if self.handle is not None:
            self.backend.unload(self.handle)
            self.handle = None


def describe(backend: Any, handle: Any, spec: Any) -> Any:
    """The loaded model's ``ModelInfo``; a duck-typed backend serves what it declares."""
    from ..capabilities import ModelInfo

    if hasattr(backend, "describe"):
        return backend.describe(handle, spec)
    return ModelInfo(name=spec.name, backend=spec.config.backend,
                     capabilities=tuple(getattr(backend, "capabilities", ())), context_size=spec.config.context_size)


def _import_capabilities() -> None:
    """Make every operation's types known (media ones live in an optional module)."""
    import importlib

    for name in ("core.capabilities", "core.capabilities.media"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    faulthandler.enable(all_threads=False)  # the crashing thread is the one worth reading
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the daemon's terminal is the daemon's to handle
    if len(argv) == 2 and argv[0] == "--forkserver" and argv[1].isdigit():
        from .forkserver import serve

        return serve(int(argv[1]))
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m core.workers.main [--forkserver] FD  (started by the Loom daemon, not by hand)",
              file=sys.stderr)
        return 2
    return run_worker(int(argv[0]))


def run_worker(fd: int) -> int:
    """Serve one model on the socket ``fd`` until told to stop; returns the exit code."""
    conn = p.Connection(socket.socket(fileno=fd))
    worker = Worker(conn)
    try:
        first = conn.recv()
    except EOFError:
        return 0
    if not isinstance(first, p.Load):
        print(f"loom worker: expected a load frame first, got {type(first).__name__}", file=sys.stderr)
        return 2
    try:
        worker.load(first)
    except BaseException as exc:
        conn.send(p.Failed(id=-1, error_type=p.error_type_name(exc), message=str(exc) or type(exc).__name__,
                           traceback=traceback.format_exc(limit=8)))
        return 1
    try:
        worker.serve()
    finally:
        try:
            worker.unload()
        finally:
            conn.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # no waiting for daemon threads still emitting for a cancelled call
