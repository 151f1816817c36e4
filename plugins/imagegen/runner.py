"""Running a diffusers pipeline for a tool call: per-step progress, cancellation, outputs.

Shared by ``imagegen`` and ``video``. The pipeline runs in a worker thread while the
tool holds the model's pin (``pool.use``). Each denoising step ends in diffusers'
``callback_on_step_end``, where we report progress to the caller and check the call's
cancel flag; a cancelled call raises out of the pipeline at that step, so the remaining
steps and the VAE decode never run, the offload hooks are reset and torch's cache is
freed. A cancelled *task* (an MCP ``notifications/cancelled``) sets that flag and then
waits, shielded, for the thread to stop: the pin is held until the pipeline is really
idle, so the pool never unloads a model under a running generation.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from core.tools import ToolCancelled, ToolContext, ToolError

T = TypeVar("T")
MAX_SEED = 2**32 - 1
# How long a cancelled call waits for its pipeline to reach the next step boundary
# before giving the caller control back anyway (the thread still stops at that step).
STOP_WAIT_S = 600.0


class _Interrupted(Exception):
    """Raised inside the pipeline at a step boundary when the call was cancelled."""


def new_seed(seed: int | None) -> int:
    if seed is None:
        return secrets.randbelow(MAX_SEED + 1)
    if not 0 <= seed <= MAX_SEED:
        raise ToolError(f"seed must be between 0 and {MAX_SEED}, got {seed}")
    return seed


def generator(seed: int) -> Any:
    """A CPU generator: the same seed gives the same image on CPU and CUDA."""
    import torch

    return torch.Generator("cpu").manual_seed(seed)


async def run_blocking(fn: Callable[[], T], ctx: ToolContext) -> T:
    """Run ``fn`` in a worker thread; if this task is cancelled, stop ``fn`` at its next step."""
    done = anyio.Event()
    token = anyio.lowlevel.current_token()

    def work() -> T:
        try:
            return fn()
        finally:
            try:
                anyio.from_thread.run_sync(done.set, token=token)
            except RuntimeError:
                pass  # the loop is gone: nobody waits

    try:
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        ctx.cancelled.set()
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_WAIT_S):
            await done.wait()
        raise


class StepReporter:
    """The ``callback_on_step_end`` for one call: progress each step, stop when cancelled.

    The pipeline thread never waits for the caller: each step's report is queued to a
    forwarder task on the event loop (``forward``), which awaits the bus and the client's
    progress callback (an MCP notification) in order. A slow client cannot slow the model.
    """

    def __init__(self, ctx: ToolContext, total: int, label: str) -> None:
        self.ctx = ctx
        self.total = total
        self.label = label
        self.token = anyio.lowlevel.current_token()  # built on the event loop, called from the thread
        self.steps = 0
        self._send, self._recv = anyio.create_memory_object_stream[tuple[float, float, str]](max_buffer_size=4096)

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.steps = step + 1
        if self.ctx.cancelled.is_set():
            pipe._interrupt = True  # pipelines that swallow exceptions still skip the rest
            raise _Interrupted
        total = getattr(pipe, "_num_timesteps", None) or self.total
        item = (float(self.steps), float(total), f"{self.label}: step {self.steps}/{total}")
        try:
            anyio.from_thread.run_sync(self._send.send_nowait, item, token=self.token)
        except (RuntimeError, anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # loop shutting down, or 4096 reports behind: progress is best effort
        return kwargs

    async def forward(self) -> None:
        async with self._recv:
            async for progress, total, message in self._recv:
                await self.ctx.progress(progress, total, message)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (which calls the pipeline with this reporter) with the forwarder alongside."""
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.forward)
            try:
                result = await run_blocking(fn, self.ctx)
            except Exception as exc:  # raised below, not wrapped in the task group's ExceptionGroup
                error = exc
            finally:
                self._send.close()  # the forwarder drains what is queued, then ends
        if error is not None:
            raise error
        return result


def call_pipeline(handle: Any, pipe: Any, kwargs: dict[str, Any], reporter: StepReporter) -> Any:
    """Run one generation under the handle's lock (blocking; call from a worker thread)."""
    from .backend import free_memory

    while not handle.lock.acquire(timeout=0.1):
        reporter.ctx.check_cancelled()  # waiting behind another generation: still cancellable
    try:
        reporter.ctx.check_cancelled()
        try:
            return pipe(**kwargs, callback_on_step_end=reporter)
        except (_Interrupted, ToolCancelled):
            if hasattr(pipe, "maybe_free_model_hooks"):
                pipe.maybe_free_model_hooks()  # offloaded modules go back to the CPU
            free_memory()
            raise ToolCancelled(f"{reporter.label} was cancelled at step {reporter.steps}/{reporter.total}; "
                                "nothing was saved") from None
        finally:
            pipe._interrupt = False
    finally:
        handle.lock.release()


def outputs_dir(app: Any) -> Path:
    out = Path(app.config.data_dir) / "outputs"
    out.mkdir(parents=True, exist_ok=True)
    return out


def output_path(app: Any, prefix: str, seed: int, suffix: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return outputs_dir(app) / f"{prefix}-{stamp}-{seed}-{secrets.token_hex(3)}{suffix}"


def save_png(image: Any, path: Path, parameters: dict[str, Any], compress_level: int = 3) -> bytes:
    """Write a PNG with the parameters (JSON) and the seed as text chunks; return its bytes.

    zlib level 3 instead of PIL's 6: about twice as fast to encode (it is on every call's
    critical path) for files a few percent larger."""
    import io
    import json

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", json.dumps(parameters, sort_keys=True))
    info.add_text("seed", str(parameters.get("seed")))
    info.add_text("Software", "Loom")
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    data = buf.getvalue()
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


def model_or_hint(app: Any, role: str, explicit: str | None, hint: str) -> str:
    """The model to use: the one named, or the pool's model for ``role``, or a ToolError saying
    what to put in loom.toml."""
    from core.pool import ModelUnavailable

    pool = app.pool
    if explicit:
        pool.config_for(explicit)  # ModelUnavailable naming the known models
        return explicit
    try:
        return pool.model_for(role)
    except ModelUnavailable:
        raise ModelUnavailable(hint) from None
