"""Request bodies, bounded while they are read, and JSON parsed without a way to a 500.

`BodyLimit` is a pure ASGI middleware: a `Content-Length` over the limit is answered 413 at once,
without reading a byte of the body; any other body (chunked included) is counted as the application
reads it through the wrapped `receive`, and the read that crosses the limit raises `BodyTooLarge`
(a 413), so a 1 GiB upload costs at most the limit in memory, never the upload. A response sent while
the body is still unread closes the connection, so the server stops reading what nobody will use.

`parse_json` refuses nesting deeper than `MAX_JSON_DEPTH` (CPython's parser raises RecursionError near
depth 1,000, and a deep-but-parseable value could make pydantic or the encoder hit it later), and turns
every parse failure into a `BadBody` (400 or 422) instead of an exception that escapes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 64
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body read so far exceeds the limit; answered 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body larger than {limit} bytes", headers={"Connection": "close"})


class BadBody(Exception):
    """A body that is not what the endpoint takes: its status (400, 413 or 422) and a short reason."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def json_response(content: Any, status_code: int = 200) -> Response:
    """JSON that always encodes: ASCII-escaped (a lone surrogate in a key cannot fail the encoder),
    no NaN (not JSON). Starlette's JSONResponse encodes to UTF-8 and would raise, a 500."""
    body = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status_code, media_type="application/json")


def problem(status: int, detail: str, **extra: Any) -> Response:
    return json_response({"detail": detail, **extra}, status)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"body larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _over(length: bytes, limit: int) -> bool:
    """A Content-Length above `limit` (digits only; never int() of thousands of digits)."""
    digits = length.strip()
    return digits.isdigit() and (len(digits) > 18 or int(digits) > limit)


class BodyLimit:
    """Bounds every request body to `max_bytes` as it streams in (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """A request without a body (GET, the hot path) goes straight through: the app's own awaitable
        is returned, so this layer adds no coroutine frame to it."""
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            return self.app(scope, receive, send)
        return self._bounded(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_bytes
        framed = False  # the request says it has a body (a length, or chunked)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if _over(value, limit):
                    await _refuse(send, limit)
                    return
                framed = framed or value.strip() not in (b"0", b"")
            elif name == b"transfer-encoding":
                framed = True
        seen = 0
        done = not framed  # nothing to read: keep the connection
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, done
            if seen > limit:  # the app asked again after the refusal: nothing more is read
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
                done = not message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not done:
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, closing_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(send, limit)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytearray:
    """The whole body, at most `limit` bytes (also when no BodyLimit is in front); 413 beyond.
    One growing buffer, not a list of chunks joined (which would hold the body twice)."""
    if _over(request.headers.get("content-length", "").encode(), limit):
        raise BadBody(413, f"body larger than {limit} bytes")
    buf = bytearray()
    try:
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise BadBody(413, f"body larger than {limit} bytes")
    except BodyTooLarge as exc:
        raise BadBody(413, str(exc.detail)) from None
    return buf


def deeper_than(value: Any, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests arrays/objects deeper than `max_depth`: an explicit stack, no
    recursion, depth first so a deep document is found after `max_depth` steps."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > max_depth:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                push((child, depth + 1))
    return False


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes | bytearray, *, finite_only: bool = False, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`raw` as JSON, or `BadBody`: 400 when it is not JSON, 422 when nested deeper than `max_depth`
    or holding a number Python will not parse (more than 4,300 digits).

    Depth: CPython's parser raises RecursionError near depth 1,000 (caught: 422); below that the
    parsed value is walked without recursion, unless the body has too few brackets to be that deep.
    `finite_only` also refuses `NaN`, `Infinity` and numbers too large for a float (422), for a body
    that is stored and served back as JSON; otherwise they parse as floats and the models refuse them
    field by field."""
    try:
        if finite_only:
            value = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
        else:
            value = json.loads(raw)
    except RecursionError:
        raise BadBody(422, f"JSON nested deeper than {max_depth} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadBody(400, "body is not valid JSON") from None
    except ValueError as exc:  # the int digit limit, _finite, _no_constant
        raise BadBody(422, str(exc).split(";")[0][:200]) from None
    if (
        isinstance(value, dict | list)
        and raw.count(b"[") + raw.count(b"{") > max_depth
        and deeper_than(value, max_depth)
    ):
        raise BadBody(422, f"JSON nested deeper than {max_depth} levels")
    return value


async def read_json(request: Request, *, finite_only: bool = False, limit: int = MAX_BODY_BYTES) -> Any:
    """`read_body` then `parse_json`."""
    return parse_json(await read_body(request, limit), finite_only=finite_only)


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            return _inline({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs)
        out = {k: _inline(v, defs) for k, v in node.items()}
        tag = node.get("discriminator")
        if isinstance(tag, dict) and isinstance(tag.get("propertyName"), str):  # its mapping points into $defs
            out["discriminator"] = {"propertyName": tag["propertyName"]}
        return out
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def openapi_body(model: type[BaseModel], description: str = "") -> dict[str, Any]:
    """`openapi_extra` declaring `model` as the JSON request body of a route that reads the body itself.

    The schema is inlined (its `$defs` resolved in place, discriminator mappings dropped), since a
    route cannot add entries to the document's `components`."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    body: dict[str, Any] = {"required": True, "content": {"application/json": {"schema": _inline(schema, defs)}}}
    if description:
        body["description"] = description
    return {"requestBody": body}
