"""Tool results as a person reads them, or as JSON for a program (``--json``).

Text prints as text, code as code (highlighted on a terminal), structured data as
indented JSON, and media as the paths of saved files: a file the daemon already saved
is named, inline bytes are written next to the user under a name taken from the request
(``a-red-lighthouse.png``), never over an existing file.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from core.results import Audio, Image, ResourceLink, Text, ToolResult

# Arguments whose value names what a request is about (the file name comes from it).
_NAMING_KEYS = ("prompt", "text", "task", "query", "question", "url", "path")


class OutputExists(Exception):
    pass


def result_json(result: ToolResult) -> Any:
    """The exact result: the structured object when the tool gave one, else its content."""
    if result.structured is not None:
        return result.structured
    out = []
    for item in result.content:
        if isinstance(item, Text):
            out.append({"type": "text", "text": item.text})
        elif isinstance(item, Image | Audio):
            out.append({"type": "image" if isinstance(item, Image) else "audio", "mime_type": item.mime_type,
                        "data": base64.b64encode(item.data).decode()})
        elif isinstance(item, ResourceLink):
            out.append({"type": "resource_link", "uri": item.uri, "name": item.name, "mime_type": item.mime_type})
    return out


def request_name(tool: str, arguments: dict[str, Any]) -> str:
    """What the saved file is named from: the request's text, else the tool's name."""
    from core.terminal import slug

    for key in _NAMING_KEYS:
        value = arguments.get(key)
        if isinstance(value, str) and value.strip():
            return slug(Path(value).stem if key == "path" else value)
    return slug(tool.replace(".", "-"))


def save_media(item: Image | Audio, *, output: str | None, stem: str) -> Path:
    """Write ``item`` to ``--output FILE``, into ``--output DIR``, or into the current directory,
    named ``stem`` (plus -2, -3... when taken). An explicit FILE that exists is refused."""
    from core.terminal import unique_path

    ext = mimetypes.guess_extension(item.mime_type) or "." + item.mime_type.split("/")[-1]
    ext = {".jpe": ".jpg", ".oga": ".ogg"}.get(ext, ext)
    if output and not (Path(output).is_dir() or output.endswith("/")):
        path = Path(output).expanduser()
        if path.exists():
            raise OutputExists(f"{path} already exists; choose another --output name or remove it first")
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        path = unique_path(Path(output or ".").expanduser(), stem, ext)
    with open(path, "xb") as f:  # "x": never replace a file that appeared meanwhile
        f.write(item.data)
    return path


def link_path(link: ResourceLink) -> str:
    """A file:// link as a path; anything else as its URI."""
    parsed = urlparse(link.uri)
    return unquote(parsed.path) if parsed.scheme == "file" else link.uri


def print_result(result: ToolResult, args: argparse.Namespace, *, tool: str, arguments: dict[str, Any]) -> int:
    """Print ``result`` for a person (or as JSON with ``--json``); returns the exit status."""
    from core.terminal import highlight

    if getattr(args, "json", False):
        json.dump(result_json(result), sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
        return 1 if result.is_error else 0
    s = result.structured
    texts = [c.text for c in result.content if isinstance(c, Text)]
    if isinstance(s, dict) and isinstance(s.get("code"), str):
        print(highlight(s["code"].rstrip("\n"), s.get("language")))
    elif isinstance(s, dict) and isinstance(s.get("answer"), str):
        print(s["answer"])
    elif s is not None and (not texts or _is_json_of(texts, s)):
        print(json.dumps(s, indent=2, ensure_ascii=False, default=str))
    else:
        for text in texts:
            print(text)
    links = [c for c in result.content if isinstance(c, ResourceLink)]
    media = [c for c in result.content if isinstance(c, Image | Audio)]
    output = getattr(args, "output", None)
    for item in media:
        saved = next((link for link in links if link.mime_type == item.mime_type), None)
        if saved is not None and not output:
            links.remove(saved)
            print(f"saved: {link_path(saved)}")
            continue
        try:
            path = save_media(item, output=output, stem=request_name(tool, arguments))
        except OutputExists as exc:
            print(f"loom: {exc}", file=sys.stderr)
            return 1
        print(f"saved: {path}")
    for link in links:
        print(f"file: {link_path(link)}")
    for f in (s.get("files") or []) if isinstance(s, dict) else []:
        print(f"file: {f}")
    return 1 if result.is_error else 0


def _is_json_of(texts: list[str], structured: Any) -> bool:
    try:
        return len(texts) == 1 and json.loads(texts[0]) == structured
    except ValueError:
        return False
