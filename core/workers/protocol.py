"""The worker protocol: length-prefixed msgspec msgpack frames over a Unix socket.

One socket per worker, both directions. A frame is a 4-byte big-endian length followed by
one ``Frame`` (a tagged msgspec struct). Op payloads (requests, events, results) travel as
``msgspec.Raw``: the envelope decodes first, then the payload with the op's own types from
``core.capabilities.OPS``, so nothing is decoded twice and the worker needs no registry of
its own.

Large payloads never go through the socket: a ``bytes`` value over ``SPILL_BYTES`` (an
image, audio, video frames) is written to a file in the transfer directory (``/dev/shm``,
i.e. shared memory, when it is writable; else under the data dir) and replaced by a
msgpack extension value naming the file. The receiver reads and deletes the file. Small
frames (every text delta) pay nothing for this: the spill walk runs only when an encoded
payload is bigger than the threshold.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Any

import msgspec

#: bytes values at least this long travel through a file, not the socket
SPILL_BYTES = 64 * 1024
_EXT_FILE = 1  # msgpack extension code: the payload is a file name in the transfer dir
_HEADER = struct.Struct(">I")
_MAX_FRAME = 1 << 30


# --- frames ----------------------------------------------------------------------------


class Frame(msgspec.Struct, tag_field="t", tag=True, array_like=True):
    pass


class Load(Frame, tag="load"):
    """daemon -> worker, first frame: build this backend class and load the model."""

    backend: str  # "package.module:QualName" of the backend class (or a factory function)
    spec: msgspec.Raw  # core.backends.ModelSpec
    device: str
    xfer_dir: str


class Loaded(Frame, tag="loaded"):
    info: msgspec.Raw  # core.capabilities.ModelInfo
    rss_before: int
    rss_after: int
    seconds: float
    modules: list[str] = []  # top-level modules the load imported (the fork server preloads them)


class Call(Frame, tag="call"):
    id: int
    op: str
    spilled: bool
    request: msgspec.Raw


class Cancel(Frame, tag="cancel"):
    id: int


class Stop(Frame, tag="stop"):
    """Unload the model and exit."""


class Emit(Frame, tag="emit"):
    id: int
    spilled: bool
    event: msgspec.Raw


class Done(Frame, tag="done"):
    id: int
    spilled: bool
    result: msgspec.Raw


class Failed(Frame, tag="failed"):
    """A call (``id`` >= 0) or the load (``id`` = -1) raised."""

    id: int
    error_type: str  # "module:QualName" of the exception class
    message: str
    traceback: str = ""


FRAMES = Load | Loaded | Call | Cancel | Stop | Emit | Done | Failed


# --- payloads --------------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[Any, msgspec.msgpack.Decoder] = {}
_names = itertools.count()


def transfer_dir(data_dir: Path | None, tag: str) -> Path:
    """A fresh directory for one worker's large payloads: shared memory when there is some."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else (data_dir or Path("/tmp")) / "run" / "xfer"
    path = base / f"loom-{os.getpid()}-{tag}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def encode_payload(value: Any, xfer_dir: str) -> tuple[bool, bytes]:
    """``(spilled, bytes)``: msgpack, with big bytes values moved to files when needed."""
    data = _encoder.encode(value)
    if len(data) < SPILL_BYTES:
        return False, data
    plain = msgspec.to_builtins(value, builtin_types=(bytes, bytearray, memoryview))
    moved = _spill(plain, xfer_dir)
    if not moved:
        return False, data
    return True, _encoder.encode(plain)


def _spill(node: Any, xfer_dir: str) -> int:
    """Replace big bytes values inside ``node`` (in place) with file references."""
    moved = 0
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, bytes | bytearray | memoryview) and len(value) >= SPILL_BYTES:
            name = f"{os.getpid()}-{threading.get_ident()}-{next(_names)}"
            path = os.path.join(xfer_dir, name)
            with open(path, "wb") as f:
                f.write(value)
            node[key] = msgspec.msgpack.Ext(_EXT_FILE, name.encode())
            moved += 1
        elif isinstance(value, dict | list):
            moved += _spill(value, xfer_dir)
    return moved


def decode_payload(data: bytes | memoryview, spilled: bool, type_: Any, xfer_dir: str) -> Any:
    """The inverse of ``encode_payload``: typed, with spilled bytes read back (files removed)."""
    if not spilled:
        dec = _decoders.get(type_)
        if dec is None:
            dec = _decoders[type_] = msgspec.msgpack.Decoder(type_)
        return dec.decode(data)

    def ext_hook(code: int, ref: memoryview) -> Any:
        if code != _EXT_FILE:
            raise ValueError(f"unknown msgpack extension {code}")
        name = bytes(ref).decode()
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad transfer file name {name!r}")
        path = os.path.join(xfer_dir, name)
        try:
            with open(path, "rb") as f:
                return f.read()
        finally:
            os.unlink(path)

    plain = msgspec.msgpack.Decoder(ext_hook=ext_hook).decode(data)
    return plain if type_ is Any else msgspec.convert(plain, type_)


# --- the socket ------------------------------------------------------------------------


class Connection:
    """Frames over a connected stream socket; ``send`` is safe from any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._rfile = sock.makefile("rb", buffering=1 << 16)
        self._lock = threading.Lock()
        self._frame_decoder = msgspec.msgpack.Decoder(FRAMES)

    def send(self, frame: Frame) -> None:
        body = _encoder.encode(frame)
        with self._lock:
            self.sock.sendall(_HEADER.pack(len(body)) + body)

    def recv(self) -> Any:
        """The next frame; ``EOFError`` when the other side has gone."""
        head = self._rfile.read(4)
        if len(head) < 4:
            raise EOFError("connection closed")
        (size,) = _HEADER.unpack(head)
        if size > _MAX_FRAME:
            raise EOFError(f"frame of {size} bytes: the stream is corrupt")
        body = self._rfile.read(size)
        if len(body) < size:
            raise EOFError("connection closed mid-frame")
        return self._frame_decoder.decode(body)

    def close(self) -> None:
        for f in (self._rfile, self.sock):
            try:
                f.close()
            except OSError:
                pass


def error_type_name(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}:{cls.__qualname__}"


def import_object(path: str) -> Any:
    """``"package.module:Qual.Name"`` -> the object."""
    import importlib

    module, _, qual = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def rebuild_error(error_type: str, message: str, fallback: type[Exception]) -> Exception:
    """The exception a worker raised, rebuilt here (same class when it can be), else ``fallback``."""
    try:
        cls = import_object(error_type)
        if isinstance(cls, type) and issubclass(cls, Exception):
            return cls(message)
    except Exception:  # not importable here, or a constructor that wants more than a message
        pass
    name = error_type.rpartition(":")[2] or "Error"
    return fallback(f"{name}: {message}")
