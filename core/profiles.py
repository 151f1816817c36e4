"""Tool profiles: named subsets of the tool registry for clients with small contexts.

A profile lists the tools a client sees (``tools``/``exclude`` globs on tool names) and,
optionally, a wider set it may call once it has found them with ``tools.search``
(``callable``). Profiles come from ``[profiles.<name>]`` in loom.toml on top of the
built-in ones below. Every surface uses the same two functions:

* ``profile_tools(app, name)``: the tools to list (MCP ``/mcp/<name>``, the OpenAI and
  Anthropic ``tools`` lists);
* ``profile_allows(app, name, tool)``: whether a call to ``tool`` is served;
* ``api_tools(app, name, "openai" | "anthropic")``: the same list shaped for those APIs'
  ``tools`` parameter, with the name map (their names cannot contain dots).
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Any

from .config import ConfigError, ProfileConfig
from .tools import Tool, ToolError

SEARCH_TOOL = "tools.search"

BUILTIN_PROFILES: dict[str, ProfileConfig] = {
    "all": ProfileConfig(description="Every tool.", tools=["*"]),
    "media": ProfileConfig(
        description="Seeing, drawing, filming and speaking: vision, image and video generation, voice.",
        tools=["vision.*", "imagegen.*", "video.*", "voice.*", SEARCH_TOOL],
    ),
    "coding": ProfileConfig(
        description="Writing and running code in a workspace, with research and memory.",
        tools=["coder.*", "browser.*", "memory.*", SEARCH_TOOL],
    ),
    "discover": ProfileConfig(
        description="One tool, tools.search, that finds the few tools a task needs; every tool it "
                    "returns may then be called.",
        tools=[SEARCH_TOOL],
        callable=["*"],
    ),
}


class ProfileNotFound(ToolError):
    """No profile by that name; the message lists the ones there are."""


_PROFILE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def profiles(config: Any) -> dict[str, ProfileConfig]:
    """Every profile by name: the built-in ones, overridden or extended by the config's."""
    for name in config.profiles:
        if not _PROFILE_NAME.match(name):
            raise ConfigError(f"{config.source or 'the configuration'}: [profiles.{name}]: a profile name is "
                              "part of a URL path (/mcp/<name>): use letters, digits, '_' and '-'")
    return {**BUILTIN_PROFILES, **config.profiles}


def get_profile(config: Any, name: str) -> ProfileConfig:
    known = profiles(config)
    try:
        return known[name]
    except KeyError:
        raise ProfileNotFound(f"unknown tool profile {name!r}; known: {', '.join(sorted(known))} "
                              "(define more under [profiles.<name>] in loom.toml)") from None


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def profile_tools(app: Any, name: str) -> list[Tool]:
    """The registered tools profile ``name`` lists, sorted by name. Raises ``ProfileNotFound``."""
    profile = get_profile(app.config, name)
    return [t for t in app.tools.list()
            if _matches(t.name, profile.tools) and not _matches(t.name, profile.exclude)]


def profile_allows(app: Any, name: str, tool: str) -> bool:
    """Whether a client on profile ``name`` may call ``tool`` (listed, or callable once found)."""
    profile = get_profile(app.config, name)
    if _matches(tool, profile.exclude):
        return False
    return _matches(tool, profile.tools) or (profile.callable is not None and _matches(tool, profile.callable))


def searchable_tools(app: Any, name: str | None) -> list[Tool]:
    """What ``tools.search`` may return for a client on profile ``name`` (None: any tool)."""
    tools = [t for t in app.tools.list() if t.name != SEARCH_TOOL]
    if name is None:
        return tools
    return [t for t in tools if profile_allows(app, name, t.name)]


_API_NAME = re.compile(r"[^A-Za-z0-9_-]")


def api_tools(app: Any, name: str, style: str = "openai") -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Profile ``name``'s tools as an OpenAI (``"openai"``) or Anthropic (``"anthropic"``)
    ``tools`` list, and the map from the names used there back to Loom's tool names.

    Both APIs accept only ``[A-Za-z0-9_-]{1,64}`` as a function name, so ``voice.speak``
    is sent as ``voice_speak``; look a model's tool call up in the map to call the tool.
    """
    specs: list[dict[str, Any]] = []
    back: dict[str, str] = {}
    for tool in profile_tools(app, name):
        api_name = _API_NAME.sub("_", tool.name)[:64]
        while api_name in back:  # two names that differ only in punctuation
            api_name = api_name[:62] + f"_{len(back) % 10}"
        back[api_name] = tool.name
        if style == "openai":
            specs.append({"type": "function", "function": {
                "name": api_name, "description": tool.description, "parameters": tool.input_schema}})
        elif style == "anthropic":
            specs.append({"name": api_name, "description": tool.description, "input_schema": tool.input_schema})
        else:
            raise ValueError(f"style must be 'openai' or 'anthropic', got {style!r}")
    return specs, back
