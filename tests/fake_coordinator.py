"""FakeCoordinator: a STAND-IN for the coordinator LLM, for behaviour tests.

The packaged SmolLM2-135M is real but too small to follow a conversation reliably, so the
tests that check *behaviour* (a follow-up answered from an earlier turn, a summary that
carries a fact forward) use this fake, and the tests that check *plumbing* use SmolLM2.
It is loaded by the pool like any model (backend ``fake-coordinator``, serving the ``chat``
capability) and reached through the same ``Chat`` handle, invoker and stream as a real
model; it emits its answer word by word, optionally with a delay per word.
"""

from __future__ import annotations

import re
import time
from types import SimpleNamespace
from typing import Any

from core.hookspecs import hookimpl

SISTER = r"\bsister (?:is )?(?:called |named )?([A-Z]\w+)"
STORY = ("Once upon a time a small fox lived at the edge of a wood. She was quick and very clever. "
         "One winter morning she met a crow who had found some cheese. The fox smiled and began to talk.")


class FakeCoordinator:
    """Answers from what it is given (see ``answer``); records every call and when each word left."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[list[dict[str, Any]]] = []
        self.word_times: list[float] = []  # perf_counter() as each word is handed out
        self.finished_at: list[float] = []

    def reply(self, request: Any, emit: Any, cancel: Any) -> Any:
        """``chat.generate``: the answer, one ``ChatDelta`` per word."""
        from core.capabilities import ChatDelta, ChatResult, ChatUsage

        self.calls.append(request.messages)
        words = re.findall(r"\S+\s*", self.answer(request.messages))[: request.max_tokens or None]
        t0 = time.perf_counter()
        for i, word in enumerate(words, 1):
            if self.delay:
                time.sleep(self.delay)
            if cancel.is_set():
                return ChatResult("".join(words[: i - 1]), "cancelled")
            self.word_times.append(time.perf_counter())
            emit(ChatDelta(word, i))
        self.finished_at.append(time.perf_counter())
        return ChatResult("".join(words), "stop", usage=ChatUsage(completion_tokens=len(words),
                                                                  total_s=time.perf_counter() - t0))

    @staticmethod
    def answer(messages: list[dict[str, Any]]) -> str:
        system = str(messages[0]["content"])
        user = str(messages[-1]["content"])
        seen = "\n".join(str(m["content"]) for m in messages)
        if "summarise conversations" in system:  # the rolling summary
            return _summary(user)
        if re.search(r"\bpacking list\b", user, re.I):
            who = re.findall(SISTER, seen, re.I)
            return f"Packing list for {who[-1]}: passport, sun hat, walking shoes." if who else \
                "Packing list for whom? I do not know who you mean."
        if re.search(r"\bstory\b", user, re.I):
            return STORY
        return f"Noted: {user[:80].strip()}"


def _summary(prompt: str) -> str:
    before = re.search(r"Summary so far:\n(.*?)\n\nNew turns:", prompt, re.S)
    names = re.findall(SISTER, prompt, re.I)
    facts = [] if before is None or "nothing yet" in before.group(1) else [before.group(1).strip()]
    facts += [f"The user's sister is called {n}." for n in names if n not in " ".join(facts)]
    turns = len(re.findall(r"^User:", prompt, re.M))
    return " ".join([*facts, f"They chatted about {turns} more things."])


class FakeCoordinatorBackend:
    """Backend ``fake-coordinator``: hands out one shared ``FakeCoordinator``, serving ``chat``."""

    name = "fake-coordinator"
    devices = ("cpu",)
    capabilities = ("chat",)

    def __init__(self, model: FakeCoordinator) -> None:
        self.model = model

    def estimate(self, spec: Any, device: str) -> Any:
        from core.backends import MemoryEstimate

        return MemoryEstimate(total=1_000_000, device="cpu")

    def load(self, spec: Any, device: str) -> Any:
        return self.model

    def unload(self, handle: Any) -> None:
        pass

    def describe(self, handle: Any, spec: Any) -> Any:
        from core.capabilities import ModelInfo

        return ModelInfo(name=spec.name, backend=self.name, capabilities=self.capabilities, context_size=4096)

    def run(self, handle: Any, op: Any, request: Any, emit: Any, cancel: Any) -> Any:
        from core.capabilities import COUNT, GENERATE, CapabilityError, TokenCount

        if op == GENERATE:
            return handle.reply(request, emit, cancel)
        if op == COUNT:
            return TokenCount(tokens=len(str(request.messages or request.text)) // 3)
        raise CapabilityError(f"the fake coordinator does not serve {op!r}")


def plugin(model: FakeCoordinator) -> Any:
    """A plugin object registering the backend (pass it in ``make_app(extra=...)``)."""
    return SimpleNamespace(loom_register_backends=hookimpl(
        lambda register: register("fake-coordinator", lambda: FakeCoordinatorBackend(model))))


def config(**assistant: Any) -> Any:
    """A ``LoomConfig`` whose coordinator is the fake (and ``[plugin.assistant]`` settings)."""
    from core.config import LoomConfig, ModelConfig, PoolConfig

    cfg = LoomConfig(pool=PoolConfig(ram_budget="8GiB"),
                     models={"fake": ModelConfig(backend="fake-coordinator", role="coordinator",
                                                 placement="inline")})  # the test holds the object
    cfg.plugin["assistant"] = {"llm_fallback": False, **assistant}
    return cfg


class Served:
    """A ``Loom`` served over real HTTP (MCP, the OpenAI API...) by uvicorn in a thread of
    this process, so a test can hold plugin objects (the fake) and still use real clients."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.base_url = ""
        self._server: Any = None
        self._thread: Any = None

    def __enter__(self) -> Served:
        import socket
        import threading

        import uvicorn

        from core.commands.serve import _build
        from core.surfaces.http import build_http_app

        asgi, _ = _build(self.app, auth=False, host="127.0.0.1", token=None, build_http_app=build_http_app)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(asgi, lifespan="on", log_level="warning", access_log=False,
                                                     log_config=None))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(30)

    def openai(self) -> Any:
        from openai import OpenAI

        return OpenAI(base_url=f"{self.base_url}/v1", api_key="unused", max_retries=0)
