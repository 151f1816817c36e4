"""Rule matching, consent and the audit log behind the policy plugin."""

from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import anyio
import msgspec

from core.consent import ask_consent
from core.logging import get_logger
from core.tools import Decision, ToolCall, ToolCancelled, ToolDenied

log = get_logger("loom.policy")

ACTIONS = ("allow", "deny", "ask")


class PolicySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.policy]``. Patterns are fnmatch globs on tool names, ``surface:pattern`` for one surface."""

    deny: list[str] = []
    ask: list[str] = msgspec.field(default_factory=lambda: ["system.*"])  # PC control asks, screenshots too
    allow: list[str] = []
    read_only_default: str = "allow"  # tools annotated read-only that no rule names
    destructive_default: str = "ask"  # tools annotated destructive that no rule names
    other_default: str = "allow"  # everything else
    ask_timeout: float = 300.0  # seconds to wait for the person's answer
    audit: bool = True
    audit_file: str = "audit.jsonl"  # relative to the data dir


def _check(settings: PolicySettings) -> None:
    for key in ("read_only_default", "destructive_default", "other_default"):
        value = getattr(settings, key)
        if value not in ACTIONS:
            from core.config import ConfigError

            raise ConfigError(f"[plugin.policy] {key} must be one of {', '.join(ACTIONS)}, got {value!r}")


def args_digest(args: Any) -> str:
    """SHA-256 of the arguments as canonical JSON (sorted keys, no spaces)."""
    data = msgspec.to_builtins(args)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _matches(pattern: str, tool: str, surface: str) -> bool:
    if ":" in pattern:
        want_surface, pattern = pattern.split(":", 1)
        if want_surface != surface:
            return False
    return fnmatch.fnmatchcase(tool, pattern)


class Policy:
    def __init__(self, settings: PolicySettings, data_dir: Path) -> None:
        _check(settings)
        self.settings = settings
        path = Path(settings.audit_file).expanduser()
        self.audit_path = path if path.is_absolute() else Path(data_dir) / path
        self._lock = threading.Lock()

    # -- deciding ------------------------------------------------------------------------

    def rule_for(self, tool: Any, surface: str) -> tuple[str, str]:
        """(action, why) for a tool on a surface, before asking anyone."""
        name = tool.name
        for action in ("deny", "ask", "allow"):
            for pattern in getattr(self.settings, action):
                if _matches(pattern, name, surface):
                    return action, f"rule {action} {pattern!r}"
        ann = tool.annotations
        if ann.destructive:
            return self.settings.destructive_default, "default for destructive tools"
        if ann.read_only:
            return self.settings.read_only_default, "default for read-only tools"
        return self.settings.other_default, "default for tools that are neither read-only nor destructive"

    async def authorize(self, call: ToolCall) -> Decision:
        ctx = call.ctx
        action, why = self.rule_for(call.tool, ctx.surface)
        record = ctx.extra.setdefault("policy", {})
        record.update(decision=action, rule=why)
        if action == "allow":
            return Decision("allow", why)
        if action == "deny":
            return Decision("deny", f"{call.tool.name} is denied by the policy ({why}); an operator can change "
                                    "[plugin.policy] in loom.toml")
        return await ask_consent(call, why, timeout=self.settings.ask_timeout)

    async def authorize_and_record(self, call: ToolCall) -> Decision:
        """``authorize``, then write the audit line ahead of any call that may change
        something: a call whose audit line cannot be written does not run."""
        decision = await self.authorize(call)
        if decision.action != "allow" or not self.settings.audit or call.tool.annotations.read_only:
            return decision
        try:
            self._write(self._entry(call, "started", None))
        except OSError as exc:
            log.error("audit log write failed: refusing the call", path=str(self.audit_path), error=str(exc))
            call.ctx.extra["policy"]["decision"] = "deny:audit"
            return Decision("deny", f"{call.tool.name} was not run: the audit log {self.audit_path} cannot be "
                                    f"written ({exc.strerror or exc}); free disk space or fix its permissions")
        return decision

    # -- audit ---------------------------------------------------------------------------

    def audit(self, call: ToolCall, result: Any, error: BaseException | None) -> None:
        if not self.settings.audit:
            return
        if isinstance(error, ToolDenied):
            status = "denied"
        elif isinstance(error, ToolCancelled) or (error is not None and
                                                  isinstance(error, anyio.get_cancelled_exc_class())):
            status = "cancelled"
        elif error is not None:
            status = "error"
        elif result is not None and getattr(result, "is_error", False):
            status = "error"
        else:
            status = "ok"
        try:
            self._write(self._entry(call, status, error))
        except OSError as exc:  # the call already ran (and its intent was logged before it)
            log.error("audit log write failed", path=str(self.audit_path), error=str(exc))

    def _entry(self, call: ToolCall, status: str, error: BaseException | None) -> dict[str, Any]:
        ctx = call.ctx
        record = ctx.extra.get("policy", {})
        entry = {
            "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
            "surface": ctx.surface,
            "caller": ctx.caller,
            "correlation_id": ctx.correlation_id,
            "tool": call.tool.name,
            "args_sha256": args_digest(call.args),
            "decision": record.get("decision", "allow"),
            "rule": record.get("rule", ""),
            "status": status,
        }
        if error is not None:
            entry["error"] = (str(error) or type(error).__name__)[:300]
        return entry

    def _write(self, entry: dict[str, Any]) -> None:
        """Append one line (mode 0600: arguments digests and callers are not for everyone)."""
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
        with self._lock:
            self.audit_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(28, "short write (disk full?)")
            finally:
                os.close(fd)

    def describe(self) -> dict[str, Any]:
        return {**msgspec.to_builtins(self.settings), "audit_path": str(self.audit_path)}
