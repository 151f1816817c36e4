"""Progress from a running tool, shown as it arrives.

Two conventions:

* any tool: a progress report *with* a total counts steps (a bar on the terminal); one
  *without* a total but with a message carries the next piece of streamed text (the
  coder's tokens);
* ``assistant.ask`` (see docs/agents.md): ``answer: <the whole answer so far>``,
  ``step i <tool>: started|done in X s|failed: ...`` and ``audio: <path>`` messages.

``TextStream`` prints the streamed text to stdout as it comes (so ``loom ask`` answers word
by word) and the rest on the status line; ``finish(answer)`` prints whatever the stream
did not already show.
"""

from __future__ import annotations

import sys
from typing import Any

from core.terminal import Status

ANSWER = "answer: "


class TextStream:
    def __init__(self, label: str, *, quiet: bool = False, live: bool = True, assistant: bool = False) -> None:
        self.status = Status(label, quiet=quiet)
        self.live = live
        self.assistant = assistant
        self.printed = ""

    def _write(self, text: str) -> None:
        self.status.clear()
        sys.stdout.write(text)
        sys.stdout.flush()
        self.printed += text

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.assistant:
            return self._assistant(message or "")
        if total is None and message and self.live:
            self._write(message)
            return
        if self.printed:
            return  # the answer is being written: a status line would cut into it
        self.status.update(progress, total, message)

    def _assistant(self, message: str) -> None:
        if message.startswith(ANSWER):
            so_far = message[len(ANSWER):]
            if self.live and so_far.startswith(self.printed):
                self._write(so_far[len(self.printed):])
            elif not self.live:
                self.status.spin(" ".join(so_far.split())[-60:])
            return  # a revised answer (not a continuation) waits for finish()
        if self.printed:
            return
        if message.startswith("step ") and (": done" in message or ": failed" in message):
            self.status.note(message)
        elif message:
            self.status.spin(message)

    def note(self, line: str) -> None:
        if not self.printed:
            self.status.note(line)

    def finish(self, answer: str) -> None:
        """Complete the output with ``answer``: only what was not streamed already."""
        self.status.clear()
        shown = self.printed
        if shown and answer.startswith(shown.rstrip()):
            rest = answer[len(shown.rstrip()):]
            sys.stdout.write(rest)
            sys.stdout.write("\n")
        elif shown:
            if shown.strip() != answer.strip():
                sys.stdout.write("\n" + answer)  # the stream was a step's output, not the answer
            sys.stdout.write("\n")
        else:
            sys.stdout.write(answer + "\n")
        sys.stdout.flush()


def describe_event(event: Any) -> str | None:
    """A plan's progress as one line (local runs see the bus; remote ones see progress)."""
    kind = type(event).__name__
    if kind == "PlanReady":
        return f"[plan] {event.intent}: {' -> '.join(event.steps)} ({event.confidence:.2f}) - {event.reason}"
    if kind == "StepSkipped":
        return f"[{event.step}] {event.tool} skipped: {event.reason}"
    if kind == "StepFinished":
        return (f"[{event.step}] {event.tool} {'done' if event.ok else 'FAILED'} in {event.seconds:.1f}s"
                + (f": {event.error}" if event.error else ""))
    if kind == "ModelLoading":
        return f"[model] loading {getattr(event, 'model', '')}"
    return None
