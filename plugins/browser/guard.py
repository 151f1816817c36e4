"""Where the browser may go: a URL check and a filtering HTTP proxy every request passes.

Chromium is started with ``--proxy-server`` pointing at ``GuardProxy`` (loopback
included: ``--proxy-bypass-list=<-loopback>``), so every request, every redirect hop,
every subresource and every WebSocket is checked at connect time against the address
it actually connects to (no DNS-rebinding gap). Refused requests get a 403 whose
``X-Loom-Refused`` header says why; the tools turn that into a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections import deque
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")


class Refused(Exception):
    """A URL or address the browser must not reach; the message says why and how to allow it."""


class AddressGuard:
    def __init__(self, *, allow_loopback: bool = False, allow_private: bool = False,
                 allow_hosts: list[str] | None = None) -> None:
        self.allow_loopback = allow_loopback
        self.allow_private = allow_private
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for h in allow_hosts or []:
            try:
                self.networks.append(ipaddress.ip_network(h, strict=False))
            except ValueError:
                self.hosts.add(h.lower())
        self.refusals: deque[tuple[float, str, str]] = deque(maxlen=64)  # (time, target, reason)

    def check_url(self, url: str) -> tuple[str, int]:
        """The (host, port) of an http(s) URL, or ``Refused`` for any other scheme."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            shown = f"{scheme}:" if scheme else "a URL without a scheme"
            raise Refused(f"{shown} URLs are refused: the browser only opens http:// and https:// addresses")
        if not parts.hostname:
            raise Refused(f"{url!r} has no host")
        return parts.hostname, parts.port or (443 if scheme == "https" else 80)

    def _ip_ok(self, host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if host.lower() in self.hosts or any(ip in n for n in self.networks):
            return None
        if ip.is_multicast or ip.is_unspecified:
            return f"{host} is {ip}, a multicast/unspecified address"
        if ip.is_loopback:
            return None if self.allow_loopback else (
                f"{host} resolves to the loopback address {ip}; an operator can allow it with "
                "[plugin.browser] allow_loopback = true or allow_hosts")
        if not ip.is_global:
            return None if self.allow_private else (
                f"{host} resolves to the private/reserved address {ip}; an operator can allow it with "
                "[plugin.browser] allow_private = true or allow_hosts")
        return None

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to, all checked; ``Refused`` when any is not allowed."""
        host = host.strip("[]")
        try:
            infos = [(None, None, None, None, (str(ipaddress.ip_address(host)), port))]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise Refused(f"cannot resolve {host}: {exc}") from None
        addrs = list(dict.fromkeys(info[4][0] for info in infos))
        for a in addrs:
            why = self._ip_ok(host, ipaddress.ip_address(a.split("%")[0]))
            if why:
                self.refusals.append((time.time(), f"{host}:{port}", why))
                raise Refused(why)
        return addrs

    def last_refusal(self, host: str | None = None, since: float = 0.0) -> str | None:
        for t, target, why in reversed(self.refusals):
            if t >= since and (host is None or target.split(":")[0] == host):
                return why
        return None


class GuardProxy:
    """A minimal HTTP proxy (absolute-form requests and CONNECT) that enforces ``AddressGuard``.

    One request per client connection (``Connection: close`` both ways), which keeps the
    parser honest: a reused connection can never carry a request to another host.
    """

    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 16)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, _, rest = head.partition(b"\r\n")
            method, target, _version = line.decode("latin-1").split(" ", 2)
            if method.upper() == "CONNECT":
                host, _, port = target.rpartition(":")
                addrs = await self._checked(writer, host, int(port))
                if addrs is None:
                    return
                up_reader, upstream = await self._connect(addrs, int(port))
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
                await _pipe_both(reader, writer, up_reader, upstream)
                return
            try:
                host, port = self.guard.check_url(target)
            except Refused as exc:
                await _refuse(writer, str(exc))
                return
            addrs = await self._checked(writer, host, port)
            if addrs is None:
                return
            parts = urlsplit(target)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            headers = [h for h in rest.split(b"\r\n") if h and not h.lower().startswith(
                (b"connection:", b"proxy-connection:", b"keep-alive:"))]
            upgrade = any(h.lower().startswith(b"upgrade:") for h in headers)
            headers.append(b"Connection: upgrade" if upgrade else b"Connection: close")
            up_reader, upstream = await self._connect(addrs, port)
            upstream.write(f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + b"\r\n".join(headers) + b"\r\n\r\n")
            await upstream.drain()
            await _pipe_both(reader, writer, up_reader, upstream, rewrite_response=not upgrade)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            for w in (upstream, writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()

    async def _checked(self, writer: asyncio.StreamWriter, host: str, port: int) -> list[str] | None:
        try:
            return await self.guard.resolve(host, port)
        except Refused as exc:
            await _refuse(writer, str(exc))
            return None

    @staticmethod
    async def _connect(addrs: list[str], port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        error: OSError | None = None
        for a in addrs:  # connect to the checked address itself, not the name again
            try:
                return await asyncio.wait_for(asyncio.open_connection(a, port), 15)
            except (OSError, TimeoutError) as exc:
                error = OSError(str(exc))
        raise error or OSError("no address")


async def _refuse(writer: asyncio.StreamWriter, why: str) -> None:
    body = f"Refused by Loom's browser guard: {why}\n".encode()
    reason = why.encode("ascii", "replace").replace(b"\r", b" ").replace(b"\n", b" ")
    writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nX-Loom-Refused: " + reason +
                 b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    with contextlib.suppress(OSError):
        await writer.drain()


async def _pipe_both(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter,
                     u_reader: asyncio.StreamReader, u_writer: asyncio.StreamWriter,
                     *, rewrite_response: bool = False) -> None:
    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, rewrite: bool) -> None:
        try:
            if rewrite:  # the response head: make the client open a new connection next time
                head = await src.readuntil(b"\r\n\r\n")
                lines = [h for h in head[:-4].split(b"\r\n") if not h.lower().startswith(
                    (b"connection:", b"keep-alive:", b"proxy-connection:"))]
                dst.write(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n")
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if dst.can_write_eof():
                    dst.write_eof()

    down = asyncio.ensure_future(pump(u_reader, c_writer, rewrite_response))
    up = asyncio.ensure_future(pump(c_reader, u_writer, False))
    await down  # the response ended (upstream closed): the exchange is over
    up.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await up
