"""Talk with Loom in the terminal: answers stream as they are written.

  loom chat                         a new conversation with the assistant
  loom chat --session trip          resume (or start) the conversation named "trip"
  loom chat --model smollm2         talk to one model directly, no routing

In the conversation:
  a line ending in \\                continues on the next line (so does a block
                                    between lines of three double quotes)
  /attach FILE                      send FILE with the next message (repeatable)
  /model NAME                       talk to NAME directly; /model loom: back to the assistant
  /history                          the conversation so far
  /new                              start a new conversation
  /help, /exit (or Ctrl-D)

Ctrl-C stops an answer being written. Each conversation's turns are kept in
<data_dir>/chat/<session>.jsonl (and its input history beside it for the arrow keys).
Goes to the running daemon when there is one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import add_local_argument, connect

HELP = "an interactive conversation in the terminal: loom chat [--model NAME] [--session ID]"
ASSISTANT = "loom"
PROMPT, MORE = ">>> ", "... "


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--session", help="conversation id to start or resume (default: a new one)")
    p.add_argument("--model", default=ASSISTANT, help="a model to talk to directly (default: loom, the assistant)")
    p.add_argument("--max-tokens", type=int, default=512, help="longest answer from a model talked to directly")
    add_local_argument(p)


class Conversation:
    """One conversation's turns, kept as JSON lines so it can be resumed."""

    def __init__(self, directory: Path, session: str) -> None:
        self.id = session
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{session}.jsonl"
        self.input_history = directory / f"{session}.history"
        self.turns: list[dict[str, Any]] = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    self.turns.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a crash: skip it, keep the rest

    def add(self, role: str, content: str, **extra: Any) -> None:
        turn = {"role": role, "content": content, "ts": round(time.time(), 3), **extra}
        self.turns.append(turn)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(turn, ensure_ascii=False) + "\n")

    def messages(self) -> list[dict[str, str]]:
        return [{"role": t["role"], "content": t["content"]} for t in self.turns]


def read_message(first: str) -> str | None:
    """The rest of a multi-line message (``\\`` at line ends, or a triple-quoted block)."""
    if first.strip() == '"""':
        lines = []
        while (line := input(MORE)).strip() != '"""':
            lines.append(line)
        return "\n".join(lines)
    lines = [first]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        lines.append(input(MORE))
    return "\n".join(lines)


async def ask_assistant(target: Any, conv: Conversation, text: str, attachments: list[str], quiet: bool) -> str:
    from .stream import TextStream

    stream = TextStream("", quiet=quiet, assistant=True)
    result = await target.call("assistant.ask", {"text": text, "attachments": attachments,
                                                 "session_id": conv.id}, on_progress=stream.on_progress)
    s = result.structured or {}
    answer = s.get("answer") or result.text()
    stream.finish(answer)
    for f in s.get("files", []):
        print(f"file: {f}")
    return answer


async def ask_model(target: Any, conv: Conversation, model: str, max_tokens: int) -> str:
    """Stream an answer from ``model`` itself, with the conversation so far as its context."""
    messages = conv.messages()
    if target.remote:
        return await _ask_model_remote(target, model, messages, max_tokens)
    from core.capabilities import Chat, ChatRequest

    async with target.app.pool.use(model, Chat) as chat:
        async with chat.stream(ChatRequest(messages=messages, max_tokens=max_tokens)) as s:
            async for delta in s:
                sys.stdout.write(delta)
                sys.stdout.flush()
    sys.stdout.write("\n")
    return s.result.text


