"""``placement = "process"``: a model in a worker subprocess the daemon owns.

``ProcessInvoker`` starts ``python -m core.workers.main`` with one end of a Unix socket
pair, sends it the backend's class path and the model's spec, and waits for ``Loaded``.
It then implements ``core.capabilities.Invoker``: ``launch`` sends a ``Call`` frame and a
reader thread feeds the ``Emit``/``Done``/``Failed`` frames it gets back into the caller's
``OpStream``, so a capability handle cannot tell a worker from a thread of the daemon.

Cancellation: the callers' flags are ``core.blocking.CancelFlag``s, which call us back
when set: we send a ``Cancel`` frame at once and the worker sets that call's flag, which
the backend checks between tokens. A caller that brings a plain ``threading.Event`` gets a
watcher thread that looks every ``CANCEL_POLL_S`` while such calls are in flight. (Polling
for every call cost ~5% of decode speed when the model's threads use every core: each
wake-up of the daemon preempts a decoding thread.)

Start: through the pool's fork server (``core.workers.forkserver``) when it runs, so the
worker starts with its backend's modules already imported; else as a fresh interpreter.

Crashes: when the socket closes without a ``Stop`` from us, the worker died. The reader
waits for its exit status, builds a ``CrashReport`` (signal or exit code, what it was
running, the last lines of its stderr), hands it to ``on_exit`` (the pool: event, memory,
backoff) and then fails every call in flight with ``WorkerCrashed``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ..blocking import CancelFlag
from ..logging import get_logger
from ..tools import ToolError
from . import protocol as p
from .crash import CrashReport, WorkerCrashed, WorkerGone
from .forkserver import ForkServer, worker_env

log = get_logger("loom.workers")

CANCEL_POLL_S = 0.01
STDERR_LINES = 40


class WorkerStartError(ToolError):
    """The worker could not load the model (the message says why, with its last output)."""


class _Call:
    __slots__ = ("cancel", "cancel_sent", "done", "event_type", "op", "polled", "post", "result_type")

    def __init__(self, op: str, post: Any, cancel: threading.Event, event_type: Any, result_type: Any) -> None:
        self.op = op
        self.post = post
        self.cancel = cancel
        self.cancel_sent = False
        self.polled = not isinstance(cancel, CancelFlag)  # a plain Event: the watcher looks
        self.done = threading.Event()
        self.event_type = event_type
        self.result_type = result_type


class ProcessInvoker:
    """One worker process holding one loaded model; an ``Invoker`` for its capabilities."""

    placement = "process"

    def __init__(self, model: str, backend_path: str, spec: Any, device: str, *,
                 data_dir: Path | None = None, forkserver: ForkServer | None = None,
                 on_exit: Callable[[CrashReport], str | None] | None = None) -> None:
        self.model = model
        self.backend_path = backend_path
        self.spec = spec
        self.device = device
        self.data_dir = data_dir
        self.on_exit = on_exit
        self.forkserver = forkserver
        self.node: str | None = None
        self.proc: Any = None  # a subprocess.Popen, or a ForkedProcess from the fork server
        self.conn: p.Connection | None = None
        self.info: Any = None
        self.measured: int | None = None  # RSS the load added inside the worker
        self.load_seconds: float | None = None
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self.xfer_dir = ""
        self._calls: dict[int, _Call] = {}
        self._ids = itertools.count(1)
        self._cv = threading.Condition()
        self._stopping = False
        self._dead = False
        self._threads: list[threading.Thread] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def busy(self) -> int:
        """Calls in flight."""
        return len(self._calls)

    @property
    def alive(self) -> bool:
        return not self._dead and self.proc is not None and self.proc.poll() is None

    # -- start and stop (blocking: the pool runs them in a thread) ---------------------------

    def start(self) -> Any:
        """Spawn the worker, load the model there; returns its ``ModelInfo``."""
        from ..capabilities import ModelInfo

        self.xfer_dir = str(p.transfer_dir(self.data_dir, f"{self.model}-{id(self):x}"))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        try:
            if self.forkserver is not None and self.forkserver.alive:
                try:
                    self.proc = self.forkserver.spawn(theirs.fileno(), out_w)
                except OSError as exc:
                    log.warning("fork server failed; starting the worker from scratch", error=str(exc))
            if self.proc is None:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "core.workers.main", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w,
                    # Same session as the daemon: with the kernel's autogroup scheduling a worker
                    # then shares the daemon's CPU share exactly as an inline model does (its own
                    # session would make it a separate group). Workers ignore SIGINT themselves.
                    env=worker_env(),
                )
        finally:
            theirs.close()
            os.close(out_w)
        self._spawn(self._read_stderr, out_r, name="stderr")
        self.conn = p.Connection(ours)
        spec = msgspec.msgpack.encode(self.spec)
        try:
            self.conn.send(p.Load(backend=self.backend_path, spec=msgspec.Raw(spec), device=self.device,
                                  xfer_dir=self.xfer_dir))
            first = self.conn.recv()
        except (EOFError, OSError):
            first = None
        if isinstance(first, p.Loaded):
            self.info = msgspec.msgpack.decode(first.info, type=ModelInfo)
            self.measured = max(first.rss_after - first.rss_before, 0)
            self.load_seconds = first.seconds
            if self.forkserver is not None:
                self.forkserver.preload(first.modules)
            self._spawn(self._read_frames, name="frames")
            self._spawn(self._watch_cancels, name="cancels")
            return self.info
        self._reap(timeout=5.0)
        if isinstance(first, p.Failed):
            err = p.rebuild_error(first.error_type, first.message, WorkerStartError)
            self._cleanup()
            raise err
        report = self._report([])
        self._cleanup()
        raise WorkerStartError(f"{report.describe()} (while loading the model)")

    def stop(self, timeout: float = 10.0) -> None:
        """Unload the model (the worker exits) and free everything; kills it after ``timeout``."""
        self._stopping = True
        if self.conn is not None and not self._dead:
            with contextlib.suppress(OSError):
                self.conn.send(p.Stop())
        self._reap(timeout)
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5.0)
        self._fail_all(WorkerGone(f"model {self.model!r} was unloaded while this call was running"))
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL the worker (tests and benchmarks: a crash on demand)."""
        if self.proc is not None:
            self.proc.kill()

    def _reap(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("worker did not exit in time; killing it", model=self.model, pid=self.proc.pid)
            self.proc.kill()
            self.proc.wait()

    def _cleanup(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.xfer_dir:
            shutil.rmtree(self.xfer_dir, ignore_errors=True)

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> None:
        t = threading.Thread(target=target, args=args, name=f"loom-worker-{name}:{self.model}", daemon=True)
        t.start()
        self._threads.append(t)

    # -- the invoker ---------------------------------------------------------------------

    def launch(self, op: str, request: Any, post: Any, cancel: threading.Event) -> Any:
        from ..capabilities import OPS

        spec = OPS[op]
        call = _Call(op, post, cancel, spec.event if spec.event is not None else Any, spec.result)
        if self._dead or self.conn is None:
            post(("error", WorkerGone(f"model {self.model!r} is not running any more; call again to restart it")))
            call.done.set()
        else:
            cid = next(self._ids)
            with self._cv:
                self._calls[cid] = call
                if call.polled:
                    self._cv.notify()
            try:
                spilled, data = p.encode_payload(request, self.xfer_dir)
                self.conn.send(p.Call(id=cid, op=op, spilled=spilled, request=msgspec.Raw(data)))
            except (OSError, TypeError, msgspec.EncodeError) as exc:
                if self._take(cid) is not None:
                    error = exc if isinstance(exc, TypeError | msgspec.EncodeError) else \
                        WorkerGone(f"model {self.model!r}: its worker is gone ({exc})")
                    call.done.set()
                    post(("error", error))
            if isinstance(cancel, CancelFlag):
                # Harmless after the call has ended: _send_cancel only sends for calls in flight.
                cancel.on_set(lambda: self._send_cancel(cid))

        async def released() -> None:
            if not call.done.is_set():
                await anyio.to_thread.run_sync(call.done.wait)

        return released

    def _take(self, cid: int) -> _Call | None:
        with self._cv:
            return self._calls.pop(cid, None)

    # -- threads -------------------------------------------------------------------------

    def _read_frames(self) -> None:
        from ..capabilities import CapabilityError

        assert self.conn is not None
        while True:
            try:
                frame = self.conn.recv()
            except (EOFError, OSError, msgspec.DecodeError):
                break
            if isinstance(frame, p.Emit):
                call = self._calls.get(frame.id)
                if call is not None:
                    call.post(("event", p.decode_payload(frame.event, frame.spilled, call.event_type, self.xfer_dir)))
            elif isinstance(frame, p.Done):
                call = self._take(frame.id)
                if call is not None:
                    try:
                        result = p.decode_payload(frame.result, frame.spilled, call.result_type, self.xfer_dir)
                        item: tuple[str, Any] = ("done", result)
                    except (msgspec.DecodeError, msgspec.ValidationError, OSError, ValueError) as exc:
                        item = ("error", CapabilityError(f"model {self.model!r} sent a result that does not "
                                                         f"decode as {call.op}'s: {exc}"))
                    call.done.set()  # the worker has let go of the model before it sent this
                    call.post(item)
            elif isinstance(frame, p.Failed):
                call = self._take(frame.id)
                if call is not None:
                    call.done.set()
                    call.post(("error", p.rebuild_error(frame.error_type, frame.message, ToolError)))
        with self._cv:
            self._dead = True
            self._cv.notify_all()
        if self._stopping:
            return
        # Nobody asked it to stop: a crash. Give the stderr reader a moment to catch the last words.
        self._reap(timeout=10.0)
        for t in self._threads[:1]:
            t.join(timeout=1.0)
        with self._cv:
            ops = [c.op for c in self._calls.values()]
        report = self._report(ops)
        log.error("model worker crashed", model=self.model, pid=report.pid, how=report.how, ops=ops)
        suffix = None
        if self.on_exit is not None:
            try:
                suffix = self.on_exit(report)
            except Exception as exc:  # the loop is gone (shutdown): the callers still get the error
                log.warning("crash handler failed", model=self.model, error=repr(exc))
        message = report.describe() + (f"\n{suffix}" if suffix else "")
        self._fail_all(WorkerCrashed(message, report))
        self._cleanup()

    def _fail_all(self, error: Exception) -> None:
        with self._cv:
            calls, self._calls = list(self._calls.values()), {}
        for call in calls:
            call.done.set()
            call.post(("error", error))

    def _report(self, ops: list[str]) -> CrashReport:
        rc = self.proc.poll() if self.proc is not None else None
        return CrashReport.from_returncode(self.model, self.pid or 0, rc, ops=ops, stderr=list(self.stderr))

    def _read_stderr(self, fd: int) -> None:
        with open(fd, "rb", buffering=0) as pipe:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self.stderr.append(line)
                    log.debug("worker output", model=self.model, line=line)

    def _send_cancel(self, cid: int) -> None:
        with self._cv:
            call = self._calls.get(cid)
            if call is None or call.cancel_sent or self._dead or self.conn is None:
                return
            call.cancel_sent = True
        try:
            self.conn.send(p.Cancel(id=cid))
        except OSError:
            pass  # the worker is gone: the reader reports it

    def _watch_cancels(self) -> None:
        """Poll the calls whose cancel flag cannot call us back (plain ``threading.Event``s)."""
        while True:
            with self._cv:
                while not self._dead and not any(c.polled for c in self._calls.values()):
                    self._cv.wait()
                if self._dead:
                    return
                pending = [cid for cid, c in self._calls.items() if c.polled and c.cancel.is_set()]
            for cid in pending:
                self._send_cancel(cid)
            time.sleep(CANCEL_POLL_S)


def backend_path(backend: Any) -> str:
    """The import path a worker builds ``backend`` from (its class, constructed without arguments)."""
    cls = type(backend)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise ToolError(f"backend {getattr(backend, 'name', cls.__name__)!r} ({cls.__qualname__}) cannot run in a "
                        f"worker: its class must be importable (defined at module level of an installed module). "
                        f"Set placement = \"inline\" for this model, or move the class to a module.")
    return f"{cls.__module__}:{cls.__qualname__}"
