"""Test-only Loom plugin: the MCP conformance suite's fixture tools, resources and prompts.

Loaded only for the conformance run (``scripts/conformance.sh``) through an entry point
written by ``entrypoint.write_dist_info``. The suite calls tools by bare names
(``test_simple_text``), so the plugin publishes MCP aliases for its ``conformance.*``
tools. Shapes Loom's typed results do not model (embedded resources, input-required
results, a missing-capability protocol error) are answered through the MCP surface's
escape hatch (``McpResponse``), exactly as a plugin author would.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

import anyio
import msgspec

from core.hookspecs import hookimpl
from core.results import Audio, Image
from core.tools import NoArgs, ToolContext, ToolError

TEST_IMAGE_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
TEST_AUDIO_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
CONFIRM_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

_app: Any = None


def _mcp(ctx: ToolContext) -> Any:
    return ctx.extra["mcp"]


def _respond(result: Any) -> Any:
    from core.surfaces.mcp import McpResponse

    raise McpResponse(result)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _elicit_req(message: str, schema: dict[str, Any]) -> Any:
    import mcp_types as t

    return t.ElicitRequest(params=t.ElicitRequestFormParams(message=message, requested_schema=schema))


def _sample_req(text: str, max_tokens: int) -> Any:
    import mcp_types as t

    return t.CreateMessageRequest(params=t.CreateMessageRequestParams(
        messages=[t.SamplingMessage(role="user", content=t.TextContent(type="text", text=text))],
        max_tokens=max_tokens))


def _input_required(requests: dict[str, Any], state: str | None = None) -> Any:
    import mcp_types as t

    return _respond(t.InputRequiredResult(input_requests=requests, request_state=state))


# --- content tools ------------------------------------------------------------------


async def test_simple_text(args: NoArgs) -> str:
    """Tests simple text content response"""
    return "This is a simple text response for testing."


async def test_image_content(args: NoArgs) -> Image:
    """Tests image content response"""
    return Image(base64.b64decode(TEST_IMAGE_BASE64), "image/png")


async def test_audio_content(args: NoArgs) -> Audio:
    """Tests audio content response"""
    return Audio(base64.b64decode(TEST_AUDIO_BASE64), "audio/wav")


_EMBEDDED = {"type": "resource", "resource": {"uri": "test://embedded-resource", "mimeType": "text/plain",
                                              "text": "This is an embedded resource content."}}


async def test_embedded_resource(args: NoArgs) -> None:
    """Tests embedded resource content response"""
    _respond({"content": [_EMBEDDED]})


async def test_multiple_content_types(args: NoArgs) -> None:
    """Tests response with multiple content types (text, image, resource)"""
    _respond({"content": [
        {"type": "text", "text": "Multiple content types test:"},
        {"type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json",
                                          "text": '{"test": "data", "value": 123}'}},
    ]})


async def test_tool_with_logging(args: NoArgs, ctx: ToolContext) -> str:
    """Tests tool that emits log messages during execution"""
    for i, msg in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if i:
            await anyio.sleep(0.05)
        await _mcp(ctx).log("info", msg)
    return "Tool with logging executed successfully"


async def test_tool_with_progress(args: NoArgs, ctx: ToolContext) -> str:
    """Tests tool that reports progress notifications"""
    for step in (0, 50, 100):
        await ctx.progress(step, 100, f"Completed step {step} of 100")
        if step < 100:
            await anyio.sleep(0.05)
    meta = _mcp(ctx).rctx.meta
    return str(meta.get("progress_token") if meta else 0)


async def test_error_handling(args: NoArgs) -> str:
    """Tests error response handling"""
    raise ToolError("This tool intentionally returns an error for testing")


# --- server-to-client requests (2025-11-25) -----------------------------------------


class PromptArgs(msgspec.Struct):
    prompt: str


async def test_sampling(args: PromptArgs, ctx: ToolContext) -> str:
    """Tests server-initiated sampling (LLM completion request)"""
    import mcp_types as t

    call = _mcp(ctx)
    try:
        result = await call.session.create_message(
            messages=[t.SamplingMessage(role="user", content=t.TextContent(type="text", text=args.prompt))],
            max_tokens=100, related_request_id=call.request_id)
        text = result.content.text if result.content.type == "text" else "No response"
        return f"LLM response: {text}"
    except Exception as exc:
        return f"Sampling not supported or error: {exc}"


class MessageArgs(msgspec.Struct):
    message: str


async def _elicit(ctx: ToolContext, message: str, schema: dict[str, Any]) -> tuple[str, Any]:
    call = _mcp(ctx)
    res = await call.session.elicit_form(message, schema, related_request_id=call.request_id)
    return res.action, (res.content if res.action == "accept" else {})


async def test_elicitation(args: MessageArgs, ctx: ToolContext) -> str:
    """Tests server-initiated elicitation (user input request)"""
    schema = {"type": "object", "properties": {"response": {"type": "string", "description": "User's response"}},
              "required": ["response"]}
    try:
        action, content = await _elicit(ctx, args.message, schema)
    except Exception as exc:
        return f"Elicitation not supported or error: {exc}"
    return f"User response: action={action}, content={_compact(content)}"


SEP1034_SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "default": "John Doe", "description": "User name"},
    "age": {"type": "integer", "default": 30, "description": "User age"},
    "score": {"type": "number", "default": 95.5, "description": "User score"},
    "status": {"type": "string", "default": "active", "description": "User status",
               "enum": ["active", "inactive", "pending"]},
    "verified": {"type": "boolean", "default": True, "description": "Verification status"},
}}


async def test_elicitation_sep1034_defaults(args: NoArgs, ctx: ToolContext) -> str:
    """Tests elicitation with default values for all primitive types (SEP-1034)"""
    try:
        action, content = await _elicit(ctx, "Please provide user information", SEP1034_SCHEMA)
    except Exception as exc:
        return f"Elicitation not supported or error: {exc}"
    return f"Elicitation result: action={action}, content={_compact(content)}"


SEP1330_SCHEMA = {"type": "object", "required": ["untitledSingle", "titledSingle", "untitledMulti", "titledMulti",
                                                 "legacyEnum"], "properties": {
    "untitledSingle": {"type": "string", "description": "Simple enum without titles",
                       "enum": ["active", "inactive", "pending"]},
    "titledSingle": {"type": "string", "description": "Enum with titled options (oneOf)", "oneOf": [
        {"const": "low", "title": "Low Priority"}, {"const": "medium", "title": "Medium Priority"},
        {"const": "high", "title": "High Priority"}]},
    "untitledMulti": {"type": "array", "description": "Multi-select without titles",
                      "items": {"type": "string", "enum": ["read", "write", "execute"]}},
    "titledMulti": {"type": "array", "description": "Multi-select with titled options", "items": {"anyOf": [
        {"const": "feature", "title": "New Feature"}, {"const": "bug", "title": "Bug Fix"},
        {"const": "docs", "title": "Documentation"}]}},
    "legacyEnum": {"type": "string", "description": "Legacy enum with enumNames",
                   "enum": ["small", "medium", "large"], "enumNames": ["Small Size", "Medium Size", "Large Size"]},
}}


async def test_elicitation_sep1330_enums(args: NoArgs, ctx: ToolContext) -> str:
    """Tests elicitation with enum schema variations per SEP-1330"""
    try:
        action, content = await _elicit(ctx, "Please select values using different enum schema types",
                                        SEP1330_SCHEMA)
    except Exception as exc:
        return f"Elicitation not supported or error: {exc}"
    return f"Elicitation completed: action={action}, content={_compact(content)}"


async def test_reconnection(args: NoArgs, ctx: ToolContext) -> str:
    """Tests SSE polling by closing stream mid-call (SEP-1699)"""
    call = _mcp(ctx)
    await call.log("info", "Before disconnect")
    if call.rctx.close_sse_stream is not None:
        await call.rctx.close_sse_stream()
    await anyio.sleep(0.2)
    await call.log("info", "After reconnect")
    return "Reconnection test completed"


async def test_missing_capability(args: NoArgs, ctx: ToolContext) -> str:
    """Tests that a handler-raised MISSING_REQUIRED_CLIENT_CAPABILITY surfaces as a JSON-RPC error."""
    import mcp_types as t
    from mcp.shared.exceptions import MCPError

    caps = _mcp(ctx).client_capabilities
    if caps is None or caps.sampling is None:
        raise MCPError(code=t.MISSING_REQUIRED_CLIENT_CAPABILITY,
                       message="This tool requires the client 'sampling' capability",
                       data={"requiredCapabilities": {"sampling": {}}})
    return "Client declared sampling capability; proceeding."


class RegionArgs(msgspec.Struct):
    region: Annotated[str, msgspec.Meta(description="Mirrored into the Mcp-Param-Region header",
                                        extra_json_schema={"x-mcp-header": "Region"})] = "<none>"


async def test_x_mcp_header(args: RegionArgs) -> str:
    """Tests SEP-2243 Mcp-Param-* server-side validation."""
    return f"region={args.region}"


async def test_logging_tool(args: NoArgs, ctx: ToolContext) -> str:
    """Emits a log message; on 2026-07-28 it reaches only clients that opted in with a log level."""
    await _mcp(ctx).log("info", "test_logging_tool ran")
    return "logged"


async def test_streaming_elicitation(args: NoArgs, ctx: ToolContext) -> str:
    """Asks through Loom's own ctx.elicit (an InputRequiredResult on 2026-07-28, never a request)."""
    if ctx.elicit is None:
        return "This client cannot be asked."
    answer = await ctx.elicit("What is your name?", NAME_SCHEMA)
    return f"Hello, {answer.get('name') if answer else 'stranger'}!"