async def _ask_model_remote(target: Any, model: str, messages: list[dict[str, str]], max_tokens: int) -> str:
    """The daemon's OpenAI-compatible endpoint, streamed (the same request any OpenAI app makes)."""
    import httpx

    from core.surfaces.http import token_path

    base = target.daemon["mcp_url"].rsplit("/", 1)[0]
    token_file = token_path(target.session.config)
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"} if token_file.exists() else {}
    parts: list[str] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as http:
        async with http.stream("POST", f"{base}/v1/chat/completions", headers=headers,
                               json={"model": model, "messages": messages, "stream": True,
                                     "max_tokens": max_tokens}) as r:
            if r.status_code != 200:
                body = (await r.aread()).decode(errors="replace")
                try:
                    body = json.loads(body)["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    pass
                from core.tools import ToolError

                raise ToolError(body)
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                delta = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                parts.append(delta)
                sys.stdout.write(delta)
                sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(parts)


def run(args: argparse.Namespace) -> int:
    import anyio.from_thread

    from core.config import load_config
    from core.tools import ToolError

    config = load_config(getattr(args, "config", None))
    chat_dir = config.data_dir / "chat"
    conv = Conversation(chat_dir, args.session or time.strftime("chat-%Y%m%d-%H%M%S"))
    model = args.model
    attachments: list[str] = []
    readline = _readline(conv)
    with anyio.from_thread.start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(connect(args)) as target:
        where = f"the daemon (pid {target.daemon['pid']})" if target.remote else "this process"
        resumed = f", resuming {len(conv.turns)} earlier turns" if conv.turns else ""
        print(f"loom chat: conversation {conv.id} with {model} in {where}{resumed}. /help for commands, "
              "Ctrl-D to leave.", file=sys.stderr)
        while True:
            try:
                line = input(PROMPT)
                text = read_message(line) if line.strip() else ""
            except EOFError:
                print(file=sys.stderr)
                break
            except KeyboardInterrupt:
                print(file=sys.stderr)
                continue
            if not text.strip():
                continue
            if text.startswith("/"):
                cmd, _, rest = text.partition(" ")
                rest = rest.strip()
                if cmd in ("/exit", "/quit", "/bye"):
                    break
                if cmd == "/help":
                    print(__doc__.split("In the conversation:", 1)[1].split("Ctrl-C", 1)[0].rstrip(),
                          file=sys.stderr)
                elif cmd == "/attach":
                    path = Path(rest).expanduser()
                    if not rest or not path.is_file():
                        print(f"no such file: {rest or '(none given)'}; /attach PATH", file=sys.stderr)
                    else:
                        attachments.append(str(path.absolute()))
                        print(f"attached {path.name} ({path.stat().st_size} bytes); it goes with your next message",
                              file=sys.stderr)
                elif cmd == "/model":
                    if rest:
                        model = rest
                    print(f"talking to {model}" + (" (the assistant: routing, tools, memory)"
                                                   if model == ASSISTANT else " directly"), file=sys.stderr)
                elif cmd == "/history":
                    for t in conv.turns:
                        print(f"{t['role']}: {t['content']}")
                elif cmd == "/new":
                    conv = Conversation(chat_dir, time.strftime("chat-%Y%m%d-%H%M%S"))
                    readline = _readline(conv, readline)
                    print(f"new conversation {conv.id}", file=sys.stderr)
                else:
                    print(f"unknown command {cmd}; /help lists them", file=sys.stderr)
                continue
            if attachments and model != ASSISTANT:
                print("attachments go to the assistant; /model loom to send them", file=sys.stderr)
            conv.add("user", text, **({"attachments": attachments} if attachments else {}))
            if model == ASSISTANT:
                future = portal.start_task_soon(ask_assistant, target, conv, text, attachments, args.quiet)
            else:
                future = portal.start_task_soon(ask_model, target, conv, model, args.max_tokens)
            attachments = []
            try:
                answer = future.result()
            except KeyboardInterrupt:
                future.cancel()
                print("\n(stopped)", file=sys.stderr)
                continue
            except ToolError as exc:
                print(f"loom: {exc}", file=sys.stderr)
                continue
            except Exception as exc:  # the conversation outlives one failed turn
                print(f"loom: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            conv.add("assistant", answer, model=model)
            if readline is not None:
                readline.write_history_file(str(conv.input_history))
    return 0


def _readline(conv: Conversation, module: Any = None) -> Any:
    """Arrow-key editing and this conversation's earlier inputs, when readline is available."""
    try:
        import readline
    except ImportError:
        return None
    readline.clear_history()
    if conv.input_history.exists():
        try:
            readline.read_history_file(str(conv.input_history))
        except OSError:
            pass
    return readline
