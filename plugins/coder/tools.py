"""The coder's tools. Models come from the pool by role ("coder"); generation goes
through ``plugins.llamacpp.chat`` so tokens stream as MCP progress while they arrive."""

from __future__ import annotations

import shutil
import subprocess
from typing import Annotated, Any

import msgspec

from core.capabilities import Chat
from core.results import Text, ToolResult
from core.tools import ToolCancelled, ToolContext, ToolError

from . import prompts, workspace


class CoderSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.coder]`` in loom.toml."""

    model: str | None = None  # a model name; default: the pool's model for the "coder" role
    editor: str = "code"  # the VS Code command line launcher
    max_file_bytes: int = 256 * 1024
    max_context_bytes: int = 128 * 1024


def settings(ctx: ToolContext) -> CoderSettings:
    return ctx.app.config.plugin_settings("coder", CoderSettings)


MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=32768, description="most tokens to generate")]
Temperature = Annotated[float, msgspec.Meta(ge=0.0, le=2.0, description="sampling temperature; 0 is greedy")]


class GenerateArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    task: Annotated[str, msgspec.Meta(min_length=1, description="what the code should do")]
    language: Annotated[str, msgspec.Meta(description="programming language")] = "python"
    context_files: Annotated[list[str], msgspec.Meta(
        description="files (inside the workspace roots) the model should read first")] = []
    max_tokens: MaxTokens = 1024
    temperature: Temperature = 0.2
    seed: Annotated[int | None, msgspec.Meta(description="sampling seed, for repeatable answers")] = None


class ExplainArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Annotated[str | None, msgspec.Meta(description="the code to explain")] = None
    error: Annotated[str | None, msgspec.Meta(description="an error message or traceback to explain")] = None
    language: str | None = None
    max_tokens: MaxTokens = 512
    temperature: Temperature = 0.2


class EditArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: Annotated[str, msgspec.Meta(description="the file to edit, inside the workspace roots")]
    instruction: Annotated[str, msgspec.Meta(min_length=1, description="the change to make")]
    apply: Annotated[bool, msgspec.Meta(
        description="write the change to the file (when the policy allows); otherwise only return the diff")] = False
    max_tokens: MaxTokens = 4096
    temperature: Temperature = 0.0


class OpenArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: Annotated[str, msgspec.Meta(description="the file to open, inside the workspace roots")]
    line: Annotated[int, msgspec.Meta(ge=1)] = 1
    column: Annotated[int, msgspec.Meta(ge=1)] | None = None


PROGRESS_INTERVAL = 0.05  # seconds: at most 20 progress notifications a second after the first


async def run_model(ctx: ToolContext, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float,
                    seed: int | None = None) -> tuple[str, Any]:
    """Ask the coder model; returns (model name, ChatResult).

    New text is reported as progress (tokens so far of max_tokens, with the text as the
    message): the first piece at once, then batched so a fast model does not flood the
    surface (or wake the event loop) once per token.
    """
    pool = ctx.app.pool
    name = settings(ctx).model or pool.model_for("coder")
    reported = 0.0
    produced = 0

    async with pool.use(name, Chat) as chat:
        async def on_delta(text: str) -> None:
            nonlocal reported, produced
            produced += len(text)
            # MCP wants progress to grow with every notification. The total is unknown (the
            # answer ends when the model says so), so progress counts characters and the
            # total is left out rather than made up from the token limit.
            reported = max(float(produced), reported + 0.001)
            await ctx.progress(reported, None, text)

        result = await chat.complete(messages, max_tokens=max_tokens, temperature=temperature, seed=seed,
                                     cancel=ctx.cancelled, batch_s=PROGRESS_INTERVAL, on_delta=on_delta)
    if result.finish_reason == "cancelled":
        raise ToolCancelled(f"{ctx.tool} was cancelled")
    return name, result


def _usage(result: Any) -> dict[str, Any]:
    return msgspec.to_builtins(result.usage)


async def generate(args: GenerateArgs, ctx: ToolContext) -> ToolResult:
    """Write code for a task with the coding model; tokens stream as progress while they arrive.

    Returns the model's answer; structured output has the extracted code block."""
    cfg = settings(ctx)
    roots = ctx.app.config.allowed_roots()
    context: list[tuple[str, str]] = []
    budget = cfg.max_context_bytes
    for f in args.context_files:
        p = workspace.confine(f, roots)
        text = workspace.read_text(p, cfg.max_file_bytes)
        budget -= len(text.encode())
        if budget < 0:
            raise ToolError(f"the context files together are over {cfg.max_context_bytes} bytes; pass fewer or "
                            "smaller files (or raise [plugin.coder] max_context_bytes)")
        context.append((workspace.display(p, roots), text))
    messages = prompts.generate_messages(args.task, args.language, context)
    name, result = await run_model(ctx, messages, max_tokens=args.max_tokens, temperature=args.temperature,
                                   seed=args.seed)
    code = prompts.extract_code(result.text, args.language)
    return ToolResult([Text(result.text)], structured={
        "code": code if code is not None else result.text, "language": args.language, "model": name,
        "finish_reason": result.finish_reason, "usage": _usage(result)})