# --- input-required results (2026-07-28) -------------------------------------------


async def test_input_required_result_elicitation(args: NoArgs, ctx: ToolContext) -> str:
    """Tests InputRequiredResult with a single elicitation request"""
    responses = _mcp(ctx).input_responses
    if responses and "user_name" in responses:
        content = getattr(responses["user_name"], "content", None)
        return f"Hello, {content.get('name', 'stranger') if content else '?'}!"
    return _input_required({"user_name": _elicit_req("What is your name?", NAME_SCHEMA)})


async def test_input_required_result_sampling(args: NoArgs, ctx: ToolContext) -> str:
    """Tests InputRequiredResult with a single sampling request"""
    responses = _mcp(ctx).input_responses
    if responses and "capital_question" in responses:
        content = getattr(responses["capital_question"], "content", None)
        return f"Model said: {getattr(content, 'text', '?')}"
    return _input_required({"capital_question": _sample_req("What is the capital of France?", 100)})


async def test_input_required_result_list_roots(args: NoArgs, ctx: ToolContext) -> str:
    """Tests InputRequiredResult with a single roots/list request"""
    import mcp_types as t

    responses = _mcp(ctx).input_responses
    if responses and "client_roots" in responses:
        return f"Client exposed {len(getattr(responses['client_roots'], 'roots', []))} root(s)."
    return _input_required({"client_roots": t.ListRootsRequest()})


