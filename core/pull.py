"""Getting GGUF models from the Hugging Face Hub (or any server that speaks its API).

``plan_pull("Qwen/Qwen3-VL-2B-Instruct-GGUF:Q4_K_M")`` asks the Hub which files the repo
has (with sizes and SHA-256 sums) and picks the model file for the quantization asked
for, plus the vision projector (mmproj) when the repo has one. ``download`` fetches each
into ``<data_dir>/models/<owner>/<repo>/`` with a ``.part`` file that a later run resumes
(HTTP Range), checks the free disk space first, and verifies the checksum before the
file takes its final name. The endpoint is ``[pull] endpoint``, ``$HF_ENDPOINT``, or
the public Hub; ``$HF_TOKEN`` is sent when set (gated repos).
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tools import ToolError

DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK = 1 << 20
# Kept free beyond what the files need: a disk filled to the last byte breaks everything else.
DISK_MARGIN = 64 << 20
PREFERRED_QUANTS = ("Q4_K_M", "Q5_K_M", "Q8_0", "Q4_0", "F16")


class PullError(ToolError):
    """A pull that cannot go on; the message says what to do."""


@dataclass
class RemoteFile:
    name: str
    size: int | None
    sha256: str | None = None  # LFS files carry their SHA-256
    git_sha1: str | None = None  # small files: the git blob id

    @property
    def local_name(self) -> str:
        return Path(self.name).name


@dataclass
class PullPlan:
    repo: str
    endpoint: str
    model: list[RemoteFile]
    mmproj: RemoteFile | None = None
    tag: str | None = None
    revision: str = "main"
    dest: Path = field(default_factory=Path)

    def files(self) -> list[RemoteFile]:
        return [*self.model, *([self.mmproj] if self.mmproj else [])]

    def total(self) -> int:
        return sum(f.size or 0 for f in self.files())

    def path_of(self, f: RemoteFile) -> Path:
        return self.dest / f.local_name

    def model_name(self) -> str:
        base = self.repo.split("/")[-1].lower()
        base = re.sub(r"[-_.]gguf$", "", base)
        if self.tag and self.tag.lower() not in base:
            base = f"{base}-{self.tag.lower()}"
        return re.sub(r"[^a-z0-9_-]+", "-", base).strip("-") or "model"


def endpoint_of(config: Any, explicit: str | None = None) -> str:
    return (explicit or config.pull.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def models_dir(config: Any) -> Path:
    return Path(config.pull.models_dir).expanduser() if config.pull.models_dir else config.data_dir / "models"


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``owner/repo[:TAG or glob]`` -> (repo, selector)."""
    repo, _, selector = spec.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo):
        raise PullError(f"{spec!r} is not a Hub model: write owner/repo[:QUANT], "
                        "e.g. Qwen/Qwen3-VL-2B-Instruct-GGUF:Q4_K_M")
    return repo, selector or None


