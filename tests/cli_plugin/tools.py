"""A throwaway plugin for the CLI tests (loaded through an entry point written at test time):
a destructive tool (consent), inline media (file naming), long output (broken pipes),
counted steps (the progress bar) and streamed text."""

from __future__ import annotations

import msgspec

from core.hookspecs import hookimpl
from core.results import Audio, Image, Text, ToolResult
from core.tools import NoArgs, ToolContext

# An 8x8 red PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000080000000808020000004b6d29dc0000001249444154789c63f8cfc0801561"
    "171db4120028ff3fc16eecdf610000000049454e44ae426082")


class Target(msgspec.Struct, forbid_unknown_fields=True):
    path: str


class Prompt(msgspec.Struct, forbid_unknown_fields=True):
    prompt: str


class Lines(msgspec.Struct, forbid_unknown_fields=True):
    n: int = 200_000


async def wipe(args: Target) -> str:
    """Pretend to wipe a path (destructive: the policy asks first)."""
    return f"wiped {args.path}"


async def picture(args: Prompt) -> ToolResult:
    """An inline PNG, as an image generator returns one."""
    return ToolResult([Image(PNG, "image/png"), Text(f"a picture of {args.prompt}")])


async def sound(args: Prompt) -> ToolResult:
    """Inline WAV bytes."""
    return ToolResult([Audio(b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav")])


async def lines(args: Lines) -> str:
    """Much more text than a pipe holds."""
    return "\n".join(f"line {i}" for i in range(args.n))


async def steps(args: NoArgs, ctx: ToolContext) -> str:
    """Five counted steps (a real total), then a short streamed text (no total)."""
    import anyio

    for i in range(5):
        await ctx.progress(i + 1, 5, f"step {i + 1}")
        await anyio.sleep(0.15)
    for word in ("one ", "two ", "three"):
        await ctx.progress(1, None, word)
    return "one two three"


class Wait(msgspec.Struct, forbid_unknown_fields=True):
    seconds: float = 30.0


async def wait(args: Wait) -> str:
    """Wait (a long request to cancel)."""
    import anyio

    await anyio.sleep(args.seconds)
    return f"waited {args.seconds:g} s"


@hookimpl
def loom_register_tools(register):
    register(wipe, destructive=True)
    register(picture, read_only=True)
    register(sound, read_only=True)
    register(lines, read_only=True)
    register(steps, read_only=True)
    register(wait, read_only=True)

