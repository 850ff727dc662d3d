"""Run the service in-process (lifespan included) behind an httpx client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from telltale.app.main import create_app
from telltale.config.settings import load_settings


@contextlib.asynccontextmanager
async def service(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(load_settings(**settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://telltale.test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client
