"""A tiny asyncio HTTP/1.1 server for the dependency-check tests: TCP or unix socket, scripted routes.

Each route is an async function of the request (method, path, query) returning (status, body); a
route may sleep (a slow dependency) or never return (a hung one). Requests are recorded, and
`stop()` cancels handlers still running so a hung route never outlives its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


Route = Callable[[Request], Awaitable[tuple[int, Any]]]

_REASONS = {200: "OK", 204: "No Content", 302: "Found", 404: "Not Found", 500: "Internal Server Error"}


@dataclass
class StubHttp:
    routes: dict[str, Route]
    requests: list[Request] = field(default_factory=list)
    port: int | None = None
    _server: asyncio.AbstractServer | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, unix_path: str | None = None) -> StubHttp:
        if unix_path:
            self._server = await asyncio.start_unix_server(self._handle, path=unix_path)
        else:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            url = urlsplit(target)
            request = Request(method, url.path, parse_qs(url.query), headers)
            self.requests.append(request)
            route = self.routes.get(url.path)
            status, body = await route(request) if route else (404, b"not found")
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def reply(status: int, body: Any = b"", delay: float = 0.0) -> Route:
    async def route(_: Request) -> tuple[int, Any]:
        if delay:
            await asyncio.sleep(delay)
        return status, body

    return route


async def hang(_: Request) -> tuple[int, Any]:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")
