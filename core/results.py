"""Typed tool results: text, structured JSON, images, audio, and links to produced files.

Tools may return any of: a ``str``; a ``msgspec.Struct``, ``dict`` or ``list`` (becomes
structured content plus its JSON as text); one content item; a list of content items; or
a full ``ToolResult``. Surfaces turn a ``ToolResult`` into MCP content, HTTP JSON or
terminal output.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import msgspec


class Text(msgspec.Struct, frozen=True, tag="text"):
    text: str


class Image(msgspec.Struct, frozen=True, tag="image"):
    data: bytes
    mime_type: str = "image/png"

    def b64(self) -> str:
        return base64.b64encode(self.data).decode()


class Audio(msgspec.Struct, frozen=True, tag="audio"):
    data: bytes
    mime_type: str = "audio/wav"

    def b64(self) -> str:
        return base64.b64encode(self.data).decode()


class ResourceLink(msgspec.Struct, frozen=True, tag="resource_link"):
    """A file the daemon produced (an image, a video, a transcript), by URI."""

    uri: str
    name: str
    mime_type: str | None = None
    description: str | None = None
    size: int | None = None

    @classmethod
    def for_file(cls, path: Path, mime_type: str | None = None, description: str | None = None) -> ResourceLink:
        path = Path(path).resolve()
        return cls(
            uri=path.as_uri(),
            name=path.name,
            mime_type=mime_type,
            description=description,
            size=path.stat().st_size if path.exists() else None,
        )


Content = Text | Image | Audio | ResourceLink
CONTENT_TYPES = (Text, Image, Audio, ResourceLink)


class ToolResult(msgspec.Struct):
    content: list[Content] = []
    structured: Any = None
    is_error: bool = False

    def text(self) -> str:
        """All text content joined: what a terminal or a plan's next step reads."""
        return "\n".join(c.text for c in self.content if isinstance(c, Text))


_encoder = msgspec.json.Encoder()


def to_result(value: Any) -> ToolResult:
    if isinstance(value, ToolResult):
        return value
    if value is None:
        return ToolResult()
    if isinstance(value, str):
        return ToolResult([Text(value)])
    if isinstance(value, CONTENT_TYPES):
        return ToolResult([value])
    if isinstance(value, list) and value and all(isinstance(v, CONTENT_TYPES) for v in value):
        return ToolResult(list(value))
    if isinstance(value, msgspec.Struct | dict | list | tuple | int | float | bool):
        structured = msgspec.to_builtins(value)
        return ToolResult([Text(_encoder.encode(structured).decode())], structured=structured)
    raise TypeError(f"a tool returned {type(value).__name__}, which is not a tool result")
