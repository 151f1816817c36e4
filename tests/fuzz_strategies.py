"""Hypothesis strategies for the fuzz suite: tool arguments from a tool's JSON schema, mixed
with the hostile values the probes of issue 20 used (over-long paths, ids past 2**63,
escapes, invalid selectors, deep nesting), and junk of any shape."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

NASTY_STRINGS = [
    "", " ", "..", "../../../../etc/passwd", "/etc/shadow", "~/.ssh/id_rsa", "a" * 5000, "d/" * 2100,
    "n" * 300, "\x00", "nul\x00byte", "file:///etc/passwd", "http://127.0.0.1:1/", "http://[::1]:8765/mcp",
    "http://169.254.169.254/latest/meta-data/", "https://localhost./x.png", "data:image/png;base64,AAAA",
    "data:text/html,<script>alert(1)</script>", "javascript:alert(1)", "%s%n%x", "${jndi:ldap://x}",
    "' OR 1=1 --", "div[[[", "#", "name=", "\u202e\u0635", "🙂" * 300, "\r\n\r\nHTTP/1.1 200 OK", "-rf",
]
NASTY_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30]
NASTY_FLOATS = [0.0, -0.0, -1.0, 1e-300, 1e308, -1e308, 3.5]

_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                  st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
                  st.sampled_from(NASTY_STRINGS))
JUNK = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)


def deep(depth: int = 200) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def from_schema(schema: dict[str, Any], defs: dict[str, Any], level: int = 0) -> st.SearchStrategy[Any]:
    """Values for ``schema``: mostly valid, sometimes at or past its limits, sometimes junk."""
    if level > 6:
        return JUNK
    if "$ref" in schema:
        return from_schema(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs, level + 1)
    if "anyOf" in schema:
        return st.one_of(*(from_schema(s, defs, level + 1) for s in schema["anyOf"]))
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), st.text(max_size=10))
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*(from_schema({**schema, "type": k}, defs, level) for k in kind))
    if kind == "string":
        lo = schema.get("minLength", 0)
        hi = min(schema.get("maxLength", 120), 120)
        valid = st.text(min_size=lo, max_size=max(lo, hi))
        return st.one_of(valid, st.sampled_from(NASTY_STRINGS))
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return st.one_of(st.integers(min_value=lo, max_value=hi), st.sampled_from(NASTY_INTS))
    if kind == "number":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return st.one_of(st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False),
                         st.sampled_from(NASTY_FLOATS))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs, level + 1)
        return st.lists(items, min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4) or 1)
    if kind == "object" or "properties" in schema:
        return object_args(schema, defs, level)
    return JUNK


def object_args(schema: dict[str, Any], defs: dict[str, Any], level: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    props: dict[str, Any] = schema.get("properties", {})
    required = [k for k in schema.get("required", []) if k in props]
    optional = [k for k in props if k not in required]
    fields = {k: from_schema(props[k], defs, level + 1) for k in props}
    return st.fixed_dictionaries({k: fields[k] for k in required},
                                 optional={k: fields[k] for k in optional})


def tool_arguments(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Arguments for a tool: from its schema (most of the time), with a stray key, of the
    wrong shape, or deeply nested."""
    defs = schema.get("$defs", {})
    good = object_args(schema, defs)
    stray = st.builds(lambda d, k, v: {**d, k: v}, good, st.text(min_size=1, max_size=8), JUNK)
    wrong = st.dictionaries(st.sampled_from(list(schema.get("properties", {})) or ["x"]), JUNK, max_size=3)
    return st.one_of(good, good, good, stray, wrong, st.just({"nested": deep()}))