def list_files(repo: str, endpoint: str, revision: str = "main") -> list[RemoteFile]:
    """The repo's files with sizes and checksums, from the Hub's model API."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        info = HfApi(endpoint=endpoint).model_info(repo, revision=revision, files_metadata=True)
    except RepositoryNotFoundError:
        raise PullError(f"{repo} was not found on {endpoint} (or it is private: set HF_TOKEN)") from None
    except HfHubHTTPError as exc:
        raise PullError(f"{endpoint} refused the file list of {repo}: {exc}") from None
    except OSError as exc:
        raise PullError(f"cannot reach {endpoint}: {exc}; check the network, or set [pull] endpoint "
                        "(or HF_ENDPOINT) to a mirror") from None
    out = []
    for s in info.siblings or []:
        lfs = s.lfs
        sha = getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
        out.append(RemoteFile(s.rfilename, s.size, sha, None if lfs else s.blob_id))
    return out


def _shard_group(name: str) -> str:
    return re.sub(r"-\d{5}-of-\d{5}(?=\.gguf$)", "", name)


def choose(repo: str, files: list[RemoteFile], selector: str | None) -> tuple[list[RemoteFile], RemoteFile | None, str]:
    """The model file(s) (all shards of a split GGUF) and the mmproj for ``selector``."""
    ggufs = [f for f in files if f.name.lower().endswith(".gguf")]
    projectors = [f for f in ggufs if "mmproj" in Path(f.name).name.lower()]
    models = [f for f in ggufs if f not in projectors]
    if not models:
        raise PullError(f"{repo} has no GGUF model files; `loom pull` fetches GGUF models for llama.cpp "
                        "(look for a repo named ...-GGUF)")
    quants = sorted({q for f in models for q in re.findall(r"(?i)(?:IQ|Q|F|BF)\d[\w]*?(?=[.-]|$)",
                                                           Path(f.name).stem.split("-of-")[0])})
    tag = selector
    if selector and any(c in selector for c in "*?["):
        chosen = [f for f in models if fnmatch.fnmatch(f.name, selector) or fnmatch.fnmatch(Path(f.name).name,
                                                                                             selector)]
    elif selector:
        chosen = [f for f in models if re.search(rf"(?i)(?<![A-Za-z0-9]){re.escape(selector)}(?![A-Za-z0-9])",
                                                 Path(f.name).name)]
    elif len({_shard_group(f.name) for f in models}) == 1:
        chosen = models
    else:
        for q in PREFERRED_QUANTS:
            chosen = [f for f in models if q.lower() in f.name.lower()]
            if chosen:
                tag = q
                break
        else:
            chosen = []
    groups = {_shard_group(f.name) for f in chosen}
    if not chosen or len(groups) > 1:
        what = f"no file matching {selector!r}" if not chosen else f"{len(groups)} files match {selector!r}"
        raise PullError(f"{repo}: {what}; pick one of {', '.join(quants) or ', '.join(f.name for f in models)}, "
                        f"e.g. loom pull {repo}:{(quants or ['Q4_K_M'])[0]}")
    mmproj = None
    if projectors:
        mmproj = next((p for p in projectors if "f16" in p.name.lower()), None) or sorted(projectors,
                                                                                        key=lambda p: p.name)[0]
    return sorted(chosen, key=lambda f: f.name), mmproj, tag or ""


def plan_pull(config: Any, spec: str, *, endpoint: str | None = None) -> PullPlan:
    repo, selector = parse_spec(spec)
    ep = endpoint_of(config, endpoint)
    model, mmproj, tag = choose(repo, list_files(repo, ep), selector)
    return PullPlan(repo=repo, endpoint=ep, model=model, mmproj=mmproj, tag=tag or None,
                    dest=models_dir(config) / repo)


def check_space(plan: PullPlan) -> None:
    """Refuse before downloading when the files cannot fit (partial downloads count as had)."""
    plan.dest.mkdir(parents=True, exist_ok=True)
    needed = 0
    for f in plan.files():
        final, part = plan.path_of(f), plan.path_of(f).with_name(f.local_name + ".part")
        if final.exists():
            continue
        have = part.stat().st_size if part.exists() else 0
        needed += max((f.size or 0) - have, 0)
    free = shutil.disk_usage(plan.dest).free
    if needed + DISK_MARGIN > free:
        from .units import format_bytes

        raise PullError(f"not enough disk space in {plan.dest}: the download needs {format_bytes(needed)} more "
                        f"(plus {format_bytes(DISK_MARGIN)} kept free), {format_bytes(free)} is free; free some "
                        "space or set [pull] models_dir to a bigger disk")


Progress = Callable[[RemoteFile, int, int | None], None]


def download(plan: PullPlan, f: RemoteFile, *, on_progress: Progress | None = None, client: Any = None) -> Path:
    """Fetch ``f`` (resuming a ``.part`` file), verify it, and move it into place."""
    import httpx
    from huggingface_hub import hf_hub_url

    final = plan.path_of(f)
    if final.exists() and (f.size is None or final.stat().st_size == f.size):
        return final
    part = final.with_name(f.local_name + ".part")
    url = hf_hub_url(plan.repo, f.name, revision=plan.revision, endpoint=plan.endpoint)
    headers = {"Authorization": f"Bearer {os.environ['HF_TOKEN']}"} if os.environ.get("HF_TOKEN") else {}
    have = part.stat().st_size if part.exists() else 0
    if f.size is not None and have > f.size:
        part.unlink()  # longer than the file: not ours to resume
        have = 0
    if have:
        headers["Range"] = f"bytes={have}-"
    own = client is None
    client = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, read=60.0))
    try:
        with client.stream("GET", url, headers=headers) as r:
            if r.status_code == 416 and f.size is not None and have == f.size:
                pass  # already whole: only the check is left
            elif r.status_code not in (200, 206):
                raise PullError(f"{plan.endpoint} answered {r.status_code} for {f.name}")
            else:
                mode = "ab" if r.status_code == 206 else "wb"  # a server without Range starts over
                done = have if mode == "ab" else 0
                try:
                    with open(part, mode) as out:
                        for chunk in r.iter_bytes(CHUNK):
                            out.write(chunk)
                            done += len(chunk)
                            if on_progress:
                                on_progress(f, done, f.size)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        raise PullError(f"the disk filled up while writing {part} ({done} bytes in); free some "
                                        "space and run the same command again: it resumes from there") from None
                    raise
    except httpx.HTTPError as exc:
        raise PullError(f"the download of {f.name} broke off ({type(exc).__name__}: {exc}); run the same "
                        f"command again to resume from {part.stat().st_size if part.exists() else 0} bytes") from None
    finally:
        if own:
            client.close()
    verify(f, part)
    part.replace(final)
    return final


def verify(f: RemoteFile, path: Path) -> None:
    """Size and checksum against what the Hub listed; a bad file is removed, never kept."""
    size = path.stat().st_size
    if f.size is not None and size != f.size:
        raise PullError(f"{f.name}: got {size} bytes, the Hub lists {f.size}; run the same command again to "
                        "resume")
    if f.sha256:
        digest, expected = hashlib.sha256(), f.sha256
    elif f.git_sha1:
        digest, expected = hashlib.sha1(f"blob {size}\0".encode()), f.git_sha1  # git's blob id
    else:
        return
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        path.unlink()
        raise PullError(f"{f.name}: checksum mismatch (expected {expected[:16]}..., got "
                        f"{digest.hexdigest()[:16]}...); the damaged download was removed, run the same command "
                        "again to fetch it afresh")


# --- configuring what was pulled (the CLI and the daemon's Ollama-compatible /api/pull) -----


def guess_role(repo: str, has_mmproj: bool) -> str | None:
    if has_mmproj:
        return "vlm"
    if "coder" in repo.lower():
        return "coder"
    return None


def configure(plan: PullPlan, paths: dict[str, Path], config_path: Path, *, name: str | None = None,
              role: str | None = None, context_size: int | None = None) -> tuple[str, str | None]:
    """Write ``[models.NAME]`` for the pulled files into ``config_path``; returns (name, role)."""
    import msgspec

    from .config import ModelConfig, write_model

    name = name or plan.model_name()
    fields: dict[str, Any] = {"backend": "llama_cpp", "file": str(paths[plan.model[0].name])}
    if plan.mmproj:
        fields["mmproj"] = str(paths[plan.mmproj.name])
    role = role or guess_role(plan.repo, plan.mmproj is not None)
    if role:
        fields["role"] = role
    if context_size:
        fields["context_size"] = context_size
    write_model(config_path, name, msgspec.convert(fields, ModelConfig))
    return name, role


def config_path_of(config: Any) -> Path:
    from .config import default_config_path

    return Path(config.source) if config.source else default_config_path()


async def pull_for_api(app: Any, spec: str, *, stream: bool = True) -> Any:
    """Ollama's ``POST /api/pull`` on the daemon: the same download as ``loom pull``, its
    progress as NDJSON status lines (``pulling manifest``, ``downloading`` with ``total`` and
    ``completed``, ``verifying sha256 digest``, ``writing manifest``, ``success``), then the
    daemon re-reads its configuration."""
    import anyio
    import anyio.to_thread
    import msgspec
    from starlette.responses import JSONResponse, StreamingResponse

    send, receive = anyio.create_memory_object_stream[dict[str, Any]](256)

    def work(report: Any) -> dict[str, Any]:
        report({"status": "pulling manifest"})
        plan = plan_pull(app.config, spec)
        check_space(plan)
        paths: dict[str, Path] = {}
        for f in plan.files():
            digest = f"sha256:{f.sha256}" if f.sha256 else f.name

            def progress(rf: RemoteFile, done: int, total: int | None, digest: str = digest) -> None:
                report({"status": f"pulling {rf.local_name}", "digest": digest, "total": total, "completed": done})

            paths[f.name] = download(plan, f, on_progress=_throttled(progress))
            report({"status": "verifying sha256 digest"})
        report({"status": "writing manifest"})
        name, role = configure(plan, paths, config_path_of(app.config))
        return {"name": name, "role": role}

    async def run() -> None:
        def report(status: dict[str, Any]) -> None:
            anyio.from_thread.run(send.send, status)

        try:
            done = await anyio.to_thread.run_sync(work, report)
            app.reload_config()
            await send.send({"status": "success", "model": done["name"]})
        except (ToolError, OSError, ImportError) as exc:
            await send.send({"error": str(exc)})
        finally:
            send.close()

    if not stream:
        last: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            async with receive:
                async for status in receive:
                    last = status
        return JSONResponse(last, status_code=500 if "error" in last else 200)

    async def body() -> Any:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            async with receive:
                async for status in receive:
                    yield msgspec.json.encode(status) + b"\n"

    return StreamingResponse(body(), media_type="application/x-ndjson")


def remove_files(config: Any, model: Any) -> list[Path]:
    """Delete the files ``loom pull`` fetched for ``model`` (only those under the pulled-models
    folder; a model configured by path keeps its files) and the folders left empty."""
    root = models_dir(config).resolve()
    removed = []
    for value in (model.file, model.mmproj):
        if not value or value.startswith("pkg:"):
            continue
        path = Path(value).expanduser().resolve()
        if path.is_relative_to(root) and path.exists():
            path.unlink()
            removed.append(path)
            parent = path.parent
            while parent != root and parent.is_relative_to(root) and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    return removed


def was_pulled(config: Any, model: Any) -> bool:
    root = models_dir(config).resolve()
    return any(v and Path(v).expanduser().resolve().is_relative_to(root) for v in (model.file, model.mmproj))


async def remove_for_api(app: Any, name: str) -> Any:
    """Ollama's ``DELETE /api/delete``: a pulled model's files and its ``[models.NAME]`` block."""
    from starlette.responses import JSONResponse

    from .config import remove_model

    model = app.config.models.get(name)
    if model is None:
        return JSONResponse({"error": f"model {name!r} not found"}, status_code=404)
    import anyio.to_thread

    if not await anyio.to_thread.run_sync(was_pulled, app.config, model):
        return JSONResponse({"error": f"model {name!r} was not pulled (it is configured by path): remove its "
                                      f"[models.{name}] block from loom.toml to delete it"}, status_code=400)
    try:
        await app.pool.unload(name)
    except ToolError:
        pass  # not loaded
    await anyio.to_thread.run_sync(remove_files, app.config, model)
    remove_model(config_path_of(app.config), name)
    app.reload_config()
    return JSONResponse({})


def _throttled(progress: Progress, every: float = 0.25) -> Progress:
    """At most a few progress lines a second (and always the last one)."""
    import time

    last = 0.0

    def report(f: RemoteFile, done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every or (total is not None and done >= total):
            last = now
            progress(f, done, total)

    return report
