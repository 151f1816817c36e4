"""Degrade instead of failing: a plan step whose model role nothing serves (or whose plugin
is off) is skipped with the one command that would enable it; what depends on it goes too,
and when nothing is left the coordinator answers the request itself."""

from __future__ import annotations

from plugins.assistant.plan import Plan, Step
from plugins.assistant.service import skip_unavailable


def plan(*steps: Step) -> Plan:
    return Plan(intent="imagegen", steps=list(steps), reason="rules", confidence=0.9)


def test_a_missing_image_model_skips_drawing_and_what_needs_the_picture(make_app):
    app = make_app("assistant", "imagegen", "vision", "llamacpp")
    p = plan(Step(id="s1", tool="imagegen.generate", args={"text": "{request}"}),
             Step(id="s2", tool="vision.describe", args={"file": "{s1.file}", "text": "Describe this image."}))
    skipped = skip_unavailable(p, app)
    assert skipped[0].startswith("imagegen.generate: no imagegen model is configured")
    assert "loom models add flux --backend diffusers" in skipped[0] and "--role imagegen" in skipped[0]
    # a fresh install has no vision model either: describing the picture would need one too
    assert skipped[1:] == ["vision.describe: no vlm model is configured; enable it with: "
                           "loom pull Qwen/Qwen3-VL-2B-Instruct-GGUF:Q4_K_M"]
    assert [s.tool for s in p.steps] == ["assistant.chat"], "the coordinator answers what it can"
    assert "skipped s1, s2" in p.reason


def test_steps_that_can_run_are_kept_and_a_disabled_plugin_is_named(make_app):
    app = make_app("assistant", "llamacpp")
    p = plan(Step(id="s1", tool="assistant.chat", args={"text": "{request}"}),
             Step(id="s2", tool="voice.speak", args={"text": "{s1.text}"}))
    skipped = skip_unavailable(p, app)
    assert [s.tool for s in p.steps] == ["assistant.chat"]
    assert skipped == ["voice.speak: the voice plugin is not enabled; enable it with: "
                       "loom call admin.enable_plugin name=voice"]
    whole = plan(Step(id="s1", tool="assistant.chat", args={"text": "{request}"}))
    assert skip_unavailable(whole, app) == [] and len(whole.steps) == 1


def test_research_searches_by_default_and_the_search_can_be_turned_off(make_app):
    import anyio
    import pytest

    from core.config import LoomConfig
    from core.tools import ToolError
    from plugins.browser.manager import BrowserSettings

    assert BrowserSettings().search_url.startswith("https://html.duckduckgo.com/html/?q={query}")
    app = make_app("browser", config=LoomConfig(plugin={"browser": {"search_url": ""}}))

    async def research() -> None:
        async with app:
            await app.call("browser.research", {"question": "what is a lighthouse"})

    with pytest.raises(ToolError, match=r'searching is turned off \(\[plugin.browser\] search_url = ""\)'):
        anyio.run(research)
