"""What the daemon knows when a worker dies, and the error its callers get.

A ``CrashReport`` names the model, how the worker ended (a signal such as SIGKILL or
SIGSEGV, an exit code, or a Ray actor's death), what it was running, and the last lines
it wrote to stderr. ``WorkerCrashed`` is the tool error every in-flight caller receives;
its message is the report, so an MCP client or an HTTP app sees exactly that.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from ..tools import ToolError


class WorkerCrashed(ToolError):
    """The model's worker died while serving this call; the next call restarts it."""

    def __init__(self, message: str, report: CrashReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class WorkerGone(ToolError):
    """The model was unloaded (or its worker stopped) while this call was running."""


@dataclass
class CrashReport:
    model: str
    placement: str  # "process" or "ray"
    pid: int | None = None
    exit_code: int | None = None  # the process's exit status (None when a signal ended it)
    signal: str | None = None  # "SIGKILL", "SIGSEGV", "SIGABRT"...
    ops: list[str] = field(default_factory=list)  # what it was running when it died
    stderr: list[str] = field(default_factory=list)  # its last lines of output
    cause: str = ""  # extra words from the engine (a Ray actor's death cause)
    node: str | None = None

    @classmethod
    def from_returncode(cls, model: str, pid: int, returncode: int | None, **kw: object) -> CrashReport:
        sig = None
        code = returncode
        if returncode is not None and returncode < 0:
            try:
                sig = signal.Signals(-returncode).name
            except ValueError:
                sig = f"signal {-returncode}"
            code = None
        return cls(model=model, placement="process", pid=pid, exit_code=code, signal=sig, **kw)  # type: ignore[arg-type]

    @property
    def how(self) -> str:
        if self.signal:
            return f"killed by {self.signal}"
        if self.exit_code is not None:
            return f"exited with code {self.exit_code}"
        return self.cause or "died"

    def describe(self, tail: int = 20) -> str:
        where = f"worker process (pid {self.pid})" if self.placement == "process" else "Ray actor"
        if self.node:
            where += f" on node {self.node}"
        doing = f" while running {', '.join(sorted(set(self.ops)))}" if self.ops else ""
        msg = f"model {self.model!r} crashed: its {where} was {self.how}{doing}"
        if self.cause and self.cause != self.how:
            msg += f" ({self.cause})"
        lines = [ln for ln in self.stderr if ln.strip()][-tail:]
        if lines:
            msg += ". Last output:\n  " + "\n  ".join(lines)
        else:
            msg += ". It wrote nothing to stderr."
        return msg