async def explain(args: ExplainArgs, ctx: ToolContext) -> ToolResult:
    """Explain what a piece of code does, or what an error means and how to fix it."""
    if not (args.code or args.error):
        raise ToolError("give the code to explain in 'code', an error message in 'error', or both")
    limit = settings(ctx).max_context_bytes
    if len((args.code or "").encode()) + len((args.error or "").encode()) > limit:
        raise ToolError(f"the code and error together are over {limit} bytes; send the relevant part")
    messages = prompts.explain_messages(args.code, args.error, args.language)
    name, result = await run_model(ctx, messages, max_tokens=args.max_tokens, temperature=args.temperature)
    return ToolResult([Text(result.text)], structured={
        "explanation": result.text, "model": name, "usage": _usage(result)})


async def edit(args: EditArgs, ctx: ToolContext) -> ToolResult:
    """Apply an instruction to a file in the workspace; returns a unified diff.

    The file is written only with apply=true (the policy may ask you first)."""
    import anyio

    cfg = settings(ctx)
    roots = ctx.app.config.allowed_roots()
    p = workspace.confine(args.path, roots)
    original = workspace.read_text(p, cfg.max_file_bytes)
    name = workspace.display(p, roots)
    language = workspace.language_of(p)
    messages = prompts.edit_messages(name, language, original, args.instruction)
    model, result = await run_model(ctx, messages, max_tokens=args.max_tokens, temperature=args.temperature)
    if result.finish_reason == "length":
        raise ToolError(f"the model's answer was cut off at max_tokens={args.max_tokens} before the whole file; "
                        "raise max_tokens (nothing was written)")
    new = prompts.extract_code(result.text, language)
    if new is None:
        raise ToolError("the model did not answer with the updated file in a code block (nothing was written); "
                        "rephrase the instruction or configure a stronger coder model")
    if original.endswith("\n") and not new.endswith("\n"):
        new += "\n"
    diff = workspace.unified_diff(original, new, name)
    applied = False
    if args.apply and diff:
        if p.read_text(encoding="utf-8") != original:
            raise ToolError(f"{name} changed while the model was working; run the edit again (nothing was written)")
        await anyio.to_thread.run_sync(workspace.write_atomic, p, new)
        applied = True
    summary = diff or f"The model made no change to {name}."
    return ToolResult([Text(summary)], structured={
        "path": str(p), "diff": diff, "applied": applied, "model": model, "usage": _usage(result)})


def open_in_editor(args: OpenArgs, ctx: ToolContext) -> str:
    """Open a workspace file at a line in VS Code (`code --goto file:line[:column]`)."""
    cfg = settings(ctx)
    p = workspace.confine(args.path, ctx.app.config.allowed_roots())
    if not p.is_file():
        raise ToolError(f"{p} is not an existing file")
    exe = shutil.which(cfg.editor)
    if exe is None:
        raise ToolError(
            f"VS Code's `{cfg.editor}` command is not on PATH, so Loom cannot open {p}:{args.line}. Install VS Code "
            "(https://code.visualstudio.com/download), then in VS Code run the command palette's \"Shell Command: "
            "Install 'code' command in PATH\" (on Linux the package installs it), and restart Loom; or set "
            "[plugin.coder] editor to the launcher's full path.")
    target = f"{p}:{args.line}" + (f":{args.column}" if args.column else "")
    try:
        proc = subprocess.run([exe, "--goto", target], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=20, start_new_session=True)
    except subprocess.TimeoutExpired:
        return f"Asked VS Code to open {target} (it is still starting)."
    except OSError as exc:
        raise ToolError(f"could not run {exe}: {exc}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-500:]
        raise ToolError(f"`{cfg.editor} --goto {target}` failed with exit code {proc.returncode}: {err}")
    return f"Opened {target} in VS Code."