async def test_input_required_result_request_state(args: NoArgs, ctx: ToolContext) -> str:
    """Tests requestState round-tripping in the InputRequiredResult flow"""
    call = _mcp(ctx)
    if call.input_responses and "confirm" in call.input_responses and call.request_state == "request-state-nonce":
        return "state-ok: confirmation received"
    return _input_required({"confirm": _elicit_req("Please confirm", CONFIRM_SCHEMA)}, "request-state-nonce")


async def test_input_required_result_multiple_inputs(args: NoArgs, ctx: ToolContext) -> str:
    """Tests InputRequiredResult carrying elicitation, sampling and roots requests together"""
    import mcp_types as t

    responses = _mcp(ctx).input_responses
    if responses and {"user_name", "greeting", "client_roots"} <= responses.keys():
        return "All inputs received."
    return _input_required({"user_name": _elicit_req("What is your name?", NAME_SCHEMA),
                            "greeting": _sample_req("Generate a greeting", 50),
                            "client_roots": t.ListRootsRequest()}, "multiple-inputs")


async def test_input_required_result_multi_round(args: NoArgs, ctx: ToolContext) -> str:
    """Tests a three-round InputRequiredResult flow with evolving requestState"""
    call = _mcp(ctx)
    state = json.loads(call.request_state) if call.request_state else {"round": 0}
    responses = call.input_responses or {}
    step1 = _elicit_req("Step 1: What is your name?", NAME_SCHEMA)
    if state["round"] == 1 and "step1" in responses:
        content = getattr(responses["step1"], "content", None) or {}
        color = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
        return _input_required({"step2": _elicit_req("Step 2: What is your favorite color?", color)},
                               json.dumps({"round": 2, "name": content.get("name")}))
    if state["round"] == 2 and "step2" in responses:
        content = getattr(responses["step2"], "content", None) or {}
        return f"{state.get('name')} likes {content.get('color')}."
    return _input_required({"step1": step1}, json.dumps({"round": 1}))


async def test_input_required_result_tampered_state(args: NoArgs, ctx: ToolContext) -> str:
    """Tests that the server rejects a tampered requestState echo (the SDK's boundary does)."""
    call = _mcp(ctx)
    if call.request_state is None:
        return _input_required({"confirm": _elicit_req("Please confirm", CONFIRM_SCHEMA)}, "round-1")
    return f"state-ok: {call.request_state}"


async def test_input_required_result_capabilities(args: NoArgs, ctx: ToolContext) -> str:
    """Tests that inputRequests only include methods the client declared support for"""
    caps = _mcp(ctx).client_capabilities
    requests: dict[str, Any] = {}
    if caps is None or caps.sampling is not None:
        requests["sample"] = _sample_req("Say hello", 50)
    if caps is None or caps.elicitation is not None:
        requests["ask"] = _elicit_req("What is your name?", NAME_SCHEMA)
    return _input_required(requests, "capability-gated")


# --- list changes (subscriptions/listen) --------------------------------------------


async def _dynamic(args: NoArgs) -> str:
    """A tool registered and removed by test_trigger_tool_change."""
    return "dynamic"


async def test_trigger_tool_change(args: NoArgs, ctx: ToolContext) -> str:
    """Mutates the tool list and announces it to subscriptions/listen streams (SEP-2575)"""
    ctx.app.tools.add(_dynamic, plugin="conformance-dynamic", name="test_dynamic_tool")
    ctx.app.tools.remove_plugin("conformance-dynamic")  # each change is announced
    return "tool list changed"


async def test_trigger_prompt_change(args: NoArgs, ctx: ToolContext) -> str:
    """Mutates the prompt list and announces it to subscriptions/listen streams (SEP-2575)"""
    ctx.app.services["mcp"].changed("prompts")
    return "prompt list changed"


class Anything(msgspec.Struct):
    """Accepts any arguments: the schema below is what the scenario inspects."""


JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                          "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                   "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                   "phone": {"type": "string"}, "email": {"type": "string"}},
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


async def json_schema_2020_12_tool(args: Anything) -> str:
    """Tests JSON Schema 2020-12 keyword preservation in tools/list."""
    return "json_schema_2020_12_tool"


TOOLS = [test_simple_text, test_image_content, test_audio_content, test_embedded_resource,
         test_multiple_content_types, test_tool_with_logging, test_tool_with_progress, test_error_handling,
         test_sampling, test_elicitation, test_elicitation_sep1034_defaults, test_elicitation_sep1330_enums,
         test_reconnection, test_missing_capability, test_logging_tool, test_streaming_elicitation,
         test_x_mcp_header, test_input_required_result_elicitation,
         test_input_required_result_sampling, test_input_required_result_list_roots,
         test_input_required_result_request_state, test_input_required_result_multiple_inputs,
         test_input_required_result_multi_round, test_input_required_result_tampered_state,
         test_input_required_result_capabilities, test_trigger_tool_change, test_trigger_prompt_change,
         json_schema_2020_12_tool]


@hookimpl
def loom_configure(config: Any, app: Any) -> None:
    from core.surfaces.mcp import ALIASES_SERVICE

    app.services.setdefault(ALIASES_SERVICE, {}).update({t.__name__: f"conformance.{t.__name__}" for t in TOOLS})


@hookimpl
def loom_register_tools(register: Any) -> None:
    for tool in TOOLS:
        registered = register(tool)
        if tool is json_schema_2020_12_tool:
            registered._schema = JSON_SCHEMA_2020_12  # the scenario checks keywords msgspec never emits


# --- resources and prompts -----------------------------------------------------------


@hookimpl
def loom_register_resources(register: Any) -> None:
    register("test://static-text", lambda app: "This is the content of the static text resource.",
             name="static_text_resource", description="A static text resource for testing", mime_type="text/plain")
    register("test://static-binary", lambda app: base64.b64decode(TEST_IMAGE_BASE64),
             name="static_binary_resource", description="A static binary resource (image) for testing",
             mime_type="image/png")
    register("test://template/{id}/data",
             lambda app, id="": json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}),
             name="template_resource", description="A resource template with parameter substitution",
             mime_type="application/json")
    register("test://watched-resource", lambda app: "Watched resource content", name="watched_resource",
             description="A resource that can be subscribed to for updates", mime_type="text/plain")


def test_simple_prompt() -> list:
    """A simple prompt without arguments"""
    return [("user", "This is a simple prompt for testing.")]


def test_prompt_with_arguments(arg1: str, arg2: str) -> list:
    """A prompt with required arguments"""
    return [("user", f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]


def test_prompt_with_embedded_resource(resourceUri: str) -> list:
    """A prompt that includes an embedded resource"""
    return [("user", {"type": "resource", "resource": {"uri": resourceUri, "mimeType": "text/plain",
                                                        "text": "Embedded resource content for testing."}}),
            ("user", "Please process the embedded resource above.")]


def test_prompt_with_image() -> list:
    """A prompt that includes image content"""
    return [("user", Image(base64.b64decode(TEST_IMAGE_BASE64), "image/png")),
            ("user", "Please analyze the image above.")]


def test_input_required_result_prompt() -> list:
    """Tests InputRequiredResult from prompts/get (SEP-2322 non-tool request)"""
    from core.surfaces.mcp import current_call

    call = current_call.get()
    responses = call.input_responses if call else None
    if responses and "user_context" in responses:
        content = getattr(responses["user_context"], "content", None) or {}
        return [("user", f"Use the following context: {content.get('context', '?')}")]
    schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
    return _input_required({"user_context": _elicit_req("What context should the prompt use?", schema)})


@hookimpl
def loom_register_prompts(register: Any) -> None:
    for func in (test_simple_prompt, test_prompt_with_arguments, test_prompt_with_embedded_resource,
                 test_prompt_with_image, test_input_required_result_prompt):
        register(func, name=func.__name__)
